// Realtime: one websocket, any number of channel subscriptions, reconnected with backoff and
// jitter. After a reconnect every subscription resumes from the last message it saw
// (`since: {epoch, offset}`): the server replays what was missed, or says it cannot
// (`recovered: false`) and the application reloads its state. See docs/realtime.md.

import * as api from "./generated/sdk.gen.js";
import type { ClientFrame, PresenceEvent, PresenceUser, ServerFrame } from "./generated/types.gen.js";
import { SovereignError } from "./errors.js";
import type { Sovereign } from "./sovereign.js";

/* eslint-disable @typescript-eslint/no-explicit-any -- event types differ between the DOM and `ws` */
/** What `webSocket` factories return: the subset of the browser `WebSocket` this client uses
 * (the DOM's and the `ws` package's both fit). Events: `message` has `data`, `close` has `code`. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((event: any) => void) | null;
  onmessage: ((event: any) => void) | null;
  onclose: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketFactory = (url: string, init: { headers: Record<string, string> }) => WebSocketLike;

/** A position in a channel's history. */
export interface Position {
  epoch: string;
  offset: number;
}

export interface Message extends Position {
  channel: string;
  payload: unknown;
  /** The publishing user; `null` for server-side publishing. */
  publisher: string | null;
}

export interface Recovery extends Position {
  channel: string;
  /** `false`: messages were missed and cannot be replayed; reload the channel's state. */
  recovered: boolean;
  replayed: number;
}

/** Why the connection closed, from the server's close code. */
export type CloseReason =
  | "session_ended" // 4001: signed out, revoked or deactivated: sign in again
  | "token_expired" // 4002: the access token expired without a refresh
  | "role_changed" // 4003: reconnect to act with the new role
  | "slow_consumer" // 4008: the client read too slowly
  | "going_away" // 1001: the server is shutting down
  | "ping_timeout" // 4009: no pong in time
  | "protocol_error" // 1003, 1009, 4010: a client bug; not retried
  | "offline" // the browser went offline
  | "closed" // `close()` was called
  | "connection_lost"; // anything else: network, proxy, crash

export interface CloseInfo {
  code: number;
  reason: CloseReason;
  /** Whether the client reconnects by itself. */
  reconnecting: boolean;
  /** Whether the user must sign in again before realtime can work. */
  signInAgain: boolean;
}

/** How long after a sign-out the socket may stay open before the client closes it itself. */
const SIGN_OUT_GRACE_MS = 5_000;

const CLOSE_REASONS: Record<number, CloseReason> = {
  1001: "going_away",
  1003: "protocol_error",
  1009: "protocol_error",
  4001: "session_ended",
  4002: "token_expired",
  4003: "role_changed",
  4008: "slow_consumer",
  4009: "ping_timeout",
  4010: "protocol_error",
};

/** The reason for a close code. */
export function closeReason(code: number): CloseReason {
  return CLOSE_REASONS[code] ?? "connection_lost";
}

/** A refused realtime request (`error` frame), or one lost with its connection. */
export class RealtimeError extends Error {
  override readonly name = "RealtimeError";
  constructor(
    readonly code: string,
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(`${code}: ${message}`);
  }
}

export type RealtimeState = "idle" | "connecting" | "open" | "reconnecting" | "offline" | "closed";

export interface RealtimeOptions {
  /** First reconnect delay's upper bound (default 500 ms); doubles per failure. */
  initialDelayMs?: number;
  /** Largest reconnect delay (default 30 s). */
  maxDelayMs?: number;
  /** Send a new access token this long before the socket's expires (default 30 s). */
  refreshMarginMs?: number;
  /** Randomness for the jitter, for tests. */
  random?: () => number;
}

export interface SubscribeHandlers {
  onMessage?: (message: Message) => void;
  /** After each resubscription with `since`: whether the gap was replayed. */
  onRecovery?: (recovery: Recovery) => void;
  /** Join and leave events (subscriptions with `presence: true`). */
  onPresence?: (event: { channel: string; event: PresenceEvent; user: string }) => void;
}

