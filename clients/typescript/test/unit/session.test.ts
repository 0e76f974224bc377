import assert from "node:assert/strict";
import { test } from "node:test";

import { Auth, createSovereign, localStorageStorage, memoryStorage, MfaRequiredError, type StorageLike, type StoredSession } from "../../src/index.js";
import { createClient } from "../../src/generated/client/index.js";
import type { Ledger, LedgerEntry } from "../../src/ledger.js";
import { fakeFetch, json, problem, tick, tokenPair, user } from "./fake-server.js";

const URL = "http://sovereign.test";

/** A clock the test moves. */
function clock(start = 1_000_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

/** A server that hands out token pairs and answers `me` for the current access token only. */
function server(options: { refreshDelay?: () => Promise<void> } = {}) {
  let current = "";
  const stub = fakeFetch(async (call) => {
    if (call.path === "/api/v1/auth/login" || call.path === "/api/v1/auth/refresh") {
      if (call.path === "/api/v1/auth/refresh") await options.refreshDelay?.();
      const pair = tokenPair(900);
      current = pair.access_token;
      return json(200, pair);
    }
    if (call.path === "/api/v1/users/me") {
      return call.headers.get("authorization") === `Bearer ${current}`
        ? json(200, user)
        : problem(401, "invalid_token");
    }
    return problem(404, "not_found");
  });
  return { ...stub, refreshes: () => stub.calls.filter((c) => c.path === "/api/v1/auth/refresh") };
}

test("ten requests after expiry share one refresh, and every one uses the new token", async () => {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const srv = server({ refreshDelay: () => gate });
  const time = clock();
  const sov = createSovereign({ url: URL, fetch: srv.fetch, now: time.now });
  await sov.auth.signIn({ email: "ada@example.com", password: "pw" });
  time.advance(900_000);

  const all = Promise.all(Array.from({ length: 10 }, () => sov.auth.me()));
  await tick();
  release();
  const users = await all;

  assert.equal(users.length, 10);
  assert.equal(srv.refreshes().length, 1);
  const meCalls = srv.calls.filter((c) => c.path === "/api/v1/users/me");
  assert.equal(meCalls.length, 10);
  assert.ok(meCalls.every((c) => c.headers.get("authorization") === "Bearer access-" + tokenNumber(srv)));
});

function tokenNumber(srv: ReturnType<typeof server>) {
  const last = srv.calls.filter((c) => c.path === "/api/v1/users/me").at(-1)!;
  return last.headers.get("authorization")!.replace("Bearer access-", "");
}

test("a token is refreshed ahead of expiry, not before its margin", async () => {
  const srv = server();
  const time = clock();
  const sov = createSovereign({ url: URL, fetch: srv.fetch, now: time.now, refreshMarginMs: 60_000 });
  await sov.auth.signIn({ email: "ada@example.com", password: "pw" });
  time.advance(900_000 - 61_000);
  await sov.auth.me();
  assert.equal(srv.refreshes().length, 0);
  time.advance(2_000);
  await sov.auth.me();
  assert.equal(srv.refreshes().length, 1);
});

test("clients sharing a storage and a lock refresh once between them", async () => {
  // Two tabs: two clients over one storage, serialized by a Web Locks-like manager.
  const queue = new Map<string, Promise<unknown>>();
  const locks = {
    request<T>(name: string, task: () => Promise<T>): Promise<T> {
      const previous = queue.get(name) ?? Promise.resolve();
      const run = previous.then(task, task);
      queue.set(name, run.catch(() => {}));
      return run;
    },
  };
  Object.defineProperty(globalThis, "navigator", { value: { locks }, configurable: true });
  try {
    const srv = server();
    const time = clock();
    const shared = new Map<string, string>();
    const backing: StorageLike = {
      getItem: (k) => shared.get(k) ?? null,
      setItem: (k, v) => void shared.set(k, v),
      removeItem: (k) => void shared.delete(k),
    };
    const tabA = createSovereign({ url: URL, fetch: srv.fetch, now: time.now, storage: localStorageStorage("s", backing) });
    const tabB = createSovereign({ url: URL, fetch: srv.fetch, now: time.now, storage: localStorageStorage("s", backing) });
    await tabA.auth.signIn({ email: "ada@example.com", password: "pw" });
    time.advance(900_000);
    await Promise.all([tabA.auth.me(), tabB.auth.me(), tabA.auth.me(), tabB.auth.me()]);
    assert.equal(srv.refreshes().length, 1);
    // The second tab used the first one's refresh token, never a spent one.
    assert.equal(tabA.auth.refreshCount + tabB.auth.refreshCount, 1);
  } finally {
    Reflect.deleteProperty(globalThis, "navigator");
  }
});

test("a refused refresh ends the session here and says so", async () => {
  const time = clock();
  const stub = fakeFetch((call) =>
    call.path === "/api/v1/auth/login" ? json(200, tokenPair()) : problem(401, "refresh_token_reused"),
  );
  const sov = createSovereign({ url: URL, fetch: stub.fetch, now: time.now });
  const events: string[] = [];
  sov.auth.onChange((e) => events.push(e.type === "signed_out" ? `signed_out:${e.reason}` : e.type));
  await sov.auth.signIn({ email: "ada@example.com", password: "pw" });
  time.advance(900_000);
  await assert.rejects(sov.auth.me(), { name: "SovereignError", code: "refresh_token_reused" });
  assert.equal(await sov.auth.session(), null);
  assert.deepEqual(events, ["signed_in", "signed_out:session_ended"]);
});

test("a 401 on a current token refreshes once and retries once", async () => {
  let refused = true;
  const stub = fakeFetch((call) => {
    if (call.path === "/api/v1/auth/login" || call.path === "/api/v1/auth/refresh") return json(200, tokenPair());
    if (refused) {
      refused = false;
      return problem(401, "invalid_token");
    }
    return json(200, user);
  });
  const sov = createSovereign({ url: URL, fetch: stub.fetch });
  await sov.auth.signIn({ email: "ada@example.com", password: "pw" });
  const me = await sov.auth.me();
  assert.equal(me.email, "ada@example.com");
  assert.deepEqual(
    stub.calls.map((c) => c.path),
    ["/api/v1/auth/login", "/api/v1/users/me", "/api/v1/auth/refresh", "/api/v1/users/me"],
  );
});

test("sign-out ends the session at the server with its own token and forgets it", async () => {
  const stub = fakeFetch((call) =>
    call.path === "/api/v1/auth/login" ? json(200, tokenPair()) : new Response(null, { status: 204 }),
  );
  const sov = createSovereign({ url: URL, fetch: stub.fetch });
  const session = await sov.auth.signIn({ email: "ada@example.com", password: "pw" });
  await sov.auth.signOut({ all: true });
  const logout = stub.calls[1]!;
  assert.equal(logout.path, "/api/v1/auth/logout?all=true");
  assert.equal(logout.headers.get("authorization"), `Bearer ${session.accessToken}`);
  assert.equal(await sov.auth.session(), null);
});

test("tokens never travel in cookies or URLs, and one credential goes per request", async () => {
  const stub = fakeFetch((call) => (call.path.endsWith("/login") ? json(200, tokenPair()) : json(200, user)));
  const sov = createSovereign({ url: URL, fetch: stub.fetch, tenant: "acme" });
  await sov.auth.signIn({ email: "ada@example.com", password: "pw" });
  await sov.auth.me();
  for (const call of stub.calls) {
    assert.equal(call.headers.get("cookie"), null);
    assert.ok(!call.path.includes("access-") && !call.path.includes("refresh-"));
    assert.equal(call.headers.get("x-tenant-id"), "acme");
  }
  assert.equal(stub.calls[0]!.headers.get("authorization"), null, "sign-in carries no credential");

  const keyed = fakeFetch(() => json(200, user));
  const server = createSovereign({ url: URL, fetch: keyed.fetch, apiKey: "sovak_x" });
  await server.auth.me();
  assert.equal(keyed.calls[0]!.headers.get("x-api-key"), "sovak_x");
  assert.equal(keyed.calls[0]!.headers.get("authorization"), null);
});

test("memory storage keeps one session per client", async () => {
  const a = memoryStorage();
  const b = memoryStorage();
  const session: StoredSession = {
    accessToken: "a",
    refreshToken: "r",
    expiresAt: 1,
    refreshExpiresAt: 2,
    sessionId: "s",
  };
  await a.set(session);
  assert.deepEqual(await a.get(), session);
  assert.equal(await b.get(), null);
  await a.remove();
  assert.equal(await a.get(), null);
});

test("localStorage storage round-trips and treats a damaged entry as no session", () => {
  const map = new Map<string, string>();
  const backing: StorageLike = {
    getItem: (k) => map.get(k) ?? null,
    setItem: (k, v) => void map.set(k, v),
    removeItem: (k) => void map.delete(k),
  };
  const storage = localStorageStorage("app.session", backing);
  const session: StoredSession = { accessToken: "a", refreshToken: "r", expiresAt: 1, refreshExpiresAt: 2, sessionId: "s" };
  storage.set(session);
  assert.deepEqual(storage.get(), session);
  assert.equal(storage.key, "app.session");
  map.set("app.session", "{not json");
  assert.equal(storage.get(), null);
  map.set("app.session", JSON.stringify({ accessToken: 1 }));
  assert.equal(storage.get(), null);
  storage.remove();
  assert.equal(map.has("app.session"), false);
});

test("a tab whose localStorage still shows a spent refresh token takes the other tab's refresh from the ledger", async () => {
  const queue = new Map<string, Promise<unknown>>();
  const locks = {
    request<T>(name: string, task: () => Promise<T>): Promise<T> {
      const previous = queue.get(name) ?? Promise.resolve();
      const run = previous.then(task, task);
      queue.set(name, run.catch(() => {}));
      return run;
    },
  };
  Object.defineProperty(globalThis, "navigator", { value: { locks }, configurable: true });
  try {
    const srv = server();
    const time = clock();
    // Tab A writes through; tab B reads a copy that lags until `sync` (as Chromium's
    // per-process localStorage cache can).
    const shared = new Map<string, string>();
    let lagging = new Map<string, string>();
    const sync = () => (lagging = new Map(shared));
    const backingA: StorageLike = {
      getItem: (k) => shared.get(k) ?? null,
      setItem: (k, v) => void shared.set(k, v),
      removeItem: (k) => void shared.delete(k),
    };
    const backingB: StorageLike = {
      getItem: (k) => lagging.get(k) ?? null,
      setItem: (k, v) => void shared.set(k, v),
      removeItem: (k) => void shared.delete(k),
    };
    const entries = new Map<string, LedgerEntry>();
    const ledger: Ledger = {
      get: async (name) => entries.get(name),
      put: async (name, entry) => void entries.set(name, entry),
      remove: async (name) => void entries.delete(name),
    };
    const tab = (backing: StorageLike) =>
      new Auth({
        client: createClient({ baseUrl: URL, fetch: srv.fetch, throwOnError: true }),
        storage: localStorageStorage("s", backing),
        now: time.now,
        refreshMarginMs: 60_000,
        ledger,
      });
    const a = tab(backingA);
    const b = tab(backingB);
    await a.signIn({ email: "ada@example.com", password: "pw" });
    sync();
    time.advance(900_000);
    const fromA = await a.accessToken();
    const fromB = await b.accessToken();
    assert.equal(srv.refreshes().length, 1, "one exchange of the refresh token, never a replay");
    assert.equal(fromB, fromA);
  } finally {
    Reflect.deleteProperty(globalThis, "navigator");
  }
});

test("an account with a second factor signs in in two steps", async () => {
  const stub = fakeFetch((call) => {
    if (call.path === "/api/v1/auth/login") {
      return json(200, { status: "mfa_required", challenge: "sovmc_x", expires_in: 300, methods: ["totp", "recovery_code"] });
    }
    if (call.path === "/api/v1/auth/mfa/verify") return json(200, tokenPair());
    if (call.path === "/api/v1/auth/reauthenticate") return json(200, { access_token: "stepped-up", token_type: "Bearer", expires_in: 900 });
    return json(200, user);
  });
  const sov = createSovereign({ url: URL, fetch: stub.fetch });
  const error = await sov.auth.signIn({ email: "ada@example.com", password: "pw" }).catch((e: unknown) => e);
  assert.ok(error instanceof MfaRequiredError);
  assert.equal(error.challenge, "sovmc_x");
  assert.deepEqual(error.methods, ["totp", "recovery_code"]);
  assert.equal(await sov.auth.session(), null, "no session before the second factor");
  const session = await sov.auth.completeSignIn({ challenge: error.challenge, code: "123456" });
  assert.deepEqual(stub.calls.at(-1)!.body, { challenge: "sovmc_x", code: "123456" });
  assert.deepEqual(await sov.auth.session(), session);

  await sov.auth.reauthenticate({ password: "pw" });
  const stepped = await sov.auth.session();
  assert.equal(stepped?.accessToken, "stepped-up");
  assert.equal(stepped?.refreshToken, session.refreshToken, "the refresh token is kept");
  assert.equal(stub.calls.at(-1)!.headers.get("authorization"), `Bearer ${session.accessToken}`);
});

test("a 401 that is not about the token is not retried and spends no refresh", async () => {
  const stub = fakeFetch((call) =>
    call.path === "/api/v1/auth/login" ? json(200, tokenPair()) : problem(401, "reauthentication_required"),
  );
  const sov = createSovereign({ url: URL, fetch: stub.fetch });
  await sov.auth.signIn({ email: "ada@example.com", password: "pw" });
  await assert.rejects(sov.auth.createApiKey({ name: "ci" }), { name: "SovereignError", code: "reauthentication_required" });
  assert.deepEqual(
    stub.calls.map((c) => c.path),
    ["/api/v1/auth/login", "/api/v1/api-keys"],
  );
});
