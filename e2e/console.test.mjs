// The console in a real browser: Debian's chromium driven by playwright-core
// against `keyledger serve` on a demo ledger, on a loopback port. Run by .ci/run after the
// release build; `KEYLEDGER_BIN` names the binary, `KEYLEDGER_SCREENSHOTS` a folder to
// save a screenshot of each page to (docs/console/ is made that way).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";
import { blake3 } from "@noble/hashes/blake3.js";
import { bytesToHex } from "@noble/hashes/utils.js";

const root = path.resolve(import.meta.dirname, "..");
const bin = process.env.KEYLEDGER_BIN ?? path.join(root, "target/release/keyledger");
const shots = process.env.KEYLEDGER_SCREENSHOTS;
const KEY_TEXT = /^[BCDFGHJKMPQRTVWXY2346789]{5}(-[BCDFGHJKMPQRTVWXY2346789]{5}){4}$/;

let dir, data, server, url, browser;
const tokens = {};

function keyledger(...args) {
  return execFileSync(bin, ["--data", data, ...args], { cwd: dir, encoding: "utf8" });
}

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "keyledger-e2e-"));
  data = path.join(dir, "keyledger.redb");
  keyledger("demo");
  // A second operator who also holds a role, so the same person can ask and try to grant.
  const at = "2026-11-01T00:00:00Z";
  const setup = [
    { type: "add_operator", at, actor: "olga", principal: "oscar" },
    { type: "assign_role", at, actor: "olga", principal: "oscar", license_id: "V1000001", role: "key_administrator" },
  ];
  writeFileSync(path.join(dir, "setup.jsonl"), setup.map((c) => JSON.stringify(c)).join("\n") + "\n");
  keyledger("apply", path.join(dir, "setup.jsonl"));
  for (const who of ["rita", "vic", "olga", "oscar"]) {
    tokens[who] = keyledger("token", "create", "--principal", who).trim();
  }
  server = spawn(bin, ["--data", data, "serve", "--listen", "127.0.0.1:0"], {
    cwd: dir,
    stdio: ["ignore", "pipe", "inherit"],
  });
  const lines = createInterface({ input: server.stdout });
  url = await new Promise((resolve, reject) => {
    server.once("exit", (code) => reject(new Error(`keyledger serve exited with ${code}`)));
    lines.once("line", (line) => resolve(line.replace("listening on ", "").trim()));
  });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--no-first-run",
    ],
  });
});