export interface Subscription {
  readonly channel: string;
  /** The last message seen (or the position at subscribing). */
  readonly position: Position | undefined;
  /** Resolves when the server acknowledged the (first) subscription. */
  readonly ready: Promise<void>;
  unsubscribe(): Promise<void>;
}

interface Channel extends SubscribeHandlers {
  channel: string;
  presence: boolean;
  position: Position | undefined;
  ready: Deferred<void>;
}

interface Pending {
  resolve(frame: ServerFrame): void;
  reject(error: Error): void;
}

type Listener<T> = (value: T) => void;

export class Realtime {
  readonly #sovereign: Sovereign;
  readonly #initialDelay: number;
  readonly #maxDelay: number;
  readonly #refreshMargin: number;
  readonly #random: () => number;
  readonly #channels = new Map<string, Channel>();
  readonly #pending = new Map<number, Pending>();
  readonly #stateListeners = new Set<Listener<RealtimeState>>();
  readonly #closeListeners = new Set<Listener<CloseInfo>>();
  #socket: WebSocketLike | null = null;
  #state: RealtimeState = "idle";
  #nextId = 1;
  #attempt = 0;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #refreshTimer: ReturnType<typeof setTimeout> | undefined;
  #opened: Deferred<void> = deferred();
  #user: string | undefined;
  #stopAuth: (() => void) | undefined;
  #stopNetwork: (() => void) | undefined;
  #signOutTimer: ReturnType<typeof setTimeout> | undefined;
  /** The access token the open socket authenticates with. */
  #socketToken: string | undefined;

  constructor(sovereign: Sovereign, options: RealtimeOptions = {}) {
    this.#sovereign = sovereign;
    this.#initialDelay = options.initialDelayMs ?? 500;
    this.#maxDelay = options.maxDelayMs ?? 30_000;
    this.#refreshMargin = options.refreshMarginMs ?? 30_000;
    this.#random = options.random ?? Math.random;
  }

  get state(): RealtimeState {
    return this.#state;
  }

  /** The connected user's id (from the `welcome` frame). */
  get user(): string | undefined {
    return this.#user;
  }

  onState(listener: Listener<RealtimeState>): () => void {
    this.#stateListeners.add(listener);
    return () => this.#stateListeners.delete(listener);
  }

  /** Every close of the socket, with its reason and whether the client reconnects. */
  onClose(listener: Listener<CloseInfo>): () => void {
    this.#closeListeners.add(listener);
    return () => this.#closeListeners.delete(listener);
  }

  /** Connects (once); resolves when the server's `welcome` arrived. */
  connect(): Promise<void> {
    if (this.#state === "idle" || this.#state === "closed") {
      this.#opened = deferred();
      this.#watch();
      void this.#open();
    }
    return this.#opened.promise;
  }

  /** Closes the socket for good (until `connect` is called again). */
  close(): void {
    this.#stop();
    const socket = this.#socket;
    this.#socket = null;
    socket?.close(1000, "closed");
    this.#failPending(new RealtimeError("closed", "the client closed the connection"));
    this.#setState("closed");
  }

