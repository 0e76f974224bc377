// The session layer: sign-in, tokens kept fresh, sign-out. Refresh tokens are single use and the
// server ends the whole session when a spent one is replayed, so every refresh goes through one
// door: one refresh at a time per JavaScript context (single flight), and — where the storage is
// shared by several tabs — one at a time per browser (a Web Lock named after the storage key).
// Whoever waited on the lock re-reads the storage before refreshing and uses the new tokens; a
// ledger in IndexedDB (see ledger.ts) covers the moment when another tab's write is not yet
// visible in this tab's localStorage.

import type { Client } from "./generated/client/index.js";
import * as api from "./generated/sdk.gen.js";
import type {
  Accepted,
  ApiKeyInfo,
  ChangePasswordRequest,
  CreatedApiKey,
  Factors,
  FactorConfirmed,
  Identity,
  LoginRequest,
  Me,
  MfaChallenge,
  MfaVerification,
  NewApiKey,
  PasskeyInfo,
  PasskeyOptions,
  Reauthentication,
  RecoveryCodes,
  ProfilePatch,
  ProviderInfo,
  Registration,
  ResetRequest,
  SessionInfo,
  TokenPair,
  TotpEnrolment,
  User,
} from "./generated/types.gen.js";
import { MfaRequiredError, SovereignError } from "./errors.js";
import type { Ledger } from "./ledger.js";
import type { StoredSession, TokenStorage } from "./storage.js";

/** What changed about the session. */
export type AuthEvent =
  | { type: "signed_in"; session: StoredSession }
  | { type: "refreshed"; session: StoredSession }
  | {
      type: "signed_out";
      /** `sign_out`: this client signed out; `session_ended`: the server ended it (expired,
       * revoked, or signed out elsewhere); `elsewhere`: another tab removed it. */
      reason: "sign_out" | "session_ended" | "elsewhere";
    };

export interface AuthOptions {
  client: Client;
  storage: TokenStorage;
  /** Refresh this long before the access token expires (at most a quarter of its lifetime). */
  refreshMarginMs: number;
  now: () => number;
  /** Where tabs sharing the storage record their refreshes (browsers: IndexedDB). */
  ledger?: Ledger;
  /** The tenant, named in provider sign-in links (which cannot carry `X-Tenant-ID`). */
  tenant?: string;
}

const NO_LOCKS = Symbol("no locks");

export class Auth {
  readonly #client: Client;
  readonly #storage: TokenStorage;
  readonly #margin: number;
  readonly #now: () => number;
  readonly #ledger: Ledger | undefined;
  readonly #tenant: string | undefined;
  readonly #listeners = new Set<(event: AuthEvent) => void>();
  #inflight: Promise<StoredSession | null> | null = null;
  #refreshes = 0;

