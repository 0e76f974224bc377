// Sign-in with providers against a real OpenID provider (`oidc-provider`) and a stand-in that
// misbehaves on request, through the real server, PostgreSQL and Redis. What a browser would
// do is done with fetch and manual redirects; `browser.test.ts` does it in Chromium.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { ADMIN, ALLOWED, API, open, screenshot, start, totp } from "./harness.js";
import {
  startOidcProvider,
  startStandIn,
  throughProvider,
  type Mode,
  type RealProvider,
  type StandIn,
} from "./providers.js";

const BACK = `${ALLOWED}/`;
let oidc: RealProvider;
let standin: StandIn;
let admin: string;
let people = 0;

async function api(path: string, init: RequestInit & { token?: string } = {}) {
  const headers = new Headers(init.headers);
  if (init.token) headers.set("authorization", `Bearer ${init.token}`);
  if (init.body) headers.set("content-type", "application/json");
  const response = await fetch(`${API}${path}`, { ...init, headers, redirect: "manual" });
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text ? JSON.parse(text) : undefined };
}

/** A fresh person at a provider. */
function person(verified = true, email?: string) {
  people += 1;
  const sub = `${process.pid}${people}`;
  return { sub, email: email ?? `person-${sub}@example.com`, email_verified: verified, name: `Person ${sub}` };
}

before(async () => {
  oidc = await startOidcProvider(["test-oidc", "closed-oidc"]);
  standin = await startStandIn();
  const login = await api("/api/v1/auth/login", { method: "POST", body: JSON.stringify(ADMIN) });
  assert.equal(login.status, 200);
  admin = login.body.access_token;
  for (const provider of [
    { slug: "test-oidc", kind: "oidc", name: "Test OIDC", issuer: oidc.issuer, client_id: oidc.clientId, client_secret: oidc.clientSecret },
    { slug: "closed-oidc", kind: "oidc", issuer: oidc.issuer, client_id: oidc.clientId, client_secret: oidc.clientSecret, allow_sign_up: false },
    { slug: "standin", kind: "oidc", issuer: standin.url, client_id: standin.clientId, client_secret: standin.clientSecret },
    { slug: "hub", kind: "github", name: "GitHub", issuer: standin.url, api_url: `${standin.url}/api`, client_id: standin.clientId, client_secret: standin.clientSecret },
  ]) {
    const made = await api("/api/v1/auth/providers", { method: "POST", token: admin, body: JSON.stringify(provider) });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    assert.equal(made.body.client_secret, undefined, "secrets are write-only");
  }
});

after(async () => {
  await oidc?.close();
  await standin?.close();
});

/** The flow cookies the server set, by the flow's state: the browser that started each flow. */
const browser = new Map<string, string>();

/** Keeps the flow cookie of a response that sends the browser to the provider. */
function keepCookie(response: { headers: Headers }): URL {
  const location = new URL(response.headers.get("location")!);
  const cookie = response.headers.getSetCookie().find((c) => c.startsWith("sovereign_flow_"));
  assert.ok(cookie, "the flow is bound to the browser by a cookie");
  assert.match(cookie, /HttpOnly/i);
  assert.match(cookie, /SameSite=Lax/i);
  browser.set(location.searchParams.get("state")!, cookie.split(";")[0]!);
  return location;
}

/** Starts a sign-in: the provider URL the server redirects to. */
async function authorize(slug: string, redirectTo = BACK): Promise<URL> {
  const started = await api(`/api/v1/auth/providers/${slug}/authorize?redirect_to=${encodeURIComponent(redirectTo)}`);
  assert.equal(started.status, 302, JSON.stringify(started.body));
  return keepCookie(started);
}

/** Opens a link flow's `authorize_url` in the browser: the provider URL it is sent on to. */
async function openLink(authorizeUrl: string): Promise<URL> {
  const opened = await api(authorizeUrl.slice(API.length));
  assert.equal(opened.status, 302, JSON.stringify(opened.body));
  return keepCookie(opened);
}