after(async () => {
  await browser?.close();
  if (server && server.exitCode === null) {
    const exited = new Promise((resolve) => server.once("exit", resolve));
    server.kill("SIGTERM");
    await exited;
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A fresh browser context (its own cookies) signed in as `who`. */
async function signedIn(who, permissions = [], viewport = { width: 1280, height: 800 }) {
  const context = await browser.newContext({ acceptDownloads: true, viewport });
  if (permissions.length) await context.grantPermissions(permissions, { origin: url });
  const page = await context.newPage();
  const failures = [];
  page.on("console", (m) => { if (m.type() === "error") failures.push(m.text()); });
  await page.goto(`${url}/ui`);
  await page.getByLabel("Token").fill(tokens[who]);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Contracts" }).waitFor();
  return { context, page, failures };
}

async function screenshot(page, name) {
  if (!shots) return;
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: false });
}

/** The events of the log after `from` (the API, as an operator). */
async function eventsAfter(from) {
  const answer = await fetch(`${url}/v1/log?from=${from + 1}`, {
    headers: { Authorization: `Bearer ${tokens.olga}` },
  });
  assert.equal(answer.status, 200);
  return (await answer.json()).events;
}

async function head() {
  return (await (await fetch(`${url}/healthz`)).json()).seq;
}

test("a reader copies a key: the clipboard holds its text and the log gains the disclosure", async () => {
  const { context, page, failures } = await signedIn("rita", ["clipboard-read", "clipboard-write"]);
  await screenshot(page, "contracts");
  await page.getByRole("link", { name: "Products and services" }).click();
  await page.getByRole("heading", { name: "Products and services" }).waitFor();
  await page.getByLabel("Search").fill("V3000003");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.waitForURL(/q=V3000003/);
  await screenshot(page, "products");
  const first = page.locator("tr", { has: page.getByRole("button", { name: "Copy key" }) }).first();
  const keyId = Number(await first.getAttribute("data-key-id"));
  // Pinned by id: once copied, the button's label changes and `first` would move on.
  const row = page.locator(`tr[data-key-id="${keyId}"]`);
  const masked = await row.locator("code.key").textContent();
  const before = await head();
  await row.getByRole("button", { name: "Copy key" }).click();
  await row.getByRole("button", { name: "Copied" }).waitFor();
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  assert.match(copied, KEY_TEXT);
  assert.equal(copied.slice(-5), masked.slice(-5), "the copied key is the row's key");
  const events = await eventsAfter(before);
  assert.equal(events.length, 1, "one event: the disclosure");
  const { event } = events[0];
  assert.equal(event.type, "keys_disclosed");
  assert.equal(event.actor, "rita");
  assert.equal(event.channel, "copy");
  assert.deepEqual(event.key_ids, [keyId]);
  assert.deepEqual(failures, [], "no script errors (CSP included)");
  await context.close();
});

test("a principal without the role sees only masked keys and no Copy key", async () => {
  const { context, page } = await signedIn("vic");
  await page.getByRole("link", { name: "Products and services" }).click();
  await page.getByRole("heading", { name: "Products and services" }).waitFor();
  const keys = await page.locator("code.key").allTextContents();
  assert.ok(keys.length > 0, "vic sees the keys of V4000004");
  for (const key of keys) assert.match(key, /^\*{5}-\*{5}-\*{5}-\*{5}-[A-Z0-9]{5}$/);
  assert.equal(await page.getByRole("button", { name: "Copy key" }).count(), 0);
  const licenseIds = await page.locator("table.keys tbody tr td:nth-child(2)").allTextContents();
  assert.deepEqual([...new Set(licenseIds)], ["V4000004"], "only the license ID vic holds a role on");
  await context.close();
});

test("Export selected keys downloads a file whose BLAKE3 is the recorded digest", async () => {
  const { context, page } = await signedIn("rita");
  await page.goto(`${url}/ui/products?q=V3000003`);
  const boxes = page.locator('input[type=checkbox][name="key_id"]');
  await boxes.nth(0).check();
  await boxes.nth(1).check();
  const before = await head();
  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.getByRole("button", { name: "Export selected keys" }).click(),
  ]);
  const file = readFileSync(await download.path());
  const lines = file.toString("utf8").trim().split("\n");
  assert.equal(lines[0].split("\t")[0], "License ID", "the R2 header row");
  assert.equal(lines.length, 3, "the header and the two selected keys");
  for (const line of lines.slice(1)) assert.match(line.split("\t")[4], KEY_TEXT);
  const events = await eventsAfter(before);
  assert.equal(events.length, 1);
  const { event } = events[0];
  assert.equal(event.type, "keys_disclosed");
  assert.equal(event.channel, "export");
  assert.equal(event.key_ids.length, 2);
  assert.equal(event.export_digest, bytesToHex(blake3(file)));
  await context.close();
});

test("a second operator grants a request; the requester's own grant is refused on the page", async () => {
  const oscar = await signedIn("oscar");
  const page = oscar.page;
  await page.getByRole("link", { name: "Requests" }).click();
  await page.getByRole("heading", { name: "Requests", exact: true }).waitFor();
  const option = page.locator("#mak-key option", { hasText: "V1000001" }).first();
  await page.getByLabel("Key").selectOption(await option.getAttribute("value"));
  await page.getByLabel("Activations needed", { exact: true }).fill("7");
  await page.locator("#mak-why").fill("new training room");
  await page.getByRole("button", { name: "File MAK increase" }).click();
  const filed = await page.getByRole("status").textContent();
  const requestId = filed.match(/request (web-[0-9a-f]+)/)[1];
  const row = page.locator(`tr[data-request-id="${requestId}"]`);
  await row.getByRole("button", { name: "Grant" }).click();
  const refusal = page.getByRole("alert");
  await refusal.waitFor();
  assert.match(await refusal.textContent(), /same_principal/);
  assert.match(await refusal.textContent(), /R19/);
  await screenshot(page, "requests");
  assert.equal(await page.locator(`tr[data-request-id="${requestId}"] [data-field=outcome]`).textContent(), "pending");
  await oscar.context.close();

  const olga = await signedIn("olga");
  await olga.page.goto(`${url}/ui/requests`);
  const pending = olga.page.locator(`tr[data-request-id="${requestId}"]`);
  await pending.getByRole("button", { name: "Grant" }).click();
  await olga.page.getByRole("status").waitFor();
  assert.match(await olga.page.getByRole("status").textContent(), new RegExp(`Granted request ${requestId}`));
  assert.equal(await olga.page.locator(`tr[data-request-id="${requestId}"] [data-field=outcome]`).textContent(), "granted");
  await olga.context.close();
});

