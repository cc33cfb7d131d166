// Single sign-on in a real browser: Debian's chromium (playwright-core) signs in to the
// console through a real OpenID Connect provider (oidc-provider, e2e/idp.mjs) on loopback,
// and the API takes the provider's JWT access tokens. The provider also misbehaves on
// purpose, and every bad ID token is refused with a clear page. Run by scripts/e2e.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";
import { API_AUDIENCE, API_RESOURCE, startIdp } from "./idp.mjs";

const root = path.resolve(import.meta.dirname, "..");
const bin = process.env.KEYLEDGER_BIN ?? path.join(root, "target/release/keyledger");
const CLI_REDIRECT = "http://127.0.0.1:9/cli-callback";

let dir, data, server, url, browser, idp;
let said = "";
const tokens = {};

function keyledger(...args) {
  return execFileSync(bin, ["--data", data, ...args], { cwd: dir, encoding: "utf8" });
}

async function freePort() {
  const probe = net.createServer();
  await new Promise((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const { port } = probe.address();
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "keyledger-sso-"));
  data = path.join(dir, "keyledger.redb");
  keyledger("demo");
  tokens.vic = keyledger("token", "create", "--principal", "vic").trim();
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  idp = await startIdp({
    users: ["vic", "rita", "olga"],
    redirectUri: `${url}/ui/oidc/callback`,
    cliRedirectUri: CLI_REDIRECT,
    clientSecret: "console-secret",
  });
  writeFileSync(path.join(dir, "client-secret"), "console-secret\n");
  server = spawn(
    bin,
    [
      "--data", data, "serve", "--listen", `127.0.0.1:${port}`,
      "--oidc-issuer", idp.issuer,
      "--oidc-client-id", "keyledger-console",
      "--oidc-client-secret-file", path.join(dir, "client-secret"),
      "--oidc-audience", API_AUDIENCE,
    ],
    { cwd: dir, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "info,keyledger::access=info" } },
  );
  server.stderr.on("data", (chunk) => { said += chunk; });
  const lines = createInterface({ input: server.stdout });
  await new Promise((resolve, reject) => {
    server.once("exit", (code) => reject(new Error(`keyledger serve exited with ${code}: ${said}`)));
    lines.once("line", resolve);
  });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--no-first-run"],
  });
});