/**
 * Delivers the provider's redirect to the server's callback, from the browser that started the
 * flow (`as`: another browser's cookie, or none): where the app is sent.
 */
async function callback(url: string, as?: string | null): Promise<{ status: number; location?: URL; body?: any }> {
  const cookie = as === undefined ? browser.get(new URL(url).searchParams.get("state") ?? "") : as;
  const answer = await api(url.slice(API.length), { headers: cookie ? { cookie } : {} });
  const location = answer.headers.get("location");
  return { status: answer.status, location: location ? new URL(location) : undefined, body: answer.body };
}

/** A whole sign-in at the real provider as `login`: where the app is sent back to. */
async function signInWith(slug: string, login: string) {
  const at = await authorize(slug);
  return callback(await throughProvider(at.href, login));
}

async function exchange(code: string) {
  return api("/api/v1/auth/providers/exchange", { method: "POST", body: JSON.stringify({ code }) });
}

test("the provider list shows enabled providers without secrets", async () => {
  const list = await api("/api/v1/auth/providers");
  assert.equal(list.status, 200);
  const slugs = list.body.map((p: { slug: string }) => p.slug);
  for (const slug of ["test-oidc", "standin", "hub"]) assert.ok(slugs.includes(slug), slug);
  const details = await api("/api/v1/auth/providers/test-oidc", { token: admin });
  assert.equal(details.status, 200);
  assert.equal(details.body.callback_url, `${API}/api/v1/auth/providers/test-oidc/callback`);
  assert.equal(details.body.client_secret, undefined);
  assert.ok(!JSON.stringify(details.body).includes(oidc.clientSecret), "the secret is never returned");
});

test("sign-in with a real OpenID provider: state, nonce and PKCE sent; a one-time code, never a token, in the URL", async () => {
  const who = person();
  oidc.people.set(who.sub, who);
  const at = await authorize("test-oidc");
  assert.equal(at.origin, oidc.issuer);
  assert.match(at.searchParams.get("state")!, /^sovps_/);
  assert.equal(at.searchParams.get("code_challenge_method"), "S256");
  assert.ok(at.searchParams.get("nonce"), "a nonce is sent");
  assert.equal(at.searchParams.get("code_verifier"), null, "the verifier never leaves the server");
  const back = await throughProvider(at.href, who.sub);
  const done = await callback(back);
  assert.equal(done.status, 302);
  assert.equal(`${done.location!.origin}${done.location!.pathname}`, BACK);
  const code = done.location!.searchParams.get("code")!;
  assert.match(code, /^sovpg_/);
  assert.equal(done.location!.searchParams.get("access_token"), null);
  assert.ok(!done.location!.href.includes("eyJ"), "no JWT in the URL");

  const session = await exchange(code);
  assert.equal(session.status, 200, JSON.stringify(session.body));
  const me = await api("/api/v1/auth/me", { token: session.body.access_token });
  assert.equal(me.body.email, who.email);
  assert.equal(me.body.email_verified, true);
  assert.deepEqual(me.body.authentication.amr, ["oauth"]);
  assert.equal(me.body.authentication.aal, "aal1");

  const again = await exchange(code);
  assert.equal(again.status, 401);
  assert.equal(again.body.code, "invalid_provider_code");
  const replayed = await callback(back);
  assert.equal(replayed.status, 400, "a replayed state is refused");
  assert.equal(replayed.body.code, "invalid_state");

  // Signing in again finds the same account through the identity.
  const second = await signInWith("test-oidc", who.sub);
  const pair = await exchange(second.location!.searchParams.get("code")!);
  const me2 = await api("/api/v1/auth/me", { token: pair.body.access_token });
  assert.equal(me2.body.id, me.body.id);
  const identities = await api("/api/v1/auth/identities", { token: pair.body.access_token });
  assert.equal(identities.body.length, 1);
  assert.equal(identities.body[0].provider, "test-oidc");
});

