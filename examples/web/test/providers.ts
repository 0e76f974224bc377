// Sign-in providers for the tests: a real OpenID provider (`oidc-provider`, certified) run in
// this process on loopback, and a stand-in that speaks OpenID Connect and GitHub's OAuth 2.0
// endpoints and can be told to misbehave (ID tokens for another audience, expired, unsigned, …).
// Both check PKCE S256 and client credentials at their token endpoints, as real ones do.

import { createHash, randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

import { SignJWT, exportJWK, generateKeyPair } from "jose";
import Provider from "oidc-provider";

/** The server (set by `cargo xtask web`, or by `cargo xtask bench identity`). */
const API = process.env.SOVEREIGN_URL ?? "";

/** The account a provider signs in, as it asserts it. */
export interface Person {
  sub: string;
  email?: string;
  email_verified?: boolean;
  name?: string;
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port));
  });
}

function close(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

export const callbackUrl = (slug: string) => `${API}/api/v1/auth/providers/${slug}/callback`;

export interface RealProvider {
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** People who can sign in, by login. */
  people: Map<string, Person>;
  close(): Promise<void>;
}

/** `oidc-provider` with one confidential client registered for each slug's callback. */
export async function startOidcProvider(slugs: string[]): Promise<RealProvider> {
  const people = new Map<string, Person>();
  let handler: (req: IncomingMessage, res: ServerResponse) => void = (_q, r) => r.end();
  const server = createServer((req, res) => handler(req, res));
  const port = await listen(server);
  const issuer = `http://127.0.0.1:${port}`;
  const clientId = "sovereign-tests";
  const clientSecret = randomBytes(24).toString("hex");
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: slugs.map(callbackUrl),
        grant_types: ["authorization_code"],
        response_types: ["code"],
        token_endpoint_auth_method: "client_secret_basic",
      },
    ],
    pkce: { required: () => true },
    claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["name"] },
    cookies: { keys: [randomBytes(16).toString("hex")] },
    async findAccount(_ctx, id) {
      const person = people.get(id);
      if (!person) return undefined;
      return { accountId: id, claims: async () => ({ ...person }) };
    },
  });
  handler = provider.callback();
  return { issuer, clientId, clientSecret, people, close: () => close(server) };
}

/** Keeps cookies across the provider's pages, as a browser would. */
class Jar {
  private cookies = new Map<string, string>();
  take(response: Response) {
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(";");
      const at = pair!.indexOf("=");
      this.cookies.set(pair!.slice(0, at).trim(), pair!.slice(at + 1).trim());
    }
  }
  header(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join("; ");
  }
}

/**
 * Follows a provider's pages from `url` as a browser would, signing in as `login` and
 * consenting, until the provider sends the browser to this server; returns that URL.
 */
export async function throughProvider(url: string, login: string): Promise<string> {
  const jar = new Jar();
  for (let step = 0; step < 20; step += 1) {
    if (url.startsWith(API)) return url;
    const page = await fetch(url, { redirect: "manual", headers: { cookie: jar.header() } });
    jar.take(page);
    const location = page.headers.get("location");
    if (location) {
      url = new URL(location, url).href;
      continue;
    }
    const html = await page.text();
    const action = /<form[^>]*action="([^"]+)"/.exec(html)?.[1];
    const prompt = /name="prompt" value="(\w+)"/.exec(html)?.[1];
    if (!action || !prompt) throw new Error(`unexpected page at ${url} (${page.status}): ${html.slice(0, 300)}`);
    const form = new URLSearchParams({ prompt });
    if (prompt === "login") {
      form.set("login", login);
      form.set("password", "any");
    }
    const sent = await fetch(new URL(action, url), {
      method: "POST",
      redirect: "manual",
      headers: { cookie: jar.header(), "content-type": "application/x-www-form-urlencoded" },
      body: form,
    });
    jar.take(sent);
    const next = sent.headers.get("location");
    if (!next) throw new Error(`the provider answered ${sent.status} to ${action}`);
    url = new URL(next, url).href;
  }
  throw new Error("the provider never sent the browser back");
}

/** How the stand-in's next token answer misbehaves. */
export type Mode =
  | "good"
  | "other-audience"
  | "extra-audience"
  | "expired"
  | "future-iat"
  | "other-issuer"
  | "unsigned"
  | "hmac-with-secret"
  | "unknown-key"
  | "hang";

export interface StandIn {
  url: string;
  clientId: string;
  clientSecret: string;
  /** Milliseconds spent answering token requests, in all (for benchmarks: the provider's share). */
  tokenMs: number;
  /** Who the next sign-in is, and how the token answer misbehaves. */
  next: { person: Person; mode: Mode };
  close(): Promise<void>;
}

const s256 = (verifier: string) => createHash("sha256").update(verifier).digest("base64url");