test("the As of field shows the earlier count, as the report at that moment says", async () => {
  const { context, page } = await signedIn("rita");
  await page.goto(`${url}/ui/license-ids/V3000003`);
  await page.getByRole("heading", { name: "Product key details" }).waitFor();
  const cell = (p) => p.locator('#keys tr[data-key-id="2"] [data-field=used_of_total]');
  const now = await cell(page).textContent();
  await screenshot(page, "product-key-details");
  const asOf = "2026-03-01T00:00:00Z";
  await page.getByLabel("As of").fill(asOf);
  await page.getByRole("button", { name: "Show" }).click();
  await page.waitForURL(/as_of=/);
  const then = await cell(page).textContent();
  assert.notEqual(then, now, "the count moved since then");
  const answer = await fetch(`${url}/v1/license-ids/V3000003/report?as_of=${asOf}`, {
    headers: { Authorization: `Bearer ${tokens.rita}` },
  });
  const report = await answer.json();
  const key = report.keys.find((k) => k.key_id === 2);
  assert.equal(then, `${key.used}/${key.total}`);
  await context.close();
});

test("the audit log links each seq to its proof, and Verify ledger shows the signed checkpoint", async () => {
  const { context, page } = await signedIn("olga");
  await page.getByRole("link", { name: "Audit log" }).click();
  await page.getByLabel("Type").selectOption("keys_disclosed");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.waitForURL(/type=keys_disclosed/);
  const types = await page.locator("#audit tbody td:nth-child(4)").allTextContents();
  assert.ok(types.length >= 3, "the demo's disclosures and this run's copy and export");
  assert.deepEqual([...new Set(types)], ["keys_disclosed"]);
  await screenshot(page, "audit-log");
  const [proof] = await Promise.all([
    page.waitForEvent("download"),
    page.locator("#audit tbody tr").first().getByRole("link").click(),
  ]);
  const file = JSON.parse(readFileSync(await proof.path(), "utf8"));
  assert.ok(file.checkpoint, "an inclusion proof file carries its signed checkpoint");
  await page.getByRole("link", { name: "Verify ledger" }).click();
  await page.getByRole("heading", { name: "Verify ledger" }).waitFor();
  assert.equal(Number(await page.locator("[data-field=head_seq]").textContent()), await head());
  assert.match(await page.locator("#checkpoint").textContent(), /keyledger/);
  await page.getByRole("link", { name: "Forecast" }).click();
  await page.getByRole("heading", { name: "Forecast" }).waitFor();
  await page.getByLabel("License ID").selectOption("V3000003");
  await page.getByRole("button", { name: "Show" }).click();
  await page.waitForURL(/license_id=V3000003/);
  assert.ok((await page.locator("#forecast tbody tr").count()) >= 3, "the MAKs and ESU MAKs of V3000003");
  const plots = page.locator("figure img");
  assert.equal(await plots.count(), 2);
  for (const img of await plots.all()) {
    const width = await img.evaluate((el) => el.naturalWidth);
    assert.ok(width > 0, "the SVG plot loaded under the CSP");
  }
  await screenshot(page, "forecast");
  await context.close();
});

// Every page fits the widths people use: nothing wider than the window, so no page needs a
// horizontal scroll bar, and the actions stay on screen.
const PAGES = [
  ["contracts", "/ui/contracts"],
  ["products", "/ui/products"],
  ["product-key-details", "/ui/license-ids/V3000003"],
  ["requests", "/ui/requests"],
  ["audit-log", "/ui/audit"],
  ["forecast", "/ui/forecast?license_id=V3000003"],
  ["verify", "/ui/verify"],
];
for (const [width, height] of [[1280, 800], [1920, 1080]]) {
  test(`every page fits a ${width} px window without a horizontal scroll`, async () => {
    const { context, page, failures } = await signedIn("olga", [], { width, height });
    for (const [name, route] of PAGES) {
      await page.goto(`${url}${route}`);
      await page.locator("h1").first().waitFor();
      const wide = await page.evaluate(() => {
        const limit = document.documentElement.clientWidth;
        const over = [...document.querySelectorAll("main *")]
          .filter((e) => e.getBoundingClientRect().right > limit + 1)
          .map((e) => `${e.tagName.toLowerCase()}${e.id ? "#" + e.id : ""}${e.className ? "." + e.className : ""}`);
        return { page: document.documentElement.scrollWidth, limit, over: over.slice(0, 5) };
      });
      assert.ok(wide.page <= wide.limit, `${route} at ${width} px is ${wide.page} px wide: ${wide.over.join(", ")}`);
      assert.deepEqual(wide.over, [], `${route} at ${width} px: these reach past the window`);
      await screenshot(page, `${name}-${width}`);
    }
    assert.deepEqual(failures, []);
    await context.close();
  });
}
