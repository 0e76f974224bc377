// The example app and the client in Debian's Chromium, against the real server, PostgreSQL and
// Redis. The server runs with one-minute access tokens and a realtime history of 5 messages.

import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { after, before, test } from "node:test";

import {
  ADMIN,
  ALLOWED,
  API,
  REFUSED,
  enterRoom,
  metric,
  newUser,
  open,
  roomLog,
  screenshot,
  signIn,
  signUp,
  start,
  totp,
  waitForMessages,
  type Harness,
} from "./harness.js";

/** jsQR's browser build: a QR decoder independent of the encoder the app uses. */
const QR_DECODER = createRequire(import.meta.url).resolve("jsqr/dist/jsQR.js");

let harness: Harness;
before(async () => {
  harness = await start();
});
after(async () => {
  await harness?.close();
});

async function send(page: import("playwright-core").Page, text: string) {
  const form = page.getByTestId("room-send");
  await form.getByTestId("message").fill(text);
  await form.getByRole("button").click();
  await page.waitForFunction(() => (document.querySelector('[data-testid="room-send"] input') as HTMLInputElement).value === "");
}

test("two users of one tenant: messages cross, presence shows both", async () => {
  const alice = await harness.browser.newContext();
  const bob = await harness.browser.newContext();
  const a = await open(alice);
  await screenshot(a, "sign-in");
  await signUp(a, newUser("Alice"));
  await screenshot(a, "profile");
  const b = await open(bob);
  await signUp(b, newUser("Bob"));

  await enterRoom(a);
  await enterRoom(b);
  for (const page of [a, b]) {
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="room-people"] li').length === 2);
  }
  await send(a, "hello from Alice");
  await waitForMessages(b, 1);
  assert.deepEqual(await roomLog(b), ["hello from Alice"]);
  await send(b, "hi Alice");
  await waitForMessages(a, 2);
  assert.deepEqual(await roomLog(a), ["hello from Alice", "hi Alice"]);
  await screenshot(a, "room");

  // Offline and back: what was missed arrives once, in order.
  await bob.setOffline(true);
  await b.locator('[data-testid="room-state"][data-state="offline"]').waitFor();
  for (const text of ["one", "two", "three"]) await send(a, text);
  await bob.setOffline(false);
  await waitForMessages(b, 5);
  await b.locator('[data-testid="room-state"][data-state="open"]').waitFor();
  assert.deepEqual(await roomLog(b), ["hello from Alice", "hi Alice", "one", "two", "three"]);

  // More missed than the history keeps (5): the app is told `recovered: false`.
  await bob.setOffline(true);
  await b.locator('[data-testid="room-state"][data-state="offline"]').waitFor();
  for (let i = 1; i <= 7; i += 1) await send(a, `burst ${i}`);
  await bob.setOffline(false);
  await b.getByTestId("room-gap").waitFor();
  await b.locator('[data-testid="room-state"][data-state="open"]').waitFor();
  await send(a, "after the gap");
  await waitForMessages(b, 6);
  const log = await roomLog(b);
  assert.deepEqual(log, ["hello from Alice", "hi Alice", "one", "two", "three", "after the gap"]);
  await alice.close();
  await bob.close();
});

test("after expiry, ten requests cause one refresh, and two tabs refreshing at once revoke nothing", async () => {
  const context = await harness.browser.newContext();
  await context.clock.install();
  const first = await open(context);
  const user = newUser("Carol");
  await signUp(first, user);
  const second = await open(context, ALLOWED, "#/sessions");
  await second.getByTestId("sessions").waitFor();
  await screenshot(second, "sessions");

  const refreshes = await metric("sovereign_auth_events_total", 'event="refresh"');
  const reused = await metric("sovereign_auth_events_total", 'event="refresh_token_reused"');

  // The pages' clocks move past the access token's minute; the server's does not need to.
  await context.clock.fastForward("01:05");
  const emails = await first.evaluate(() =>
    Promise.all(Array.from({ length: 10 }, () => (window as any).sovereign.auth.me().then((u: { email: string }) => u.email))),
  );
  assert.deepEqual(emails, Array(10).fill(user.email));
  assert.equal(await metric("sovereign_auth_events_total", 'event="refresh"'), refreshes + 1);

  // Both tabs past expiry at once: the Web Lock lets one refresh, the other uses its tokens.
  await context.clock.fastForward("01:05");
  const both = await Promise.all(
    [first, second].map((page) =>
      page.evaluate(() =>
        Promise.all(Array.from({ length: 5 }, () => (window as any).sovereign.auth.me().then((u: { email: string }) => u.email))),
      ),
    ),
  );
  assert.deepEqual(both.flat(), Array(10).fill(user.email));
  assert.equal(await metric("sovereign_auth_events_total", 'event="refresh"'), refreshes + 2);
  assert.equal(await metric("sovereign_auth_events_total", 'event="refresh_token_reused"'), reused);
  const sessions = await second.evaluate(() => (window as any).sovereign.auth.sessions());
  assert.equal(sessions.length, 1, "still one session, never revoked");
  await context.close();
});