after(async () => {
  await browser?.close();
  if (server && server.exitCode === null) {
    const exited = new Promise((resolve) => server.once("exit", resolve));
    server.kill("SIGTERM");
    await exited;
  }
  await idp?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Through the provider's login page as `who`, in a fresh context: the page keyledger
 * answered the callback with, and the callback's address. */
async function signOn(who) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${url}/ui/sign-in`);
  await page.getByRole("link", { name: "Sign in with single sign-on" }).click();
  await page.getByPlaceholder("Enter any login").fill(who);
  await page.getByPlaceholder("and password").fill("any password");
  const callback = page.waitForResponse((r) => r.url().startsWith(`${url}/ui/oidc/callback`));
  await page.getByRole("button", { name: "Sign-in" }).click();
  const answered = await callback;
  return { context, page, callback: answered.url(), status: answered.status() };
}

test("a user signs in through the provider and lands on the console with that principal's roles", async () => {
  const { context, page, status } = await signOn("vic");
  assert.equal(status, 200, said);
  await page.getByRole("heading", { name: "Contracts" }).waitFor();
  assert.match(await page.locator("body").innerText(), /\bvic\b/);
  await page.getByRole("link", { name: "Products and services" }).click();
  await page.getByRole("heading", { name: "Products and services" }).waitFor();
  const licenseIds = await page.locator("table.keys tbody tr td:nth-child(2)").allTextContents();
  assert.deepEqual([...new Set(licenseIds)], ["V4000004"], "only the license ID vic holds a role on");
  // Sign-out ends the session: the console asks to sign in again.
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  await page.goto(`${url}/ui/contracts`);
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  await context.close();
});

for (const [mode, why] of [
  ["tampered", "its signature does not verify (the token was altered)"],
  ["audience", "it was issued for another client (audience)"],
  ["expired", "it has expired"],
  ["unknown-key", "it is signed by a key the provider does not publish"],
]) {
  test(`an ID token ${mode === "unknown-key" ? "signed by an unknown key" : mode} is refused with a clear page`, async () => {
    idp.misbehave(mode);
    try {
      const { context, page, status } = await signOn("rita");
      assert.equal(status, 401);
      await page.getByRole("heading", { name: "Single sign-on refused" }).waitFor();
      assert.equal(await page.getByRole("alert").innerText(), `Not signed in: the ID token was refused: ${why}.`);
      await page.goto(`${url}/ui/contracts`);
      await page.getByRole("heading", { name: "Sign in" }).waitFor();
      await context.close();
    } finally {
      idp.misbehave(null);
    }
  });
}

test("a replayed callback (state used already, or from another browser) is refused", async () => {
  const { context, page, callback } = await signOn("vic");
  await page.getByRole("heading", { name: "Contracts" }).waitFor();
  for (const replay of [page, await (await browser.newContext()).newPage()]) {
    const answer = await replay.goto(callback);
    assert.equal(answer.status(), 400);
    assert.match(await replay.getByRole("alert").innerText(), /not started in this browser, or was used already/);
  }
  await context.close();
});

test("the provider's key rotation is followed", async () => {
  await idp.rotate("key-2");
  const { context, page, status } = await signOn("vic");
  assert.equal(status, 200, said);
  await page.getByRole("heading", { name: "Contracts" }).waitFor();
  assert.match(said, /signing keys were fetched again \(a token named key key-2\)/);
  await context.close();
});

/** A JWT access token for `who` from the provider: the authorization code flow of a
 * public client with PKCE, its login page in the browser, the code exchanged here. */
async function accessToken(who) {
  const verifier = randomBytes(32).toString("base64url");
  const challenge = createHash("sha256").update(verifier).digest("base64url");
  const discovery = await (await fetch(`${idp.issuer}/.well-known/openid-configuration`)).json();
  const authorize = new URL(discovery.authorization_endpoint);
  for (const [k, v] of Object.entries({
    client_id: "keyledger-cli", response_type: "code", redirect_uri: CLI_REDIRECT,
    scope: "openid profile read", state: randomBytes(8).toString("hex"),
    code_challenge: challenge, code_challenge_method: "S256", resource: API_RESOURCE,
  })) authorize.searchParams.set(k, v);
  const context = await browser.newContext();
  const page = await context.newPage();
  let code;
  await page.route(`${CLI_REDIRECT}**`, (route) => {
    code = new URL(route.request().url()).searchParams.get("code");
    return route.fulfill({ status: 200, body: "done" });
  });
  await page.goto(authorize.toString());
  await page.getByPlaceholder("Enter any login").fill(who);
  await page.getByPlaceholder("and password").fill("any password");
  await page.getByRole("button", { name: "Sign-in" }).click();
  await page.getByText("done").waitFor();
  await context.close();
  const answer = await fetch(discovery.token_endpoint, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code", code, redirect_uri: CLI_REDIRECT,
      client_id: "keyledger-cli", code_verifier: verifier, resource: API_RESOURCE,
    }),
  });
  const body = await answer.json();
  assert.equal(answer.status, 200, JSON.stringify(body));
  return body;
}

async function get(path, token) {
  const answer = await fetch(`${url}${path}`, { headers: { Authorization: `Bearer ${token}` } });
  return { status: answer.status, body: await answer.json() };
}

test("a JWT access token reads what its principal may read and nothing else", async () => {
  const { access_token: jwt, id_token: idToken } = await accessToken("vic");
  assert.equal(jwt.split(".").length, 3, "a JWT");
  const own = await get("/v1/license-ids/V4000004/report", jwt);
  assert.equal(own.status, 200, JSON.stringify(own.body));
  assert.equal(own.body.license_id, "V4000004");
  const other = await get("/v1/license-ids/V1000001/report", jwt);
  assert.equal(other.status, 403);
  assert.equal(other.body.code, "forbidden");
  // The same answer as vic's own keyledger token gets (but for when it was made).
  const { report_time: _, ...report } = own.body;
  const { report_time: __, ...same } = (await get("/v1/license-ids/V4000004/report", tokens.vic)).body;
  assert.deepEqual(same, report);

  const [h, p, s] = jwt.split(".");
  const claims = JSON.parse(Buffer.from(p, "base64url"));
  const forged = Buffer.from(JSON.stringify({ ...claims, preferred_username: "olga" })).toString("base64url");
  for (const [token, why] of [
    [[h, forged, s].join("."), "access token refused: its signature does not verify"],
    [idToken, "access token refused: it is not typed at+jwt (its typ is absent): an ID token is not an access token"],
  ]) {
    const refused = await get("/v1/license-ids/V4000004/report", token);
    assert.equal(refused.status, 401);
    assert.equal(refused.body.code, "unauthorized");
    assert.equal(refused.body.message, why);
  }
  // No token of any kind in the service's log.
  for (const secret of [jwt, idToken, tokens.vic, s]) assert.ok(!said.includes(secret), "a token in the log");
});
