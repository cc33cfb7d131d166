// The console's one piece of script: "Copy key" posts the form (which commits the
// disclose_keys copy event first), then puts the answered text on the clipboard. Without
// script the same form posts as a page that shows the text.
"use strict";

document.addEventListener("submit", async (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || !form.classList.contains("copy")) {
    return;
  }
  event.preventDefault();
  const button = form.querySelector("button");
  const label = button.textContent;
  button.disabled = true;
  try {
    const answer = await fetch(form.action, {
      method: "POST",
      headers: { Accept: "text/plain" },
      body: new URLSearchParams(new FormData(form)),
      credentials: "same-origin",
      cache: "no-store",
    });
    if (!answer.ok) {
      throw new Error(`the copy was refused (HTTP ${answer.status})`);
    }
    await navigator.clipboard.writeText(await answer.text());
    button.textContent = "Copied";
    form.dataset.copied = answer.headers.get("keyledger-disclosure-seq") || "";
  } catch (err) {
    button.textContent = "Copy failed";
    form.dataset.error = String(err);
  } finally {
    button.disabled = false;
    setTimeout(() => { button.textContent = label; }, 4000);
  }
});
