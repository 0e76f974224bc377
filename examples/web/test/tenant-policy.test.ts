// A tenant that requires a second factor of everyone: the example app enrols an authenticator
// at sign-up (QR code and key shown, a code, the recovery codes once), in Chromium, against the
// real server. Runs last and puts the policy back.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { ADMIN, API, newUser, open, screenshot, start, totp, type Harness } from "./harness.js";

let harness: Harness;
let admin: string;
let factor: string | undefined;

async function api(path: string, init: RequestInit & { token?: string } = {}) {
  const headers = new Headers(init.headers);
  if (init.token) headers.set("authorization", `Bearer ${init.token}`);
  if (init.body) headers.set("content-type", "application/json");
  const response = await fetch(`${API}${path}`, { ...init, headers });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : undefined };
}

before(async () => {
  harness = await start();
  const login = await api("/api/v1/auth/login", { method: "POST", body: JSON.stringify(ADMIN) });
  assert.equal(login.status, 200, JSON.stringify(login.body));
  const set = await api("/api/v1/auth/mfa-policy", {
    method: "PUT",
    token: login.body.access_token,
    body: JSON.stringify({ require_aal2: "everyone" }),
  });
  assert.equal(set.status, 200, JSON.stringify(set.body));
  // The administrator's own aal1 session ended with it; it enrols like everyone else.
  assert.equal((await api("/api/v1/auth/me", { token: login.body.access_token })).status, 401);
  const challenge = await api("/api/v1/auth/login", { method: "POST", body: JSON.stringify(ADMIN) });
  assert.equal(challenge.body.status, "mfa_enrolment_required");
  const enrolment = await api("/api/v1/auth/mfa/enrol", {
    method: "POST",
    body: JSON.stringify({ challenge: challenge.body.challenge }),
  });
  factor = enrolment.body.id;
  const session = await api("/api/v1/auth/mfa/enrol/confirm", {
    method: "POST",
    body: JSON.stringify({ challenge: challenge.body.challenge, code: totp(enrolment.body.secret) }),
  });
  assert.equal(session.status, 200, JSON.stringify(session.body));
  admin = session.body.access_token;
});

after(async () => {
  // Back as it was: no policy, and the administrator without a factor.
  if (admin) {
    assert.equal((await api("/api/v1/auth/mfa-policy", { method: "PUT", token: admin, body: JSON.stringify({ require_aal2: "none" }) })).status, 200);
    if (factor) assert.equal((await api(`/api/v1/auth/factors/${factor}`, { method: "DELETE", token: admin })).status, 204);
  }
  await harness?.close();
});

test("with a second factor required, the app enrols one at sign-up and signs in at aal2", async () => {
  const page = await open(await harness.browser.newContext());
  const user = newUser("Ines");
  const form = page.getByTestId("sign-up");
  await form.getByTestId("full_name").fill(user.name);
  await form.getByTestId("email").fill(user.email);
  await form.getByTestId("password").fill(user.password);
  await form.getByRole("button").click();
  const enrol = page.getByTestId("enrol-factor");
  await enrol.waitFor();
  assert.ok(await enrol.getByTestId("totp-qr").isVisible(), "a QR code drawn in the page");
  await screenshot(page, "enrol-at-sign-in");
  const secret = (await enrol.getByTestId("totp-secret").textContent())!.trim();
  await enrol.getByTestId("code").fill(totp(secret));
  await enrol.getByRole("button").click();
  await page.getByTestId("recovery-codes").waitFor();
  const codes = await page.getByTestId("recovery-codes").locator("li").allTextContents();
  assert.equal(codes.length, 10);
  await page.getByTestId("recovery-done").click();
  await page.getByTestId("profile").waitFor();
  const whoami = (await page.getByTestId("whoami").textContent()) ?? "";
  assert.ok(whoami.includes("aal2 (pwd, otp)"), whoami);
});
