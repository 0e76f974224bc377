import assert from "node:assert/strict";
import { test } from "node:test";

import { createSovereign, NetworkError, SovereignError, closeReason } from "../../src/index.js";
import { parseRetryAfter } from "../../src/errors.js";
import { fakeFetch, json, problem } from "./fake-server.js";

const URL = "http://sovereign.test";

test("a problem body becomes a SovereignError with every field", async () => {
  const stub = fakeFetch(() =>
    problem(422, "invalid_body", {
      request_id: "01936f0e",
      suggestion: "send an address",
      errors: [{ field: "email", code: "email", message: "not an address" }],
    }),
  );
  const sov = createSovereign({ url: URL, fetch: stub.fetch });
  const error = await sov.auth.register({ email: "x", password: "p" }).catch((e: unknown) => e);
  assert.ok(error instanceof SovereignError);
  assert.equal(error.status, 422);
  assert.equal(error.code, "invalid_body");
  assert.equal(error.detail, "detail of invalid_body");
  assert.equal(error.requestId, "01936f0e");
  assert.equal(error.suggestion, "send an address");
  assert.deepEqual(error.fields, [{ field: "email", code: "email", message: "not an address" }]);
  assert.equal(error.retryAfter, undefined);
});

test("Retry-After reaches the error as seconds", async () => {
  const stub = fakeFetch(() => {
    const response = problem(429, "rate_limited");
    response.headers.set("retry-after", "17");
    return response;
  });
  const sov = createSovereign({ url: URL, fetch: stub.fetch });
  await assert.rejects(sov.auth.signIn({ email: "a@b.c", password: "p" }), {
    name: "SovereignError",
    status: 429,
    code: "rate_limited",
    retryAfter: 17,
  });
  assert.equal(parseRetryAfter("Wed, 21 Oct 2015 07:28:10 GMT", Date.parse("Wed, 21 Oct 2015 07:28:00 GMT")), 10);
  assert.equal(parseRetryAfter("soon"), undefined);
});

test("an answer that is not ours keeps its status and the request id header", async () => {
  const stub = fakeFetch(
    () => new Response("<html>bad gateway</html>", { status: 502, statusText: "Bad Gateway", headers: { "x-request-id": "edge-9" } }),
  );
  const sov = createSovereign({ url: URL, fetch: stub.fetch });
  await assert.rejects(sov.auth.forgotPassword("a@b.c"), {
    name: "SovereignError",
    status: 502,
    code: "unexpected_response",
    requestId: "edge-9",
  });
});

test("no answer at all is a NetworkError, not a SovereignError", async () => {
  const failing = (async () => {
    throw new TypeError("fetch failed");
  }) as typeof fetch;
  const sov = createSovereign({ url: URL, fetch: failing });
  const error = await sov.auth.forgotPassword("a@b.c").catch((e: unknown) => e);
  assert.ok(error instanceof NetworkError);
  assert.ok(!(error instanceof SovereignError));
  assert.ok(error.cause instanceof TypeError);
});

test("success bodies come back typed", async () => {
  const stub = fakeFetch(() => json(202, { status: "accepted", detail: "check your mail" }));
  const sov = createSovereign({ url: URL, fetch: stub.fetch });
  const accepted = await sov.auth.forgotPassword("a@b.c");
  assert.equal(accepted.detail, "check your mail");
});

test("close codes map to reasons", () => {
  assert.equal(closeReason(4001), "session_ended");
  assert.equal(closeReason(4002), "token_expired");
  assert.equal(closeReason(4003), "role_changed");
  assert.equal(closeReason(4008), "slow_consumer");
  assert.equal(closeReason(1001), "going_away");
  assert.equal(closeReason(4009), "ping_timeout");
  assert.equal(closeReason(4010), "protocol_error");
  assert.equal(closeReason(1006), "connection_lost");
});
