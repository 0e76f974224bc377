// What the browser tests share: the server they talk to (started by `cargo xtask web`), the
// example app served on an allowed and on a refused origin, Debian's Chromium, and counters
// read from the server's metrics.

import { createHmac } from "node:crypto";
import { createReadStream, existsSync, mkdirSync, statSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { extname, join, normalize } from "node:path";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the browser tests with \`cargo xtask web\``);
  return value;
}

export const API = required("SOVEREIGN_URL");
export const METRICS = required("SOVEREIGN_METRICS_URL");
export const ADMIN = { email: required("SOVEREIGN_ADMIN_EMAIL"), password: required("SOVEREIGN_ADMIN_PASSWORD") };
const DIST = required("EXAMPLE_DIST");
const APP_PORT = Number(required("APP_PORT"));
const OTHER_PORT = Number(required("OTHER_PORT"));
const SCREENSHOTS = required("SCREENSHOT_DIR");

/** The origin in `BACKEND_CORS_ORIGINS`, and one that is not. */
export const ALLOWED = `http://127.0.0.1:${APP_PORT}`;
export const REFUSED = `http://127.0.0.1:${OTHER_PORT}`;
/** The app at `localhost` (a passkey origin: browsers take no IP address as relying party id),
 * and at another port of localhost, which may call the API but is no passkey origin. */
export const LOCAL = `http://localhost:${APP_PORT}`;
export const LOCAL_OTHER = `http://localhost:${OTHER_PORT}`;

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript",
  ".css": "text/css",
  ".svg": "image/svg+xml",
};

/** Serves the built example app (its `dist`) on a port. */
function serve(port: number): Promise<Server> {
  const server = createServer((request, response) => {
    const path = normalize(decodeURIComponent(new URL(request.url ?? "/", "http://x").pathname));
    let file = join(DIST, path);
    if (!file.startsWith(DIST) || !existsSync(file) || statSync(file).isDirectory()) file = join(DIST, "index.html");
    response.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream" });
    createReadStream(file).pipe(response);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve(server));
  });
}

export interface Harness {
  browser: Browser;
  close(): Promise<void>;
}

export async function start(): Promise<Harness> {
  const servers = [await serve(APP_PORT), await serve(OTHER_PORT)];
  const browser = await chromium.launch({
    executablePath: required("CHROMIUM"),
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  return {
    browser,
    close: async () => {
      await browser.close();
      await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
    },
  };
}

/** A page of the example app from `origin`, talking to the server. */
export async function open(context: BrowserContext, origin = ALLOWED, hash = ""): Promise<Page> {
  const page = await context.newPage();
  page.on("pageerror", (error) => console.error(`page error: ${error.message}`));
  await page.goto(`${origin}/?api=${encodeURIComponent(API)}${hash}`);
  return page;
}

let users = 0;
/** A new account's address and password (a passphrase the strength check accepts). */
export function newUser(name: string) {
  users += 1;
  return { name, email: `${name.toLowerCase()}-${process.pid}-${users}@example.com`, password: "violet anchor meadow 1729" };
}

/** Signs up through the app's form (then the app signs in). */
export async function signUp(page: Page, user: { name: string; email: string; password: string }) {
  const form = page.getByTestId("sign-up");
  await form.getByTestId("full_name").fill(user.name);
  await form.getByTestId("email").fill(user.email);
  await form.getByTestId("password").fill(user.password);
  await form.getByRole("button").click();
  await page.getByTestId("profile").waitFor();
}

export async function signIn(page: Page, user: { email: string; password: string }) {
  const form = page.getByTestId("sign-in");
  await form.getByTestId("email").fill(user.email);
  await form.getByTestId("password").fill(user.password);
  await form.getByRole("button").click();
  await page.getByTestId("profile").waitFor();
}

/** Opens the live room and waits until the socket is open and the room joined. */
export async function enterRoom(page: Page) {
  await page.evaluate(() => (location.hash = "#/room"));
  await page.locator('[data-testid="room-state"][data-state="open"]').waitFor();
}

/** The room's messages as shown. */
export function roomLog(page: Page): Promise<string[]> {
  return page.locator('[data-testid="room-log"] li:not(.gap)').allTextContents();
}

/** Waits until the room shows `count` messages. */
export async function waitForMessages(page: Page, count: number) {
  await page.waitForFunction(
    (n) => document.querySelectorAll('[data-testid="room-log"] li:not(.gap)').length >= n,
    count,
  );
}

/** A counter of the server's metrics (`sovereign_auth_events_total{event="refresh"}`, …). */
export async function metric(name: string, labels: string): Promise<number> {
  const text = await (await fetch(METRICS)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{`) && l.includes(labels));
  return line ? Number(line.split(" ").at(-1)) : 0;
}

/** Saves a screenshot of the page as `<name>.png` in the run's screenshot folder. */
export async function screenshot(page: Page, name: string) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

/** A TOTP code (RFC 6238: SHA-1, 6 digits, 30 s) for a base32 secret, `offset` steps from now. */
export function totp(secret: string, offset = 0): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const char of secret.replace(/=+$/, "").toUpperCase()) {
    bits += alphabet.indexOf(char).toString(2).padStart(5, "0");
  }
  const key = Buffer.from(bits.match(/.{8}/g)!.map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 1000 / 30) + offset));
  const mac = createHmac("sha1", key).update(counter).digest();
  const at = mac[mac.length - 1]! & 0x0f;
  const value = (mac.readUInt32BE(at) & 0x7fffffff) % 1_000_000;
  return String(value).padStart(6, "0");
}