test("an origin outside BACKEND_CORS_ORIGINS can neither read the API nor open a websocket", async () => {
  // Tickets for the handshakes, asked for by a program (no Origin, no CORS).
  const login = await fetch(`${API}/api/v1/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(ADMIN),
  }).then((r) => r.json() as Promise<{ access_token: string }>);
  const ticket = async () => {
    const answer = await fetch(`${API}/api/v1/realtime/ticket`, {
      method: "POST",
      headers: { authorization: `Bearer ${login.access_token}` },
    }).then((r) => r.json() as Promise<{ ticket: string }>);
    return answer.ticket;
  };
  const probe = (page: import("playwright-core").Page, t: string) =>
    page.evaluate(
      async ({ api, t }) => {
        const read = await fetch(`${api}/api/v1/tenants/current`).then(
          (r) => `status ${r.status}`,
          () => "refused",
        );
        const socket = await new Promise<string>((resolve) => {
          const ws = new WebSocket(`${api.replace(/^http/, "ws")}/api/v1/ws?ticket=${encodeURIComponent(t)}`);
          ws.onmessage = (event) => {
            resolve(JSON.parse(event.data as string).type);
            ws.close();
          };
          ws.onclose = () => resolve("closed");
        });
        return { read, socket };
      },
      { api: API, t },
    );

  const context = await harness.browser.newContext();
  const refused = await open(context, REFUSED);
  assert.deepEqual(await probe(refused, await ticket()), { read: "refused", socket: "closed" });
  // The app itself says it cannot reach the server.
  await refused.getByTestId("sign-in").getByTestId("email").fill(ADMIN.email);
  await refused.getByTestId("sign-in").getByTestId("password").fill(ADMIN.password);
  await refused.getByTestId("sign-in").getByRole("button").click();
  await refused.getByText("The server cannot be reached").waitFor();

  const allowed = await open(context, ALLOWED);
  assert.deepEqual(await probe(allowed, await ticket()), { read: "status 200", socket: "welcome" });
  await context.close();
});

test("signing out closes that session's socket with the reason the client exposes", async () => {
  const context = await harness.browser.newContext();
  const page = await open(context);
  await signUp(page, newUser("Dave"));
  await enterRoom(page);
  await page.getByRole("button", { name: "Sign out" }).click();
  const state = page.locator('[data-testid="room-state"][data-closed]');
  await state.waitFor({ state: "attached" });
  assert.equal(await state.getAttribute("data-closed"), "session_ended");
  assert.equal(await state.getAttribute("data-code"), "4001", "closed by the server, not the client");
  await page.getByTestId("sign-in").waitFor();
  await context.close();
});

test("notes: an administrator adds notes and finds one by meaning", async () => {
  const context = await harness.browser.newContext();
  const page = await open(context);
  await signIn(page, ADMIN);
  await page.evaluate(() => (location.hash = "#/notes"));
  const notes = [
    "Buy oat milk and coffee beans",
    "The quarterly report is due on Friday",
    "Call the plumber about the leaking tap",
  ];
  for (const note of notes) {
    await page.getByTestId("add-note").getByTestId("note").fill(note);
    await page.getByTestId("add-note").getByRole("button").click();
    await page.waitForFunction(() => document.querySelector("#status")?.textContent === "Note added.");
    await page.evaluate(() => (document.querySelector("#status")!.textContent = ""));
  }
  await page.getByTestId("search-notes").getByTestId("query").fill("The quarterly report is due on Friday");
  await page.getByTestId("search-notes").getByRole("button").click();
  const first = page.locator('[data-testid="note-results"] li').first();
  await first.waitFor();
  assert.match((await first.textContent()) ?? "", /^The quarterly report is due on Friday/);
  await screenshot(page, "notes");
  await context.close();
});

test("two-step sign-in: an authenticator added from its QR code, then a sign-in with a code", async () => {
  const context = await harness.browser.newContext();
  const page = await open(context);
  const user = newUser("Erin");
  await signUp(page, user);
  await page.getByTestId("add-authenticator").click();
  await page.getByTestId("totp-qr").waitFor();
  await screenshot(page, "enrol-authenticator");
  const secret = (await page.getByTestId("totp-secret").textContent())!.trim();
  // A real decoder (jsQR, loaded into the page for the test only) reads the drawn code back.
  await page.addScriptTag({ path: QR_DECODER });
  const decoded = await page.evaluate(async () => {
    const svg = document.querySelector('[data-testid="totp-qr"]')!;
    const image = new Image();
    image.src = `data:image/svg+xml;base64,${btoa(new XMLSerializer().serializeToString(svg))}`;
    await image.decode();
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = 360;
    const context = canvas.getContext("2d")!;
    context.drawImage(image, 0, 0, 360, 360);
    const pixels = context.getImageData(0, 0, 360, 360);
    return (window as any).jsQR(pixels.data, 360, 360)?.data as string | undefined;
  });
  assert.ok(decoded?.startsWith("otpauth://totp/"), `decoded: ${decoded}`);
  assert.ok(decoded!.includes(`secret=${secret}`));
  const confirm = page.getByTestId("confirm-totp");
  await confirm.getByTestId("code").fill(totp(secret));
  await confirm.getByRole("button").click();
  const codes = page.locator('[data-testid="recovery-codes"] li');
  await codes.first().waitFor();
  assert.equal(await codes.count(), 10);
  await screenshot(page, "factors");

  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByTestId("sign-in").waitFor();
  const form = page.getByTestId("sign-in");
  await form.getByTestId("email").fill(user.email);
  await form.getByTestId("password").fill(user.password);
  await form.getByRole("button").click();
  const second = page.getByTestId("second-factor");
  await second.waitFor();
  // The code of the next step: the current one was spent confirming the authenticator.
  await second.getByTestId("code").fill(totp(secret, 1));
  await second.getByRole("button").click();
  await page.getByTestId("profile").waitFor();
  assert.match((await page.getByTestId("whoami").textContent()) ?? "", /aal2 \(pwd, otp\)/);
  await context.close();
});