  constructor(options: AuthOptions) {
    this.#client = options.client;
    this.#storage = options.storage;
    this.#margin = options.refreshMarginMs;
    this.#now = options.now;
    this.#ledger = options.storage.key === undefined ? undefined : options.ledger;
    this.#tenant = options.tenant;
    this.#storage.subscribe?.((session) => {
      if (session === null) this.#emit({ type: "signed_out", reason: "elsewhere" });
      else this.#emit({ type: "refreshed", session });
    });
  }

  /** Listens to sign-in, refresh and sign-out (this tab's and, with shared storage, others'). */
  onChange(listener: (event: AuthEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The stored session, or `null` when signed out. */
  async session(): Promise<StoredSession | null> {
    return this.#storage.get();
  }

  /** How many refresh calls this client has made (for diagnostics and tests). */
  get refreshCount(): number {
    return this.#refreshes;
  }

  /** Creates an account. The answer is the same whether or not the address was taken. */
  async register(registration: Registration): Promise<Accepted> {
    const { data } = await api.authRegister({ client: this.#client, body: registration });
    return data;
  }

  /**
   * Signs in with an address and password and stores the new session. An account with a second
   * factor throws `MfaRequiredError` instead: pass its `challenge` and a code to `completeSignIn`.
   */
  async signIn(credentials: LoginRequest): Promise<StoredSession> {
    const { data } = await api.authLogin({ client: this.#client, body: credentials });
    if ("challenge" in data) throw new MfaRequiredError(data as MfaChallenge);
    return this.#signedIn(data);
  }

  /** Completes a sign-in that needed a second factor: a TOTP `code` or a `recovery_code`. */
  async completeSignIn(verification: MfaVerification): Promise<StoredSession> {
    const { data } = await api.authVerifyMfa({ client: this.#client, body: verification });
    return this.#signedIn(data);
  }

  /**
   * For a sign-in whose `MfaRequiredError` says `enrolmentRequired`: a new authenticator to add
   * (show `otpauth_uri` as a QR code), for this challenge.
   */
  async enrolWithChallenge(challenge: string): Promise<TotpEnrolment> {
    const { data } = await api.authEnrolMfa({ client: this.#client, body: { challenge } });
    return data;
  }

  /** Completes that sign-in with a first code: signed in at `aal2`; the recovery codes, once. */
  async confirmEnrolment(challenge: string, code: string): Promise<{ session: StoredSession; recoveryCodes: string[] }> {
    const { data } = await api.authConfirmMfaEnrolment({ client: this.#client, body: { challenge, code } });
    const { recovery_codes, ...pair } = data;
    return { session: await this.#signedIn(pair), recoveryCodes: recovery_codes };
  }

  /** The tenant's sign-in providers (slug, kind, name), for sign-in buttons. */
  async providers(): Promise<ProviderInfo[]> {
    const { data } = await api.authListProviders({ client: this.#client });
    return data;
  }

  /**
   * The URL that starts a sign-in with `provider`: navigate to it. The provider sends the
   * browser back to `redirectTo` (one of the tenant's redirect URLs, exactly) with `code` — give
   * it to `completeProviderSignIn` — or with `error`, a problem code.
   */
  providerSignInUrl(provider: string, redirectTo: string): string {
    const base = this.#client.getConfig().baseUrl ?? "";
    const url = new URL(`${base}/api/v1/auth/providers/${encodeURIComponent(provider)}/authorize`);
    url.searchParams.set("redirect_to", redirectTo);
    if (this.#tenant) url.searchParams.set("tenant", this.#tenant);
    return url.href;
  }

  /**
   * Completes a provider sign-in with the one-time `code` the browser was sent back with.
   * Throws `MfaRequiredError` for an account with a second factor (then `completeSignIn`).
   */
  async completeProviderSignIn(code: string): Promise<StoredSession> {
    const { data } = await api.authExchangeProviderCode({ client: this.#client, body: { code } });
    if ("challenge" in data) throw new MfaRequiredError(data as MfaChallenge);
    return this.#signedIn(data);
  }

  /**
   * Starts linking `provider` to the signed-in account (needs a recent sign-in): the URL to
   * navigate to. The browser comes back to `redirectTo` with `link_code` — give it to
   * `completeLink` from this same session — or with `error`.
   */
  async linkProvider(provider: string, redirectTo: string): Promise<string> {
    const { data } = await api.authLinkProvider({
      client: this.#client,
      path: { provider },
      body: { redirect_to: redirectTo },
    });
    return data.authorize_url;
  }

  /** Confirms a link with the `link_code` the browser came back with (this session only). */
  async completeLink(code: string): Promise<void> {
    await api.authConfirmLink({ client: this.#client, body: { code } });
  }

  /** The identities linked to the account. */
  async identities(): Promise<Identity[]> {
    const { data } = await api.authListIdentities({ client: this.#client });
    return data;
  }

  /** Unlinks an identity (needs a recent sign-in; never the last way to sign in). */
  async unlinkIdentity(id: string): Promise<void> {
    await api.authUnlinkIdentity({ client: this.#client, path: { id } });
  }

  /**
   * Registers a passkey for the signed-in account (needs a recent sign-in), in a browser: the
   * authenticator asks the user to verify, then the server checks and keeps the public key.
   */
  async addPasskey(name = ""): Promise<PasskeyInfo> {
    const { data: ceremony } = await api.authStartPasskeyRegistration({ client: this.#client, body: { name } });
    const credential = await navigator.credentials.create({
      publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(publicKeyOf(ceremony)),
    });
    const { data } = await api.authFinishPasskeyRegistration({
      client: this.#client,
      body: { ceremony: ceremony.ceremony, credential: answerOf(credential) },
    });
    return data;
  }

  /** Signs in with a passkey — no address needed: the authenticator names the account. */
  async signInWithPasskey(): Promise<StoredSession> {
    const { data: ceremony } = await api.authStartPasskeySignIn({ client: this.#client });
    const credential = await navigator.credentials.get({
      publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(publicKeyOf(ceremony)),
    });
    const { data } = await api.authFinishPasskeySignIn({
      client: this.#client,
      body: { ceremony: ceremony.ceremony, credential: answerOf(credential) },
    });
    return this.#signedIn(data);
  }

  /** Re-authenticates with one of the account's passkeys (the session becomes `aal2`). */
  async reauthenticateWithPasskey(): Promise<void> {
    const { data: ceremony } = await api.authStartPasskeyReauthentication({ client: this.#client });
    const credential = await navigator.credentials.get({
      publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(publicKeyOf(ceremony)),
    });
    await this.reauthenticate({ passkey: { ceremony: ceremony.ceremony, credential: answerOf(credential) } });
  }

  /** The account's passkeys. */
  async passkeys(): Promise<PasskeyInfo[]> {
    const { data } = await api.authListPasskeys({ client: this.#client });
    return data;
  }

  async renamePasskey(id: string, name: string): Promise<void> {
    await api.authRenamePasskey({ client: this.#client, path: { id }, body: { name } });
  }

  /** Removes a passkey (needs a recent sign-in; never the last way to sign in). */
  async removePasskey(id: string): Promise<void> {
    await api.authRemovePasskey({ client: this.#client, path: { id } });
  }

  async #signedIn(pair: TokenPair): Promise<StoredSession> {
    const session = this.#toStored(pair);
    await this.#storage.set(session);
    this.#emit({ type: "signed_in", session });
    return session;
  }

  /** Starts enrolling a TOTP authenticator: show `otpauth_uri` as a QR code, then `confirmFactor`. */
  async enrolTotp(name = ""): Promise<TotpEnrolment> {
    return (await api.authEnrolTotp({ client: this.#client, body: { name } })).data;
  }

  /** Confirms an enrolment with a first code; the first factor brings recovery codes (shown once). */
  async confirmFactor(id: string, code: string): Promise<FactorConfirmed> {
    return (await api.authConfirmFactor({ client: this.#client, path: { id }, body: { code } })).data;
  }

  /** The account's factors and how many recovery codes are left. */
  async factors(): Promise<Factors> {
    return (await api.authListFactors({ client: this.#client })).data;
  }

  /** Removes a factor (needs a recent sign-in or `aal2`: else `reauthentication_required`). */
  async removeFactor(id: string): Promise<void> {
    await api.authRemoveFactor({ client: this.#client, path: { id } });
  }

  /**
   * Proves again who the user is (the password, or a TOTP `code` for `aal2`), for operations
   * that need a recent sign-in (`reauthentication_required`): the session's access token is
   * replaced by one that says so.
   */
  async reauthenticate(proof: Reauthentication): Promise<void> {
    const session = await this.#storage.get();
    if (!session) throw new SovereignError({ status: 401, code: "not_authenticated", detail: "not signed in" });
    const { data } = await api.authReauthenticate({ client: this.#client, body: proof });
    const now = this.#now();
    const lifetime = data.expires_in * 1000;
    const next: StoredSession = {
      ...session,
      accessToken: data.access_token,
      expiresAt: now + lifetime,
      refreshAt: now + lifetime - Math.min(this.#margin, lifetime / 4),
    };
    await this.#storage.set(next);
    this.#emit({ type: "refreshed", session: next });
  }

  /** Ten new recovery codes (needs `aal2`). */
  async regenerateRecoveryCodes(): Promise<RecoveryCodes> {
    return (await api.authRegenerateRecoveryCodes({ client: this.#client })).data;
  }

  /**
   * Ends this session at the server (`all: true`: every session of the account) and forgets it
   * here. The local session is forgotten even when the server cannot be reached; that error is
   * then thrown.
   */
  async signOut(options: { all?: boolean } = {}): Promise<void> {
    const session = await this.#storage.get();
    if (!session) return;
    try {
      await api.authLogout({
        client: this.#client,
        query: options.all ? { all: true } : undefined,
        headers: { Authorization: `Bearer ${session.accessToken}` },
      });
    } catch (error) {
      // 401: the session had already ended; signing out is then done.
      if (!(error instanceof SovereignError && error.status === 401)) {
        await this.#forget(session, "sign_out");
        throw error;
      }
    }
    await this.#forget(session, "sign_out");
  }

  /** The signed-in user (or the API key's owner), with how the session was authenticated. */
  async me(): Promise<Me> {
    return (await api.usersMe({ client: this.#client })).data;
  }

  /** Changes the profile fields given. */
  async updateProfile(patch: ProfilePatch): Promise<User> {
    return (await api.usersPatchMe({ client: this.#client, body: patch })).data;
  }

  /** Changes the password; the server ends every other session of the account. */
  async changePassword(request: ChangePasswordRequest): Promise<void> {
    await api.authChangePassword({ client: this.#client, body: request });
  }

  /** Sends a reset link if the address has an account (the answer never tells). */
  async forgotPassword(email: string): Promise<Accepted> {
    return (await api.authForgotPassword({ client: this.#client, body: { email } })).data;
  }

  /** Sets a new password with the token from the reset link. */
  async resetPassword(request: ResetRequest): Promise<void> {
    await api.authResetPassword({ client: this.#client, body: request });
  }

  /** Sends the signed-in user a verification link. */
  async requestVerification(): Promise<void> {
    await api.authRequestVerification({ client: this.#client });
  }

  /** Confirms the address with the token from the verification link. */
  async confirmVerification(token: string): Promise<void> {
    await api.authConfirmVerification({ client: this.#client, body: { token } });
  }

  /** The account's open sessions; `current` marks this one. */
  async sessions(): Promise<SessionInfo[]> {
    return (await api.authSessions({ client: this.#client })).data;
  }

  /** Ends one session. Ending this client's own session signs it out here too. */
  async revokeSession(id: string): Promise<void> {
    await api.authRevokeSession({ client: this.#client, path: { id } });
    const session = await this.#storage.get();
    if (session?.sessionId === id) await this.#forget(session, "sign_out");
  }

  /** The caller's API keys. */
  async apiKeys(): Promise<ApiKeyInfo[]> {
    return (await api.apiKeysList({ client: this.#client })).data;
  }

  /** Creates an API key; its secret is in the answer only. */
  async createApiKey(key: NewApiKey): Promise<CreatedApiKey> {
    return (await api.apiKeysCreate({ client: this.#client, body: key })).data;
  }

  /** Revokes an API key. */
  async revokeApiKey(id: string): Promise<void> {
    await api.apiKeysRevoke({ client: this.#client, path: { id } });
  }

  /**
   * A valid access token, refreshed first when it expires within its refresh margin (or within
   * `minValidityMs`); `undefined` when signed out.
   */
  async accessToken(minValidityMs = 0): Promise<string | undefined> {
    const session = await this.#storage.get();
    if (!session) return undefined;
    if (!this.#due(session, minValidityMs)) return session.accessToken;
    return (await this.refresh(session, minValidityMs))?.accessToken;
  }

  /**
   * Exchanges the refresh token of `seen` (by default the stored session) for a new pair, unless
   * someone already did. Concurrent calls share one exchange. `null` when signed out.
   */
  refresh(seen?: StoredSession, minValidityMs = 0): Promise<StoredSession | null> {
    this.#inflight ??= this.#locked(() => this.#refreshOnce(seen, minValidityMs)).finally(() => {
      this.#inflight = null;
    });
    return this.#inflight;
  }

  /** After a 401 on `accessToken`: a newer token, by refreshing if nobody has yet. */
  async recover(accessToken: string): Promise<string | undefined> {
    const session = await this.#storage.get();
    if (!session) return undefined;
    if (session.accessToken !== accessToken) return session.accessToken;
    try {
      return (await this.refresh(session, Number.POSITIVE_INFINITY))?.accessToken;
    } catch {
      return undefined;
    }
  }

  async #refreshOnce(seen: StoredSession | undefined, minValidityMs: number) {
    const current = await this.#storage.get();
    if (!current) return null;
    // Another call or tab refreshed while this one waited: its tokens are the ones to use.
    if (seen && current.refreshToken !== seen.refreshToken) return current;
    if (!seen && !this.#due(current, minValidityMs)) return current;
    // Another tab exchanged this refresh token a moment ago; its write is not visible here yet.
    const key = this.#storage.key;
    const entry = this.#ledger && key !== undefined ? await this.#ledger.get(key) : undefined;
    if (entry && entry.spent === current.refreshToken) {
      await this.#storage.set(entry.session);
      this.#emit({ type: "refreshed", session: entry.session });
      return entry.session;
    }
    let pair: TokenPair;
    try {
      this.#refreshes += 1;
      pair = (
        await api.authRefresh({
          client: this.#client,
          body: { refresh_token: current.refreshToken },
        })
      ).data;
    } catch (error) {
      // 401: expired, revoked or replayed elsewhere; the session is over.
      if (error instanceof SovereignError && error.status === 401) {
        const still = await this.#storage.get();
        if (still?.refreshToken === current.refreshToken) await this.#forget(still, "session_ended");
      }
      throw error;
    }
    const next = this.#toStored(pair);
    if (this.#ledger && key !== undefined) {
      await this.#ledger.put(key, { spent: current.refreshToken, session: next });
    }
    await this.#storage.set(next);
    this.#emit({ type: "refreshed", session: next });
    return next;
  }

  #due(session: StoredSession, minValidityMs: number): boolean {
    const now = this.#now();
    const refreshAt = session.refreshAt ?? session.expiresAt - this.#margin;
    return now >= refreshAt || session.expiresAt - now <= minValidityMs;
  }

  #locked<T>(task: () => Promise<T>): Promise<T> {
    const locks = lockManager();
    const name = this.#storage.key;
    if (locks === NO_LOCKS || name === undefined) return task();
    return locks.request(`sovereign.refresh:${name}`, task);
  }

  #toStored(pair: TokenPair): StoredSession {
    const now = this.#now();
    const lifetime = pair.expires_in * 1000;
    return {
      accessToken: pair.access_token,
      refreshToken: pair.refresh_token,
      expiresAt: now + lifetime,
      refreshAt: now + lifetime - Math.min(this.#margin, lifetime / 4),
      refreshExpiresAt: now + pair.refresh_expires_in * 1000,
      sessionId: pair.session_id,
    };
  }

  async #forget(session: StoredSession, reason: "sign_out" | "session_ended") {
    const still = await this.#storage.get();
    if (still?.refreshToken === session.refreshToken) await this.#storage.remove();
    const key = this.#storage.key;
    if (this.#ledger && key !== undefined) await this.#ledger.remove(key).catch(() => {});
    this.#emit({ type: "signed_out", reason });
  }

  #emit(event: AuthEvent) {
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
}

interface Locks {
  request<T>(name: string, task: () => Promise<T>): Promise<T>;
}

function lockManager(): Locks | typeof NO_LOCKS {
  const nav = (globalThis as { navigator?: { locks?: Locks } }).navigator;
  return nav?.locks ?? NO_LOCKS;
}

/** The `publicKey` member of a ceremony's options, as WebAuthn's JSON form. */
function publicKeyOf<T>(ceremony: PasskeyOptions): T {
  return (ceremony.options as { publicKey: T }).publicKey;
}

/** An authenticator's answer in its JSON form, or an error if there was none. */
function answerOf(credential: Credential | null): Record<string, unknown> {
  if (!(credential instanceof PublicKeyCredential)) {
    throw new SovereignError({ status: 0, code: "passkey_cancelled", detail: "no passkey was given" });
  }
  return credential.toJSON() as Record<string, unknown>;
}