  /** Subscribes to a channel; survives reconnects, resuming where it left off. */
  subscribe(channel: string, handlers: SubscribeHandlers = {}, options: { presence?: boolean } = {}): Subscription {
    if (this.#channels.has(channel)) throw new Error(`already subscribed to ${channel}`);
    const entry: Channel = { ...handlers, channel, presence: options.presence ?? false, position: undefined, ready: deferred() };
    entry.ready.promise.catch(() => {});
    this.#channels.set(channel, entry);
    if (this.#state === "open") this.#sendSubscribe(entry);
    return {
      channel,
      get position() {
        return entry.position;
      },
      ready: entry.ready.promise,
      unsubscribe: async () => {
        if (this.#channels.get(channel) !== entry) return;
        this.#channels.delete(channel);
        if (this.#state === "open") await this.#request({ type: "unsubscribe", channel });
      },
    };
  }

  /** Publishes a message; resolves with its position in the channel's history. */
  async publish(channel: string, payload: unknown): Promise<Position> {
    const ack = await this.#request({ type: "publish", channel, payload });
    return positionOf(ack);
  }

  /** Who is subscribed to a channel, across every instance. */
  async presence(channel: string): Promise<PresenceUser[]> {
    const frame = await this.#request({ type: "presence", channel });
    return frame.type === "presence_state" ? frame.users : [];
  }

  async #open(): Promise<void> {
    this.#setState(this.#attempt === 0 && this.#state !== "reconnecting" ? "connecting" : "reconnecting");
    let socket: WebSocketLike;
    try {
      socket = await this.#dial();
    } catch (error) {
      if (this.#state === "closed") return;
      if (error instanceof SovereignError && error.status === 401) {
        this.#ended({ code: 4001, reason: "session_ended", reconnecting: false, signInAgain: true }, error);
        return;
      }
      this.#retry();
      return;
    }
    if (this.#state === "closed") {
      socket.close(1000, "closed");
      return;
    }
    this.#socket = socket;
    socket.onmessage = (event: { data: unknown }) => {
      if (this.#socket === socket && typeof event.data === "string") this.#receive(event.data);
    };
    socket.onclose = (event: { code: number }) => {
      if (this.#socket === socket) this.#closed(event.code);
    };
    socket.onerror = () => {};
  }

  /** Opens a socket: with headers where the factory allows, else with a single-use ticket. */
  async #dial(): Promise<WebSocketLike> {
    const { options, auth, client } = this.#sovereign;
    const url = `${client.getConfig().baseUrl}/api/v1/ws`.replace(/^http/, "ws");
    if (options.webSocket) {
      const headers: Record<string, string> = {};
      if (options.apiKey !== undefined) headers["X-API-Key"] = options.apiKey;
      else {
        const token = await auth.accessToken(this.#refreshMargin);
        if (token === undefined) throw notSignedIn();
        this.#socketToken = token;
        headers.Authorization = `Bearer ${token}`;
      }
      if (options.tenant) headers["X-Tenant-ID"] = options.tenant;
      return options.webSocket(url, { headers });
    }
    if (options.apiKey !== undefined) {
      throw new Error("realtime with an API key needs the `webSocket` option (headers cannot go in a URL)");
    }
    // Browsers cannot set headers on a websocket: exchange the access token for a ticket.
    this.#socketToken = await auth.accessToken(this.#refreshMargin);
    const { data } = await api.realtimeCreateTicket({ client });
    const Socket = (globalThis as { WebSocket?: new (url: string) => WebSocketLike }).WebSocket;
    if (!Socket) throw new Error("no WebSocket in this environment: pass the `webSocket` option");
    return new Socket(`${url}?ticket=${encodeURIComponent(data.ticket)}`);
  }

  #receive(text: string) {
    let frame: ServerFrame;
    try {
      frame = JSON.parse(text) as ServerFrame;
    } catch {
      return;
    }
    switch (frame.type) {
      case "welcome":
        this.#attempt = 0;
        this.#user = frame.user;
        this.#setState("open");
        this.#opened.resolve();
        this.#scheduleRefresh(frame.expires_at);
        for (const entry of this.#channels.values()) this.#sendSubscribe(entry);
        break;
      case "message": {
        const entry = this.#channels.get(frame.channel);
        if (!entry) break;
        const seen = entry.position;
        // Never deliver a message twice (a replay overlapping what already arrived).
        if (seen && seen.epoch === frame.epoch && frame.offset <= seen.offset) break;
        entry.position = { epoch: frame.epoch, offset: frame.offset };
        entry.onMessage?.({
          channel: frame.channel,
          epoch: frame.epoch,
          offset: frame.offset,
          payload: frame.payload,
          publisher: frame.publisher ?? null,
        });
        break;
      }
      case "recovered": {
        const entry = this.#channels.get(frame.channel);
        if (!entry) break;
        if (!frame.recovered) entry.position = { epoch: frame.epoch, offset: frame.offset };
        entry.onRecovery?.({
          channel: frame.channel,
          recovered: frame.recovered,
          replayed: frame.replayed,
          epoch: frame.epoch,
          offset: frame.offset,
        });
        this.#settle(frame.id, frame);
        break;
      }
      case "presence":
        this.#channels.get(frame.channel)?.onPresence?.({ channel: frame.channel, event: frame.event, user: frame.user });
        break;
      case "error":
        if (typeof frame.id === "number" && this.#pending.has(frame.id)) {
          const pending = this.#pending.get(frame.id)!;
          this.#pending.delete(frame.id);
          pending.reject(new RealtimeError(frame.code, frame.message, frame.retry_after_ms ?? undefined));
        }
        break;
      default:
        this.#settle(frame.id, frame);
    }
  }

  #settle(id: unknown, frame: ServerFrame) {
    if (typeof id !== "number") return;
    const pending = this.#pending.get(id);
    if (!pending) return;
    this.#pending.delete(id);
    pending.resolve(frame);
  }

  #sendSubscribe(entry: Channel) {
    const since = entry.position;
    const frame: ClientFrame = { type: "subscribe", channel: entry.channel };
    if (since) frame.since = since;
    if (entry.presence) frame.presence = true;
    this.#request(frame).then(
      (ack) => {
        // Without `since`, the acknowledged position is where this subscription starts.
        if (!since && ack.type === "ack" && ack.epoch != null && ack.offset != null && !entry.position) {
          entry.position = { epoch: ack.epoch, offset: ack.offset };
        }
        entry.ready.resolve();
      },
      (error: Error) => {
        if (error instanceof RealtimeError && error.code !== "connection_lost") {
          this.#channels.delete(entry.channel);
          entry.ready.reject(error);
        }
      },
    );
  }

  #request(frame: ClientFrame): Promise<ServerFrame> {
    const socket = this.#socket;
    if (this.#state !== "open" || !socket) {
      return Promise.reject(new RealtimeError("not_connected", "the realtime connection is not open"));
    }
    const id = this.#nextId++;
    return new Promise<ServerFrame>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      socket.send(JSON.stringify({ ...frame, id }));
    });
  }

