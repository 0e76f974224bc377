// Files from Node against the real server: small uploads through the API, direct uploads in
// parts with progress, resumption that sends only the missing parts, signed URLs.

import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { test } from "node:test";

import {
  createSovereign,
  SovereignError,
  storageCreateBucket,
  storageCreateUpload,
  storageGetUpload,
} from "../../src/index.js";
import { ADMIN, URL } from "./env.js";

const MIB = 1 << 20;
const BUCKET = `node-files-${process.pid}`;

/** The admin's client, counting the part PUTs its `fetch` sends. */
async function admin() {
  const puts: string[] = [];
  const sovereign = createSovereign({
    url: URL,
    fetch: (input, init) => {
      const request = new Request(input, init);
      if (request.method === "PUT" && request.url.includes("/parts/")) puts.push(request.url);
      return fetch(request);
    },
  });
  await sovereign.auth.signIn(ADMIN);
  await storageCreateBucket({ client: sovereign.client, body: { name: BUCKET } }).catch((error: unknown) => {
    if (!(error instanceof SovereignError && error.status === 409)) throw error;
  });
  return { sovereign, puts };
}

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

test("small files go in one request, large ones directly in parts, with progress", async () => {
  const { sovereign, puts } = await admin();
  const small = await sovereign.files.upload(BUCKET, "notes/a.txt", new TextEncoder().encode("hello"), {
    contentType: "text/plain",
  });
  assert.equal(small.size, 5);
  assert.equal(puts.length, 0);

  const bytes = randomBytes(2 * MIB + 123);
  const seen: number[] = [];
  const big = await sovereign.files.upload(BUCKET, "data/big.bin", bytes, {
    directFrom: MIB,
    partSize: MIB,
    concurrency: 2,
    onProgress: ({ sent, total }) => {
      assert.equal(total, bytes.length);
      seen.push(sent);
    },
  });
  assert.equal(big.sha256, sha256(bytes));
  assert.equal(puts.length, 3);
  assert.deepEqual(seen, [...seen].sort((a, b) => a - b), "progress only grows");
  assert.equal(seen[0], 0);
  assert.equal(seen.at(-1), bytes.length);

  const url = await sovereign.files.signedUrl(BUCKET, "data/big.bin", 60);
  const downloaded = new Uint8Array(await (await fetch(url)).arrayBuffer());
  assert.equal(sha256(downloaded), sha256(bytes));
  const tampered = url.replace("token=", "token=x");
  const refused = await fetch(tampered);
  assert.equal(refused.status, 403);
  assert.equal(((await refused.json()) as { code: string }).code, "invalid_signature");
});

test("a resumed upload sends only the parts that did not arrive", async () => {
  const { sovereign, puts } = await admin();
  const bytes = randomBytes(3 * MIB);
  const { data: upload } = await storageCreateUpload({
    client: sovereign.client,
    path: { bucket: BUCKET },
    body: { key: "resumed.bin", size: bytes.length, content_type: "application/octet-stream", part_size: MIB },
  });
  // Part 2 arrived before the page was closed.
  const sent = await fetch(upload.parts[1]!.url!, { method: "PUT", body: bytes.subarray(MIB, 2 * MIB) });
  assert.equal(sent.status, 204);
  const { data: before } = await storageGetUpload({ client: sovereign.client, path: { id: upload.id } });
  assert.deepEqual(before.parts.map((p) => p.received), [false, true, false]);

  const object = await sovereign.files.resume(upload.id, bytes);
  assert.equal(object.sha256, sha256(bytes));
  assert.deepEqual(
    puts.map((u) => new globalThis.URL(u).pathname.split("/").at(-1)).sort(),
    ["1", "3"],
    "parts 1 and 3 only",
  );
  await assert.rejects(sovereign.files.resume(upload.id, bytes), (error: unknown) => {
    assert.ok(error instanceof SovereignError);
    assert.equal(error.code, "upload_not_found");
    return true;
  });
});
