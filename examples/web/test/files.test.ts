// Files in Debian's Chromium against the real server: an image uploaded through the API and
// shown through a signed URL, and a larger file sent directly in parts with its progress.

import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { after, before, test } from "node:test";

import { ADMIN, API, open, screenshot, signIn, start, type Harness } from "./harness.js";

let harness: Harness;
before(async () => {
  harness = await start();
});
after(async () => {
  await harness?.close();
});

/** A 1×1 PNG. */
const PIXEL = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==",
  "base64",
);

test("files: an image is uploaded and shown through a signed URL; a large file goes in parts", async () => {
  const context = await harness.browser.newContext();
  const page = await open(context);
  await signIn(page, ADMIN);
  await page.evaluate(() => (location.hash = "#/files"));
  const form = page.getByTestId("upload");
  await form.waitFor();

  // Small: one request through the API.
  const name = `pixel-${process.pid}.png`;
  await form.getByTestId("file").setInputFiles({ name, mimeType: "image/png", buffer: PIXEL });
  await form.locator("button[type=submit]").click();
  await page.waitForFunction((n) => document.querySelector("#status")?.textContent === `Uploaded ${n}.`, name);
  await page.locator(`[data-key="${name}"]`).click();
  const preview = page.getByTestId("file-preview");
  await page.waitForFunction(() => {
    const img = document.querySelector<HTMLImageElement>('[data-testid="file-preview"]');
    return img !== null && !img.hidden && img.complete && img.naturalWidth === 1;
  });
  const src = (await preview.getAttribute("src")) ?? "";
  assert.ok(src.startsWith(`${API}/api/v1/storage/buckets/files/objects/`), src);
  assert.match(src, /[?&]token=/);
  // The signed URL is all it takes: no session, no header.
  const fetched = await fetch(src);
  assert.equal(fetched.status, 200);
  assert.deepEqual(Buffer.from(await fetched.arrayBuffer()), PIXEL);
  assert.equal(fetched.headers.get("x-content-type-options"), "nosniff");

  // Large: declared, then three parts PUT to their signed URLs, then completed.
  const big = randomBytes(3 * (1 << 20) - 1000);
  const parts: string[] = [];
  page.on("request", (request) => {
    if (request.method() === "PUT" && request.url().includes("/parts/")) parts.push(request.url());
  });
  const bigName = `big-${process.pid}.bin`;
  await form.getByTestId("file").setInputFiles({ name: bigName, mimeType: "application/octet-stream", buffer: big });
  await form.locator("button[type=submit]").click();
  await page.waitForFunction((n) => document.querySelector("#status")?.textContent === `Uploaded ${n}.`, bigName);
  assert.equal(parts.length, 3, parts.join("\n"));
  assert.equal(await page.getByTestId("upload-progress").getAttribute("data-sent"), String(big.length));
  await page.locator(`[data-key="${bigName}"]`).waitFor();
  const url = await page.evaluate((key) => (window as unknown as { sovereign: { files: { signedUrl(b: string, k: string, s: number): Promise<string> } } }).sovereign.files.signedUrl("files", key, 60), bigName);
  const downloaded = Buffer.from(await (await fetch(url)).arrayBuffer());
  assert.equal(createHash("sha256").update(downloaded).digest("hex"), createHash("sha256").update(big).digest("hex"));
  await screenshot(page, "files");
  await context.close();
});