  /** Before the socket's credential expires, hands it a newer access token. */
  #scheduleRefresh(expiresAt: number | null | undefined) {
    clearTimeout(this.#refreshTimer);
    if (expiresAt == null) return;
    const now = this.#sovereign.options.now ?? Date.now;
    const remaining = expiresAt * 1000 - now();
    const wait = Math.max(0, remaining - Math.min(this.#refreshMargin, remaining / 4));
    this.#refreshTimer = setTimeout(() => void this.#refreshToken(expiresAt * 1000), wait);
  }

  /** A token that outlives the socket's (refreshing the session if it has none), sent in a
   * `refresh` frame. Concurrent refreshes of the session are shared with every other caller. */
  async #refreshToken(socketExpiresAt: number) {
    try {
      const now = this.#sovereign.options.now ?? Date.now;
      const token = await this.#sovereign.auth.accessToken(socketExpiresAt - now() + 1_000);
      if (token === undefined || token === this.#socketToken) return;
      await this.#sendToken(token);
    } catch {
      // The socket closes with 4002 if this never succeeds; reconnecting then gets a new token.
    }
  }

  async #sendToken(token: string) {
    this.#socketToken = token;
    const ack = await this.#request({ type: "refresh", token });
    if (ack.type === "ack") this.#scheduleRefresh(ack.expires_at);
  }

  #closed(code: number) {
    this.#socket = null;
    clearTimeout(this.#refreshTimer);
    this.#failPending(new RealtimeError("connection_lost", "the realtime connection closed"));
    if (this.#state === "closed") return;
    const reason = closeReason(code);
    if (reason === "session_ended" || reason === "protocol_error") {
      this.#ended({ code, reason, reconnecting: false, signInAgain: reason === "session_ended" });
      return;
    }
    const offline = isOffline();
    this.#emitClose({ code, reason: offline ? "offline" : reason, reconnecting: true, signInAgain: false });
    if (offline) this.#setState("offline");
    else this.#retry();
  }

  #ended(info: CloseInfo, error?: Error) {
    this.#stop();
    this.#setState("closed");
    this.#emitClose(info);
    this.#opened.reject(error ?? new RealtimeError(info.reason, `the connection closed (${info.code})`));
    this.#opened.promise.catch(() => {});
    for (const entry of this.#channels.values()) entry.ready.promise.catch(() => {});
  }

  /** Reconnects after a random delay up to `initial · 2^attempt` (full jitter), capped. */
  #retry() {
    this.#setState("reconnecting");
    const ceiling = Math.min(this.#maxDelay, this.#initialDelay * 2 ** this.#attempt);
    this.#attempt += 1;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => void this.#open(), Math.floor(this.#random() * ceiling));
  }

  /** Follows the session (new tokens go to the socket; a sign-out closes it) and the network. */
  #watch() {
    this.#stopAuth = this.#sovereign.auth.onChange((event) => {
      if (event.type === "signed_out" && this.#sovereign.options.apiKey === undefined) {
        // The server closes the ended session's sockets (4001) as the sign-out commits; close
        // here only when that does not come (the sign-out could not reach the server).
        clearTimeout(this.#signOutTimer);
        this.#signOutTimer = setTimeout(() => {
          if (this.#state === "closed") return;
          const socket = this.#socket;
          this.#socket = null;
          socket?.close(1000, "signed out");
          this.#failPending(new RealtimeError("connection_lost", "signed out"));
          this.#ended({ code: 1000, reason: "session_ended", reconnecting: false, signInAgain: true });
        }, SIGN_OUT_GRACE_MS);
      }
      if (event.type === "refreshed" && this.#state === "open" && this.#sovereign.options.apiKey === undefined) {
        if (event.session.accessToken !== this.#socketToken) {
          this.#sendToken(event.session.accessToken).catch(() => {});
        }
      }
    });
    const target = globalThis as {
      addEventListener?: (type: string, fn: () => void) => void;
      removeEventListener?: (type: string, fn: () => void) => void;
    };
    if (!target.addEventListener || !target.removeEventListener) return;
    const offline = () => {
      // The socket would hang until the ping timeout; close it now and resume when back.
      const socket = this.#socket;
      if (socket) {
        this.#socket = null;
        socket.close(1000, "offline");
        this.#closed(1006);
      }
      clearTimeout(this.#retryTimer);
      if (this.#state !== "closed") this.#setState("offline");
    };
    const online = () => {
      if (this.#state !== "offline" && this.#state !== "reconnecting") return;
      clearTimeout(this.#retryTimer);
      this.#attempt = 0;
      void this.#open();
    };
    target.addEventListener("offline", offline);
    target.addEventListener("online", online);
    this.#stopNetwork = () => {
      target.removeEventListener?.("offline", offline);
      target.removeEventListener?.("online", online);
    };
  }

  #stop() {
    clearTimeout(this.#signOutTimer);
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#refreshTimer);
    this.#stopAuth?.();
    this.#stopNetwork?.();
    this.#stopAuth = undefined;
    this.#stopNetwork = undefined;
  }

  #failPending(error: Error) {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) p.reject(error);
  }

  #setState(state: RealtimeState) {
    if (this.#state === state) return;
    this.#state = state;
    for (const listener of this.#stateListeners) listener(state);
  }

  #emitClose(info: CloseInfo) {
    for (const listener of this.#closeListeners) listener(info);
  }
}

function positionOf(frame: ServerFrame): Position {
  if (frame.type === "ack" && frame.epoch != null && frame.offset != null) {
    return { epoch: frame.epoch, offset: frame.offset };
  }
  throw new RealtimeError("invalid_message", `unexpected answer: ${frame.type}`);
}

function isOffline(): boolean {
  const nav = (globalThis as { navigator?: { onLine?: boolean } }).navigator;
  return nav?.onLine === false;
}

function notSignedIn(): SovereignError {
  return new SovereignError({ status: 401, code: "not_authenticated", detail: "not signed in" });
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(error: Error): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
