// A scripted stand-in for the server's HTTP answers, for unit tests of the session layer (the
// real server is exercised by test/node and the browser tests of examples/web).

export interface Call {
  method: string;
  path: string;
  headers: Headers;
  body: unknown;
}

export type Handler = (call: Call) => Response | Promise<Response>;

export function fakeFetch(handler: Handler) {
  const calls: Call[] = [];
  const fetch = async (input: RequestInfo | URL, init?: RequestInit) => {
    const request = new Request(input, init);
    const text = await request.text();
    const call = {
      method: request.method,
      path: new URL(request.url).pathname + new URL(request.url).search,
      headers: request.headers,
      body: text ? JSON.parse(text) : undefined,
    };
    calls.push(call);
    return handler(call);
  };
  return { fetch: fetch as typeof globalThis.fetch, calls };
}

export function json(status: number, body: unknown, headers: Record<string, string> = {}) {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": status < 300 ? "application/json" : "application/problem+json", ...headers },
  });
}

export function problem(status: number, code: string, extra: Record<string, unknown> = {}) {
  return json(status, {
    type: `urn:sovereign:problem:${code}`,
    title: "Problem",
    status,
    detail: `detail of ${code}`,
    code,
    request_id: "req-1",
    ...extra,
  });
}

let counter = 0;
export function tokenPair(lifetimeSeconds = 900) {
  counter += 1;
  return {
    access_token: `access-${counter}`,
    refresh_token: `refresh-${counter}`,
    token_type: "Bearer",
    expires_in: lifetimeSeconds,
    refresh_expires_in: 604800,
    session_id: "0193a6f0-7c3e-7b1a-9d2f-4a5b6c7d8e9f",
  };
}

export const user = {
  id: "0193a6f0-7c3e-7b1a-9d2f-4a5b6c7d8e9f",
  tenant_id: "0193a6f0-7c3e-7b1a-9d2f-4a5b6c7d8e90",
  email: "ada@example.com",
  full_name: "Ada",
  role: "user",
  is_active: true,
  email_verified: false,
  created_at: "2026-01-01T00:00:00Z",
  updated_at: "2026-01-01T00:00:00Z",
};

/** Resolves after the current macrotask queue drains (lets concurrent calls pile up). */
export const tick = () => new Promise((resolve) => setImmediate(resolve));
