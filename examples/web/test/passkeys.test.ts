// Passkeys in Debian's Chromium with its virtual authenticator (Chrome DevTools Protocol,
// `WebAuthn.addVirtualAuthenticator`), through the example app, against the real server.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import type { CDPSession, Page } from "playwright-core";

import { LOCAL, LOCAL_OTHER, newUser, open, screenshot, signIn, signUp, start, type Harness } from "./harness.js";

let harness: Harness;
before(async () => {
  harness = await start();
});
after(async () => {
  await harness?.close();
});

/** A platform authenticator that verifies the user and keeps discoverable credentials. */
async function authenticator(page: Page): Promise<{ cdp: CDPSession; id: string }> {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("WebAuthn.enable");
  const { authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", {
    options: {
      protocol: "ctap2",
      transport: "internal",
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  return { cdp, id: authenticatorId };
}

/** The problem code of the next answer from `path`. */
async function answerOf(page: Page, path: string, action: () => Promise<void>): Promise<{ status: number; code?: string }> {
  const [response] = await Promise.all([page.waitForResponse((r) => r.url().endsWith(path)), action()]);
  const body = (await response.json().catch(() => ({}))) as { code?: string };
  return { status: response.status(), code: body.code };
}

async function signOut(page: Page) {
  await page.locator("#sign-out").click();
  await page.getByTestId("sign-in").waitFor();
}

test("a passkey added from the profile signs in without an address, at aal2, and re-authenticates", async () => {
  const page = await open(await harness.browser.newContext(), LOCAL);
  const { cdp, id } = await authenticator(page);
  const user = newUser("Pia");
  await signUp(page, user);
  const added = await answerOf(page, "/api/v1/auth/passkeys/register/finish", () => page.getByTestId("add-passkey").click());
  assert.equal(added.status, 201);
  await page.getByTestId("passkey").waitFor();
  await screenshot(page, "passkeys");
  const { credentials } = await cdp.send("WebAuthn.getCredentials", { authenticatorId: id });
  assert.equal(credentials.length, 1);
  assert.equal(credentials[0]!.isResidentCredential, true, "a discoverable credential");
  assert.equal(credentials[0]!.rpId, "localhost");

  await signOut(page);
  await page.getByTestId("passkey-sign-in").click();
  await page.getByTestId("profile").waitFor();
  const whoami = (await page.getByTestId("whoami").textContent()) ?? "";
  assert.ok(whoami.includes(user.email), whoami);
  assert.ok(whoami.includes("aal2 (passkey)"), whoami);

  // A password session (aal1) steps up with the passkey.
  await signOut(page);
  await signIn(page, user);
  const authentication = await page.evaluate(async () => {
    const { sovereign } = window as any;
    await sovereign.auth.reauthenticateWithPasskey();
    return (await sovereign.auth.me()).authentication as { aal: string; amr: string[] } | undefined;
  });
  assert.equal(authentication?.aal, "aal2");
  assert.deepEqual(authentication?.amr, ["pwd", "passkey"]);

  // The same passkey copied to another authenticator, with a counter behind: refused as a clone.
  const copy = await open(await harness.browser.newContext(), LOCAL);
  const clone = await authenticator(copy);
  await clone.cdp.send("WebAuthn.addCredential", {
    authenticatorId: clone.id,
    credential: { ...credentials[0]!, signCount: 0 },
  });
  const cloned = await answerOf(copy, "/api/v1/auth/passkeys/sign-in/finish", () => copy.getByTestId("passkey-sign-in").click());
  assert.deepEqual(cloned, { status: 401, code: "invalid_passkey" });
  // The original goes on working.
  await signOut(page);
  const again = await answerOf(page, "/api/v1/auth/passkeys/sign-in/finish", () => page.getByTestId("passkey-sign-in").click());
  assert.equal(again.status, 200);
});

test("a passkey made on a page outside WEBAUTHN_ORIGINS is refused, and a used challenge is spent", async () => {
  const page = await open(await harness.browser.newContext(), LOCAL_OTHER);
  await authenticator(page);
  await signUp(page, newUser("Oren"));
  const refused = await answerOf(page, "/api/v1/auth/passkeys/register/finish", () => page.getByTestId("add-passkey").click());
  assert.deepEqual(refused, { status: 401, code: "invalid_passkey" });
  const left = await page.evaluate(async () => {
    const { sovereign } = window as any;
    return (await sovereign.auth.passkeys()).length as number;
  });
  assert.equal(left, 0, "nothing registered");

  // On the right origin: one answer per ceremony.
  const good = await open(await harness.browser.newContext(), LOCAL);
  await authenticator(good);
  await signUp(good, newUser("Uma"));
  const replayed = await good.evaluate(async () => {
    const { sovereign } = window as any;
    const url = (path: string) => new URL(path, sessionStorage.getItem("sovereign.example.api")!).href;
    const token = await sovereign.auth.accessToken();
    const headers = { authorization: `Bearer ${token}`, "content-type": "application/json" };
    const start = await (await fetch(url("/api/v1/auth/passkeys/register/start"), { method: "POST", headers, body: "{}" })).json();
    const created = (await navigator.credentials.create({
      publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(start.options.publicKey),
    })) as PublicKeyCredential;
    const body = JSON.stringify({ ceremony: start.ceremony, credential: created.toJSON() });
    const first = await fetch(url("/api/v1/auth/passkeys/register/finish"), { method: "POST", headers, body });
    const second = await fetch(url("/api/v1/auth/passkeys/register/finish"), { method: "POST", headers, body });
    return [first.status, second.status, (await second.json()).code];
  });
  assert.deepEqual(replayed, [201, 401, "invalid_passkey"]);
});