/** The stand-in: OpenID Connect at `/`, GitHub's endpoints at `/login/oauth/…` and `/api/…`. */
export async function startStandIn(): Promise<StandIn> {
  const { privateKey, publicKey } = await generateKeyPair("RS256");
  const stranger = await generateKeyPair("RS256");
  const jwk = { ...(await exportJWK(publicKey)), kid: "k1", alg: "RS256", use: "sig" };
  const clientId = "standin-client";
  const clientSecret = randomBytes(24).toString("hex");
  const codes = new Map<string, { challenge: string; nonce?: string; redirect: string; person: Person }>();
  const tokens = new Map<string, Person>();
  const state: StandIn = {
    url: "",
    clientId,
    clientSecret,
    tokenMs: 0,
    next: { person: { sub: "nobody" }, mode: "good" },
    close: async () => undefined,
  };
  const json = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  };
  const read = (req: IncomingMessage) =>
    new Promise<string>((resolve) => {
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => resolve(body));
    });
  const idToken = async (person: Person, nonce: string | undefined, mode: Mode) => {
    const now = Math.floor(Date.now() / 1000);
    const claims: Record<string, unknown> = {
      iss: mode === "other-issuer" ? "http://127.0.0.1:1" : state.url,
      aud: mode === "other-audience" ? "someone-else" : mode === "extra-audience" ? [clientId, "someone-else"] : clientId,
      sub: person.sub,
      iat: mode === "future-iat" ? now + 3600 : now,
      exp: mode === "expired" ? now - 600 : now + 300,
      nonce,
      email: person.email,
      email_verified: person.email_verified,
      name: person.name,
    };
    if (mode === "unsigned") {
      const part = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
      return `${part({ alg: "none", typ: "JWT" })}.${part(claims)}.`;
    }
    if (mode === "hmac-with-secret") {
      return new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).sign(new TextEncoder().encode(clientSecret));
    }
    const key = mode === "unknown-key" ? stranger.privateKey : privateKey;
    return new SignJWT(claims).setProtectedHeader({ alg: "RS256", kid: "k1" }).sign(key);
  };
  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", state.url);
    const authorized = (): Person | undefined =>
      tokens.get((req.headers.authorization ?? "").replace(/^Bearer /i, ""));
    switch (`${req.method} ${url.pathname}`) {
      case "GET /.well-known/openid-configuration":
        return json(res, 200, {
          issuer: state.url,
          authorization_endpoint: `${state.url}/authorize`,
          token_endpoint: `${state.url}/token`,
          jwks_uri: `${state.url}/jwks`,
          userinfo_endpoint: `${state.url}/userinfo`,
          response_types_supported: ["code"],
          subject_types_supported: ["public"],
          id_token_signing_alg_values_supported: ["RS256"],
        });
      case "GET /jwks":
        return json(res, 200, { keys: [jwk] });
      case "GET /authorize":
      case "GET /login/oauth/authorize": {
        const p = url.searchParams;
        if (p.get("client_id") !== clientId || p.get("code_challenge_method") !== "S256") {
          return json(res, 400, { error: "invalid_request" });
        }
        const code = randomBytes(16).toString("hex");
        codes.set(code, {
          challenge: p.get("code_challenge")!,
          nonce: p.get("nonce") ?? undefined,
          redirect: p.get("redirect_uri")!,
          person: state.next.person,
        });
        const back = new URL(p.get("redirect_uri")!);
        back.searchParams.set("code", code);
        back.searchParams.set("state", p.get("state")!);
        res.writeHead(302, { location: back.href });
        return res.end();
      }
      case "POST /token":
      case "POST /login/oauth/access_token": {
        const began = performance.now();
        res.once("finish", () => (state.tokenMs += performance.now() - began));
        const form = new URLSearchParams(await read(req));
        const basic = Buffer.from((req.headers.authorization ?? "").replace(/^Basic /i, ""), "base64").toString();
        const [id, secret] = basic.split(":").map(decodeURIComponent);
        const grant = codes.get(form.get("code") ?? "");
        codes.delete(form.get("code") ?? "");
        if (id !== clientId || secret !== clientSecret) return json(res, 401, { error: "invalid_client" });
        if (!grant || grant.redirect !== form.get("redirect_uri") || s256(form.get("code_verifier") ?? "") !== grant.challenge) {
          return json(res, 400, { error: "invalid_grant" });
        }
        if (state.next.mode === "hang") return; // never answers: the server must give up
        const access = randomBytes(16).toString("hex");
        tokens.set(access, grant.person);
        if (url.pathname.startsWith("/login/")) {
          return json(res, 200, { access_token: access, token_type: "bearer", scope: "read:user,user:email" });
        }
        return json(res, 200, {
          access_token: access,
          token_type: "Bearer",
          expires_in: 300,
          id_token: await idToken(grant.person, grant.nonce, state.next.mode),
        });
      }
      case "GET /userinfo": {
        const person = authorized();
        return person ? json(res, 200, person) : json(res, 401, { error: "invalid_token" });
      }
      case "GET /api/user": {
        const person = authorized();
        if (!person) return json(res, 401, { message: "Bad credentials" });
        return json(res, 200, { id: Number(person.sub), login: `user${person.sub}`, name: person.name ?? null });
      }
      case "GET /api/user/emails": {
        const person = authorized();
        if (!person) return json(res, 401, { message: "Bad credentials" });
        return json(res, 200, [
          { email: `noreply-${person.sub}@users.example.com`, primary: false, verified: true },
          { email: person.email, primary: true, verified: person.email_verified === true },
        ]);
      }
      default:
        return json(res, 404, { error: "not_found" });
    }
  });
  const port = await listen(server);
  state.url = `http://127.0.0.1:${port}`;
  state.close = () => close(server);
  return state;
}
