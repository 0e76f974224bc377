// Where the session's tokens live. Memory by default (gone on reload: nothing to steal from
// disk); `localStorageStorage` for browser apps that keep users signed in across reloads and
// tabs. Never cookies: the client sends tokens only in the `Authorization` header.

/** A signed-in session's tokens. Times are milliseconds since the epoch. */
export interface StoredSession {
  accessToken: string;
  refreshToken: string;
  /** When the access token expires. */
  expiresAt: number;
  /** When to refresh it: ahead of expiry, by the client's refresh margin. */
  refreshAt?: number;
  /** When the session (its refresh token) expires. */
  refreshExpiresAt: number;
  sessionId: string;
}

export interface TokenStorage {
  get(): StoredSession | null | Promise<StoredSession | null>;
  set(session: StoredSession): void | Promise<void>;
  remove(): void | Promise<void>;
  /**
   * Optional: calls `listener` when another tab or process changed the stored session.
   * Returns a function that stops listening.
   */
  subscribe?(listener: (session: StoredSession | null) => void): () => void;
  /** A name shared by every holder of the same stored session (tabs of one origin): the lock name. */
  readonly key?: string;
}

/** Tokens in this JavaScript context only. */
export function memoryStorage(): TokenStorage {
  let current: StoredSession | null = null;
  return {
    get: () => current,
    set: (session) => {
      current = session;
    },
    remove: () => {
      current = null;
    },
  };
}

/** The minimal `Storage` interface `localStorageStorage` needs. */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/**
 * Tokens in `localStorage` (or another `Storage`), shared by the tabs of one origin. Other tabs'
 * changes arrive through the `storage` event.
 */
export function localStorageStorage(
  key = "sovereign.session",
  storage: StorageLike = globalThis.localStorage,
): TokenStorage {
  if (!storage) throw new Error("localStorageStorage: no localStorage in this environment");
  const parse = (raw: string | null): StoredSession | null => {
    if (raw === null) return null;
    try {
      const value = JSON.parse(raw) as Partial<StoredSession>;
      if (
        typeof value.accessToken === "string" &&
        typeof value.refreshToken === "string" &&
        typeof value.expiresAt === "number" &&
        typeof value.refreshExpiresAt === "number" &&
        typeof value.sessionId === "string"
      ) {
        return value as StoredSession;
      }
    } catch {
      // A damaged entry is no session.
    }
    return null;
  };
  return {
    key,
    get: () => parse(storage.getItem(key)),
    set: (session) => storage.setItem(key, JSON.stringify(session)),
    remove: () => storage.removeItem(key),
    subscribe: (listener) => {
      const target = globalThis as unknown as {
        addEventListener?: (type: string, fn: (event: StorageEvent) => void) => void;
        removeEventListener?: (type: string, fn: (event: StorageEvent) => void) => void;
      };
      if (!target.addEventListener || !target.removeEventListener) return () => {};
      const onStorage = (event: StorageEvent) => {
        if (event.key === key || event.key === null) listener(parse(event.newValue));
      };
      target.addEventListener("storage", onStorage);
      return () => target.removeEventListener?.("storage", onStorage);
    },
  };
}
