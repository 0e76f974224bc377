// Server-side use in Node 20: an API key on every request, the generated operations, and
// realtime over a websocket with headers (the `ws` package).

import assert from "node:assert/strict";
import { test } from "node:test";
import { WebSocket } from "ws";

import {
  createSovereign,
  NetworkError,
  realtimePublish,
  SovereignError,
  vectorCreate,
  vectorSearch,
  vectorUpsert,
  type Message,
  type WebSocketFactory,
} from "../../src/index.js";
import { ADMIN, URL } from "./env.js";

const webSocket: WebSocketFactory = (url, init) => new WebSocket(url, init);

async function adminKey(scopes: ("read" | "write")[]) {
  const admin = createSovereign({ url: URL });
  await admin.auth.signIn(ADMIN);
  const key = await admin.auth.createApiKey({ name: `node test ${Date.now()}`, role: "admin", scopes });
  return { admin, key };
}

test("an API key authenticates every generated operation, and revoking it stops it", async () => {
  const { admin, key } = await adminKey(["read", "write"]);
  const server = createSovereign({ url: URL, apiKey: key.key });

  const me = await server.auth.me();
  assert.equal(me.email, ADMIN.email);

  const name = `node_${process.pid}`;
  await vectorCreate({ client: server.client, body: { name, dimension: 384 } });
  await vectorUpsert({
    client: server.client,
    path: { name },
    body: {
      points: [
        { id: "cat", text: "the cat sleeps on the warm windowsill", payload: { kind: "pet" } },
        { id: "rocket", text: "the rocket launch was delayed by wind", payload: { kind: "space" } },
      ],
    },
  });
  const { data } = await vectorSearch({
    client: server.client,
    path: { name },
    body: { text: "the cat sleeps on the warm windowsill", limit: 1, with_payload: true },
  });
  assert.equal(data.results[0]?.id, "cat");
  assert.deepEqual(data.results[0]?.payload, { kind: "pet" });

  await admin.auth.revokeApiKey(key.id);
  await assert.rejects(server.auth.me(), (error: unknown) => {
    assert.ok(error instanceof SovereignError);
    assert.equal(error.status, 401);
    assert.ok(error.requestId, "the error names the request");
    return true;
  });
});

test("a key without the write scope is refused with a typed error", async () => {
  const { key } = await adminKey(["read"]);
  const server = createSovereign({ url: URL, apiKey: key.key });
  const error = await realtimePublish({
    client: server.client,
    body: { channel: "public:node", payload: { n: 1 } },
  }).catch((e: unknown) => e);
  assert.ok(error instanceof SovereignError);
  assert.equal(error.status, 403);
  assert.equal(typeof error.code, "string");
});

test("realtime in Node: an API key's socket receives what the server publishes", async () => {
  const { key } = await adminKey(["read", "write"]);
  const server = createSovereign({ url: URL, apiKey: key.key, webSocket });
  const realtime = server.realtime();
  await realtime.connect();
  const received: Message[] = [];
  const arrived = new Promise<void>((resolve) => {
    const sub = realtime.subscribe("public:node-feed", {
      onMessage: (message) => {
        received.push(message);
        if (received.length === 2) resolve();
      },
    });
    void sub.ready.then(async () => {
      await realtimePublish({ client: server.client, body: { channel: "public:node-feed", payload: { n: 1 } } });
      await realtime.publish("public:node-feed", { n: 2 });
    });
  });
  await arrived;
  realtime.close();
  assert.deepEqual(
    received.map((m) => m.payload),
    [{ n: 1 }, { n: 2 }],
  );
  assert.equal(received[1]!.offset, received[0]!.offset + 1);
});

test("realtime in Node with a session sends the access token as a bearer header", async () => {
  const client = createSovereign({ url: URL, webSocket });
  await client.auth.signIn(ADMIN);
  const realtime = client.realtime();
  await realtime.connect();
  const me = await client.auth.me();
  assert.equal(realtime.user, me.id);
  const users = await (async () => {
    const sub = realtime.subscribe("public:node-presence");
    await sub.ready;
    return realtime.presence("public:node-presence");
  })();
  assert.deepEqual(users.map((u) => u.user), [me.id]);
  realtime.close();
  await client.auth.signOut();
});

test("a server that does not answer is a NetworkError", async () => {
  const nowhere = createSovereign({ url: "http://127.0.0.1:9" });
  await assert.rejects(nowhere.auth.forgotPassword("a@example.com"), NetworkError);
});
