// `createSovereign`: one configured client. The generated functions of `./generated/sdk.gen`
// take it as `{ client: sovereign.client }`; the session layer and realtime are built on it.

import { createClient, type Client } from "./generated/client/index.js";
import { Auth } from "./auth.js";
import { NetworkError, SovereignError } from "./errors.js";
import { Files } from "./files.js";
import { indexedDbLedger } from "./ledger.js";
import { Realtime, type RealtimeOptions, type WebSocketFactory } from "./realtime.js";
import { memoryStorage, type TokenStorage } from "./storage.js";

export interface SovereignOptions {
  /** The server's base URL, e.g. `https://api.example.com`. */
  url: string;
  /** The tenant (slug or id) to sign in to, sent as `X-Tenant-ID`. Multi-tenant servers only. */
  tenant?: string;
  /** Server-side use: authenticate every request with this API key (`X-API-Key`), no session. */
  apiKey?: string;
  /** Where the session's tokens are kept. Default: memory. */
  storage?: TokenStorage;
  /** Refresh the access token this long before it expires (default 60 s, at most a quarter of
   * the token's lifetime). */
  refreshMarginMs?: number;
  /** A `fetch` to use instead of the global one. */
  fetch?: typeof fetch;
  /**
   * Opens websockets with headers (Node: `(url, init) => new WebSocket(url, init)` from the `ws`
   * package). Without it, realtime uses the browser's `WebSocket` and a single-use ticket.
   */
  webSocket?: WebSocketFactory;
  /** The clock, for tests. */
  now?: () => number;
}

export interface Sovereign {
  /** The configured generated client: pass it to any generated operation. */
  readonly client: Client;
  /** Sign-in, sessions, profile, passwords and API keys. */
  readonly auth: Auth;
  readonly options: Readonly<SovereignOptions>;
  /** File uploads (direct, in parts, resumable, with progress) and signed download URLs. */
  readonly files: Files;
  /** A realtime connection manager (not yet connected). */
  realtime(options?: RealtimeOptions): Realtime;
}

export function createSovereign(options: SovereignOptions): Sovereign {
  const baseUrl = options.url.replace(/\/+$/, "");
  const storage = options.storage ?? memoryStorage();
  const now = options.now ?? Date.now;
  const baseFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  const headers: Record<string, string> = {};
  if (options.tenant) headers["X-Tenant-ID"] = options.tenant;

  const client = createClient({ baseUrl, headers, credentials: "omit", throwOnError: true });
  const auth = new Auth({
    client,
    storage,
    now,
    refreshMarginMs: options.refreshMarginMs ?? 60_000,
    ledger: storage.key === undefined ? undefined : indexedDbLedger(),
    tenant: options.tenant,
  });

  client.setConfig({
    // One credential per request: the API key when configured, else the session's access token.
    auth: async (scheme) => {
      if (options.apiKey !== undefined) return scheme.type === "apiKey" ? options.apiKey : undefined;
      return scheme.type === "http" ? auth.accessToken() : undefined;
    },
    fetch: async (input: RequestInfo | URL, init?: RequestInit) => {
      const request = new Request(input, init);
      const sent = request.headers.get("authorization");
      const retry = sent && options.apiKey === undefined ? request.clone() : null;
      const response = await send(baseFetch, request);
      if (response.status !== 401 || retry === null || !sent?.startsWith("Bearer ")) return response;
      // Only a refused token is worth a refresh (not `reauthentication_required`, say).
      const problem = (await response.clone().json().catch(() => null)) as { code?: string } | null;
      if (problem?.code !== "invalid_token") return response;
      // The token was refused (expired early, a clock behind the server's): refresh once, retry once.
      const fresh = await auth.recover(sent.slice("Bearer ".length));
      if (fresh === undefined || `Bearer ${fresh}` === sent) return response;
      retry.headers.set("Authorization", `Bearer ${fresh}`);
      return send(baseFetch, retry);
    },
  });
  client.interceptors.error.use(async (error, response) =>
    response ? SovereignError.fromResponse(response, error) : error,
  );

  const sovereign: Sovereign = {
    client,
    auth,
    options,
    files: new Files(client, baseFetch),
    realtime: (realtimeOptions) => new Realtime(sovereign, realtimeOptions),
  };
  return sovereign;
}

async function send(fetchFn: typeof fetch, request: Request): Promise<Response> {
  try {
    return await fetchFn(request);
  } catch (error) {
    if (error instanceof DOMException && error.name === "AbortError") throw error;
    throw new NetworkError(`${request.method} ${request.url}: no answer`, { cause: error });
  }
}