test("unknown, forged and cross-provider states are refused with 400 invalid_state", async () => {
  for (const state of ["", "nonsense", `sovps_${"0".repeat(32)}_${"A".repeat(43)}`]) {
    const answer = await api(`/api/v1/auth/providers/test-oidc/callback?code=x&state=${state}`);
    assert.equal(answer.status, 400);
    assert.equal(answer.body.code, "invalid_state");
    assert.ok(answer.body.request_id, "problem+json with the request id");
  }
  // A state made for one provider, brought to another's callback (a mix-up).
  const at = await authorize("test-oidc");
  const answer = await callback(`${API}/api/v1/auth/providers/standin/callback?code=x&state=${at.searchParams.get("state")}`);
  assert.equal(answer.status, 400);
  assert.equal(answer.body.code, "invalid_state");
});

test("a nonce other than the one the server keeps is refused", async () => {
  const who = person();
  oidc.people.set(who.sub, who);
  const at = await authorize("test-oidc");
  at.searchParams.set("nonce", "a-nonce-the-server-never-made");
  const done = await callback(await throughProvider(at.href, who.sub));
  assert.equal(done.location!.searchParams.get("error"), "invalid_id_token");
  assert.equal(done.location!.searchParams.get("code"), null);
});

test("a PKCE challenge other than the server's fails at the provider", async () => {
  const who = person();
  oidc.people.set(who.sub, who);
  const at = await authorize("test-oidc");
  at.searchParams.set("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
  const done = await callback(await throughProvider(at.href, who.sub));
  assert.equal(done.location!.searchParams.get("error"), "provider_refused");
  assert.equal(done.location!.searchParams.get("code"), null);
});

test("the provider's refusal reaches the app as provider_refused", async () => {
  const at = await authorize("test-oidc");
  const done = await callback(
    `${API}/api/v1/auth/providers/test-oidc/callback?error=access_denied&state=${at.searchParams.get("state")}`,
  );
  assert.equal(done.location!.searchParams.get("error"), "provider_refused");
  assert.ok(done.location!.searchParams.get("error_description"));
});

test("a callback naming another issuer (RFC 9207) is refused as a mix-up", async () => {
  const at = await authorize("test-oidc");
  const done = await callback(
    `${API}/api/v1/auth/providers/test-oidc/callback?code=x&iss=${encodeURIComponent(standin.url)}&state=${at.searchParams.get("state")}`,
  );
  assert.equal(done.location!.searchParams.get("error"), "invalid_id_token");
  assert.equal(done.location!.searchParams.get("code"), null);
});

test("redirect_to must be on the allow-list, exactly", async () => {
  for (const target of ["https://evil.example/", `${ALLOWED}/other`, `${ALLOWED}.evil.example/`, "javascript:alert(1)"]) {
    const answer = await api(`/api/v1/auth/providers/test-oidc/authorize?redirect_to=${encodeURIComponent(target)}`);
    assert.equal(answer.status, 400, target);
    assert.equal(answer.body.code, "redirect_not_allowed");
  }
  // The tenant's own list, managed by administrators, adds to AUTH_REDIRECT_URLS.
  const set = await api("/api/v1/auth/redirect-urls", {
    method: "PUT",
    token: admin,
    body: JSON.stringify({ urls: [`${ALLOWED}/other`] }),
  });
  assert.equal(set.status, 200, JSON.stringify(set.body));
  await authorize("test-oidc", `${ALLOWED}/other`);
  const bad = await api("/api/v1/auth/redirect-urls", {
    method: "PUT",
    token: admin,
    body: JSON.stringify({ urls: ["http://app.example.com/cb"] }),
  });
  assert.equal(bad.status, 422, "http only on loopback");
});

test("takeover by address: an unverified assertion never links to a verified account", async () => {
  const victim = person();
  oidc.people.set(victim.sub, victim);
  const made = await signInWith("test-oidc", victim.sub);
  const victimSession = await exchange(made.location!.searchParams.get("code")!);
  const token = victimSession.body.access_token;

  const attacker = { ...person(false), email: victim.email };
  oidc.people.set(attacker.sub, attacker);
  const attempt = await signInWith("test-oidc", attacker.sub);
  assert.equal(attempt.location!.searchParams.get("error"), "identity_link_required");
  assert.equal(attempt.location!.searchParams.get("code"), null, "no session");
  const identities = await api("/api/v1/auth/identities", { token });
  assert.equal(identities.body.length, 1, "nothing linked");

  // A verified assertion of the same (verified) address links.
  const colleague = { ...person(true), email: victim.email };
  oidc.people.set(colleague.sub, colleague);
  const linked = await signInWith("test-oidc", colleague.sub);
  const pair = await exchange(linked.location!.searchParams.get("code")!);
  const me = await api("/api/v1/auth/me", { token: pair.body.access_token });
  const victimMe = await api("/api/v1/auth/me", { token });
  assert.equal(me.body.id, victimMe.body.id);
  assert.equal((await api("/api/v1/auth/identities", { token })).body.length, 2);
});

test("a provider a tenant added never links an administrator's account by address", async () => {
  const impostor = { ...person(true), email: ADMIN.email };
  oidc.people.set(impostor.sub, impostor);
  const attempt = await signInWith("test-oidc", impostor.sub);
  assert.equal(attempt.location!.searchParams.get("error"), "identity_link_required");
  assert.equal(attempt.location!.searchParams.get("code"), null);
});

test("an address registered but not verified is not linked even by a verified assertion", async () => {
  const who = person();
  const registered = await api("/api/v1/auth/register", {
    method: "POST",
    body: JSON.stringify({ email: who.email, password: "violet anchor meadow 1729" }),
  });
  assert.equal(registered.status, 202);
  oidc.people.set(who.sub, who);
  const attempt = await signInWith("test-oidc", who.sub);
  assert.equal(attempt.location!.searchParams.get("error"), "identity_link_required");
});

test("sign-up follows the provider's policy; unverified addresses never make accounts", async () => {
  const closed = person();
  oidc.people.set(closed.sub, closed);
  const refused = await signInWith("closed-oidc", closed.sub);
  assert.equal(refused.location!.searchParams.get("error"), "sign_up_disabled");
  const unverified = person(false);
  oidc.people.set(unverified.sub, unverified);
  const attempt = await signInWith("test-oidc", unverified.sub);
  assert.equal(attempt.location!.searchParams.get("error"), "provider_email_unverified");
});

test("identities: linking from a signed-in session, one owner each, the last one stays", async () => {
  const owner = person();
  oidc.people.set(owner.sub, owner);
  const made = await signInWith("test-oidc", owner.sub);
  const token = (await exchange(made.location!.searchParams.get("code")!)).body.access_token;
  const [only] = (await api("/api/v1/auth/identities", { token })).body;
  const last = await api(`/api/v1/auth/identities/${only.id}`, { method: "DELETE", token });
  assert.equal(last.status, 409);
  assert.equal(last.body.code, "last_sign_in_method");

  // Link a second identity (another login at the provider) from the signed-in session.
  const second = person(false, `elsewhere-${owner.sub}@example.com`);
  oidc.people.set(second.sub, second);
  const link = await api("/api/v1/auth/providers/test-oidc/link", {
    method: "POST",
    token,
    body: JSON.stringify({ redirect_to: BACK }),
  });
  assert.equal(link.status, 200, JSON.stringify(link.body));
  assert.ok(link.body.authorize_url.startsWith(API), "the browser starts at this server, which binds the flow");
  const linked = await callback(await throughProvider((await openLink(link.body.authorize_url)).href, second.sub));
  const linkCode = linked.location!.searchParams.get("link_code")!;
  assert.match(linkCode, /^sovpl_/);
  assert.equal((await api("/api/v1/auth/identities", { token })).body.length, 1, "not linked before it is confirmed");
  const confirmed = await api("/api/v1/auth/providers/link/confirm", { method: "POST", token, body: JSON.stringify({ code: linkCode }) });
  assert.equal(confirmed.status, 204, JSON.stringify(confirmed.body));
  const both = (await api("/api/v1/auth/identities", { token })).body;
  assert.equal(both.length, 2);
  assert.equal((await api(`/api/v1/auth/identities/${only.id}`, { method: "DELETE", token })).status, 204);

  // Someone else's identity cannot be linked.
  const other = person();
  oidc.people.set(other.sub, other);
  await signInWith("test-oidc", other.sub);
  const steal = await api("/api/v1/auth/providers/test-oidc/link", {
    method: "POST",
    token,
    body: JSON.stringify({ redirect_to: BACK }),
  });
  const stolen = await callback(await throughProvider((await openLink(steal.body.authorize_url)).href, other.sub));
  const refused = await api("/api/v1/auth/providers/link/confirm", {
    method: "POST",
    token,
    body: JSON.stringify({ code: stolen.location!.searchParams.get("link_code") }),
  });
  assert.equal(refused.status, 409);
  assert.equal(refused.body.code, "identity_in_use");
});

test("a callback brought by a browser other than the one that started the flow is refused (login CSRF)", async () => {
  const attacker = person();
  oidc.people.set(attacker.sub, attacker);
  const at = await authorize("test-oidc");
  const back = await throughProvider(at.href, attacker.sub);
  // The attacker stops here and gets a victim's browser to open `back`.
  const bare = await callback(back, null);
  assert.equal(bare.status, 400);
  assert.equal(bare.body.code, "invalid_state");
  const other = await authorize("test-oidc");
  const foreign = await callback(
    (await throughProvider(other.href, attacker.sub)),
    browser.get(at.searchParams.get("state")!),
  );
  assert.equal(foreign.status, 400, "another flow's cookie does not do either");
  assert.equal(foreign.body.code, "invalid_state");
});

test("a link sent to another account's session is never linked (link CSRF)", async () => {
  const attacker = person();
  oidc.people.set(attacker.sub, attacker);
  const attackerToken = (await exchange((await signInWith("test-oidc", attacker.sub)).location!.searchParams.get("code")!)).body.access_token;
  const victim = person();
  oidc.people.set(victim.sub, victim);
  const victimToken = (await exchange((await signInWith("test-oidc", victim.sub)).location!.searchParams.get("code")!)).body.access_token;
  const victimAtProvider = { ...person(), email: `also-${victim.email}` };
  oidc.people.set(victimAtProvider.sub, victimAtProvider);
  // The attacker starts a link and sends its URL to the victim, whose browser completes it.
  const link = await api("/api/v1/auth/providers/test-oidc/link", {
    method: "POST",
    token: attackerToken,
    body: JSON.stringify({ redirect_to: BACK }),
  });
  const back = await callback(await throughProvider((await openLink(link.body.authorize_url)).href, victimAtProvider.sub));
  const code = back.location!.searchParams.get("link_code")!;
  // The victim's app confirms with the victim's session: refused, and spent.
  const refused = await api("/api/v1/auth/providers/link/confirm", { method: "POST", token: victimToken, body: JSON.stringify({ code }) });
  assert.equal(refused.status, 401);
  assert.equal(refused.body.code, "invalid_provider_code");
  const again = await api("/api/v1/auth/providers/link/confirm", { method: "POST", token: attackerToken, body: JSON.stringify({ code }) });
  assert.equal(again.status, 401, "a link code is single use");
  assert.equal((await api("/api/v1/auth/identities", { token: attackerToken })).body.length, 1);
  // A link URL opens once.
  const reopened = await api(link.body.authorize_url.slice(API.length));
  assert.equal(reopened.status, 400);
  assert.equal(reopened.body.code, "invalid_state");
});

/** A sign-in at the stand-in with its next answer misbehaving as `mode`. */
async function standinSignIn(slug: string, mode: Mode, who = person()) {
  standin.next = { person: who, mode };
  const at = await authorize(slug);
  const back = await fetch(at, { redirect: "manual" });
  return callback(back.headers.get("location")!);
}

test("ID tokens are validated in full: audience, azp, expiry, iat, issuer, signature, algorithm", async () => {
  for (const mode of ["other-audience", "extra-audience", "expired", "future-iat", "other-issuer", "unsigned", "hmac-with-secret", "unknown-key"] as const) {
    const done = await standinSignIn("standin", mode);
    assert.equal(done.location!.searchParams.get("error"), "invalid_id_token", mode);
    assert.equal(done.location!.searchParams.get("code"), null, mode);
  }
  const good = await standinSignIn("standin", "good");
  assert.match(good.location!.searchParams.get("code") ?? "", /^sovpg_/, "the same stand-in, behaving, signs in");
});

test("a provider that does not answer is provider_unavailable, within AUTH_PROVIDER_TIMEOUT_SECONDS", async () => {
  const done = await standinSignIn("standin", "hang");
  assert.equal(done.location!.searchParams.get("error"), "provider_unavailable");
});

test("GitHub-style OAuth 2.0: the primary verified address, the numeric id as subject", async () => {
  const who = { ...person(), sub: String(900000 + people) };
  const done = await standinSignIn("hub", "good", who);
  const code = done.location!.searchParams.get("code");
  assert.ok(code, done.location!.href);
  const pair = await exchange(code);
  const me = await api("/api/v1/auth/me", { token: pair.body.access_token });
  assert.equal(me.body.email, who.email);
  const unverified = await standinSignIn("hub", "good", { ...person(false), sub: String(800000 + people) });
  assert.equal(unverified.location!.searchParams.get("error"), "provider_email_unverified");
});

test("an account with a second factor gets a challenge from a provider sign-in, completed at aal2", async () => {
  const who = person();
  oidc.people.set(who.sub, who);
  const first = await signInWith("test-oidc", who.sub);
  const token = (await exchange(first.location!.searchParams.get("code")!)).body.access_token;
  const enrolment = await api("/api/v1/auth/factors/totp", { method: "POST", token, body: "{}" });
  assert.equal(enrolment.status, 201);
  const confirmed = await api(`/api/v1/auth/factors/${enrolment.body.id}/confirm`, {
    method: "POST",
    token,
    body: JSON.stringify({ code: totp(enrolment.body.secret) }),
  });
  assert.equal(confirmed.status, 200);

  const again = await signInWith("test-oidc", who.sub);
  const challenged = await exchange(again.location!.searchParams.get("code")!);
  assert.equal(challenged.status, 200);
  assert.equal(challenged.body.status, "mfa_required");
  assert.equal(challenged.body.access_token, undefined, "no session before the second factor");
  const done = await api("/api/v1/auth/mfa/verify", {
    method: "POST",
    body: JSON.stringify({ challenge: challenged.body.challenge, code: totp(enrolment.body.secret, 1) }),
  });
  assert.equal(done.status, 200, JSON.stringify(done.body));
  const me = await api("/api/v1/auth/me", { token: done.body.access_token });
  assert.equal(me.body.authentication.aal, "aal2");
  assert.deepEqual(me.body.authentication.amr, ["oauth", "otp"]);
});

test("in Chromium: the example app signs in through the OpenID provider's own pages", async () => {
  const harness = await start();
  try {
    const who = person();
    oidc.people.set(who.sub, who);
    const page = await open(await harness.browser.newContext());
    await page.getByTestId("provider-test-oidc").waitFor();
    await screenshot(page, "providers");
    await page.getByTestId("provider-test-oidc").click();
    // The provider's login page, then its consent page.
    await page.locator('input[name="login"]').fill(who.sub);
    await page.locator('input[name="password"]').fill("any password");
    await page.locator('button[type="submit"]').click();
    await page.locator('input[name="prompt"][value="consent"]').waitFor({ state: "attached" });
    await page.locator('button[type="submit"]').click();
    await page.getByTestId("profile").waitFor();
    assert.match((await page.getByTestId("whoami").textContent()) ?? "", new RegExp(`${who.email}.*oauth`));
    assert.equal(new URL(page.url()).searchParams.get("code"), null, "the code left the address bar");
    const stored = await page.evaluate(() => JSON.stringify(localStorage));
    assert.ok(!stored.includes("sovpg_"), "the one-time code is not kept");
  } finally {
    await harness.close();
  }
});
