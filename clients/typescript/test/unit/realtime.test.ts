import assert from "node:assert/strict";
import { test } from "node:test";

import { createSovereign, type CloseInfo, type Message, type Recovery, type WebSocketLike } from "../../src/index.js";
import { fakeFetch, json, tokenPair } from "./fake-server.js";

/** A scripted socket: records what the client sends; the test plays the server's frames. */
class ScriptedSocket implements WebSocketLike {
  readyState = 1;
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  readonly sent: Record<string, unknown>[] = [];
  constructor(readonly url: string, readonly headers: Record<string, string>) {}
  send(data: string) {
    this.sent.push(JSON.parse(data) as Record<string, unknown>);
  }
  close() {
    this.readyState = 3;
  }
  frame(frame: Record<string, unknown>) {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
  serverClose(code: number) {
    this.readyState = 3;
    this.onclose?.({ code, reason: "" });
  }
  /** Answers the client's last request of `type` with an ack carrying `extra`. */
  ack(type: string, extra: Record<string, unknown> = {}) {
    const request = [...this.sent].reverse().find((f) => f.type === type);
    assert.ok(request, `the client sent no ${type}`);
    this.frame({ type: "ack", id: request.id, ...extra });
  }
}

const welcome = { type: "welcome", connection: "c", user: "u", expires_at: null, ping_interval_ms: 25000 };

async function connected(options: { random?: () => number; maxDelayMs?: number } = {}) {
  const sockets: ScriptedSocket[] = [];
  let opened: () => void = () => {};
  const stub = fakeFetch(() => json(200, tokenPair()));
  const sovereign = createSovereign({
    url: "http://sovereign.test",
    fetch: stub.fetch,
    webSocket: (url, init) => {
      const socket = new ScriptedSocket(url, init.headers);
      sockets.push(socket);
      queueMicrotask(() => opened());
      return socket;
    },
  });
  await sovereign.auth.signIn({ email: "ada@example.com", password: "pw" });
  const realtime = sovereign.realtime({ random: options.random ?? (() => 0), maxDelayMs: options.maxDelayMs });
  const nextSocket = () =>
    new Promise<ScriptedSocket>((resolve) => {
      opened = () => resolve(sockets.at(-1)!);
    });
  const first = nextSocket();
  const connecting = realtime.connect();
  const socket = await first;
  socket.frame(welcome);
  await connecting;
  return { realtime, socket, sockets, nextSocket };
}

test("the handshake carries the access token as a bearer header, never in the URL", async () => {
  const { socket } = await connected();
  assert.match(socket.headers.Authorization ?? "", /^Bearer access-\d+$/);
  assert.equal(socket.url, "ws://sovereign.test/api/v1/ws");
});

test("after a lost connection every subscription resumes from its last message, each delivered once", async () => {
  const { realtime, socket, nextSocket } = await connected();
  const got: number[] = [];
  const recoveries: Recovery[] = [];
  const sub = realtime.subscribe("public:a", {
    onMessage: (m: Message) => got.push(m.offset),
    onRecovery: (r) => recoveries.push(r),
  });
  socket.ack("subscribe", { channel: "public:a", epoch: "e1", offset: 4 });
  await sub.ready;
  socket.frame({ type: "message", channel: "public:a", epoch: "e1", offset: 5, payload: {} });
  socket.frame({ type: "message", channel: "public:a", epoch: "e1", offset: 6, payload: {} });

  const closes: CloseInfo[] = [];
  realtime.onClose((c) => closes.push(c));
  const second = nextSocket();
  socket.serverClose(1006);
  assert.deepEqual(closes, [{ code: 1006, reason: "connection_lost", reconnecting: true, signInAgain: false }]);
  const again = await second;
  again.frame(welcome);
  const resubscribe = again.sent.find((f) => f.type === "subscribe")!;
  assert.deepEqual(resubscribe.since, { epoch: "e1", offset: 6 });
  again.ack("subscribe", { channel: "public:a", epoch: "e1", offset: 8 });
  again.frame({ type: "recovered", id: resubscribe.id, channel: "public:a", recovered: true, epoch: "e1", offset: 8, replayed: 2 });
  // A replay overlapping what already arrived is not delivered twice.
  for (const offset of [6, 7, 8]) again.frame({ type: "message", channel: "public:a", epoch: "e1", offset, payload: {} });
  assert.deepEqual(got, [5, 6, 7, 8]);
  assert.equal(recoveries[0]?.recovered, true);
  assert.deepEqual(sub.position, { epoch: "e1", offset: 8 });
});

test("a gap the history cannot cover is reported, and the position moves to the server's", async () => {
  const { realtime, socket, nextSocket } = await connected();
  const recoveries: Recovery[] = [];
  const sub = realtime.subscribe("public:a", { onRecovery: (r) => recoveries.push(r) });
  socket.ack("subscribe", { channel: "public:a", epoch: "e1", offset: 1 });
  await sub.ready;
  const second = nextSocket();
  socket.serverClose(4008);
  const again = await second;
  again.frame(welcome);
  const resubscribe = again.sent.find((f) => f.type === "subscribe")!;
  again.frame({ type: "recovered", id: resubscribe.id, channel: "public:a", recovered: false, epoch: "e2", offset: 40, replayed: 0 });
  assert.equal(recoveries[0]?.recovered, false);
  assert.deepEqual(sub.position, { epoch: "e2", offset: 40 });
});

test("a revoked session stops the client: no reconnect, sign in again", async () => {
  const { realtime, socket, sockets } = await connected();
  const closes: CloseInfo[] = [];
  realtime.onClose((c) => closes.push(c));
  const publishing = realtime.publish("public:a", { n: 1 });
  socket.serverClose(4001);
  await assert.rejects(publishing, { name: "RealtimeError", code: "connection_lost" });
  assert.deepEqual(closes, [{ code: 4001, reason: "session_ended", reconnecting: false, signInAgain: true }]);
  assert.equal(realtime.state, "closed");
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(sockets.length, 1, "no second socket");
});

test("refused requests reject with the server's code and retry hint", async () => {
  const { realtime, socket } = await connected();
  const publishing = realtime.publish("public:a", { n: 1 });
  const request = socket.sent.find((f) => f.type === "publish")!;
  socket.frame({ type: "error", id: request.id, code: "rate_limited", message: "slow down", retry_after_ms: 250 });
  await assert.rejects(publishing, { name: "RealtimeError", code: "rate_limited", retryAfterMs: 250 });
});

test("reconnect delays grow with full jitter up to the cap", async () => {
  const delays: number[] = [];
  const realSetTimeout = globalThis.setTimeout;
  const { socket, nextSocket } = await connected({ random: () => 0.999, maxDelayMs: 1500 });
  // Observe the delays the client asks for; run the callbacks at once.
  globalThis.setTimeout = ((fn: () => void, ms?: number) => {
    delays.push(ms ?? 0);
    return realSetTimeout(fn, 0);
  }) as typeof setTimeout;
  try {
    let current = socket;
    for (let i = 0; i < 3; i += 1) {
      const next = nextSocket();
      current.serverClose(1006);
      current = await next;
    }
  } finally {
    globalThis.setTimeout = realSetTimeout;
  }
  // A random share of 500 ms · 2^attempt, capped at maxDelayMs.
  assert.deepEqual(delays, [499, 999, 1498]);
});
