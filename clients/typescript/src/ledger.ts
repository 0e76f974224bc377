// Which refresh token was last exchanged, and for what — kept in IndexedDB, whose transactions
// every tab of an origin sees at once. localStorage is not enough for this: Chromium caches it
// per renderer process, so a tab that takes the refresh lock right after another tab refreshed
// can still read the spent refresh token for a moment, and replaying it ends the session.

import type { StoredSession } from "./storage.js";

export interface LedgerEntry {
  /** The refresh token that was exchanged. */
  spent: string;
  /** What it was exchanged for. */
  session: StoredSession;
}

export interface Ledger {
  get(name: string): Promise<LedgerEntry | undefined>;
  put(name: string, entry: LedgerEntry): Promise<void>;
  remove(name: string): Promise<void>;
}

const DATABASE = "sovereign";
const STORE = "refresh";

/** The IndexedDB ledger, or `undefined` where there is no IndexedDB (Node). */
export function indexedDbLedger(): Ledger | undefined {
  const idb = (globalThis as { indexedDB?: IDBFactory }).indexedDB;
  if (!idb) return undefined;
  let database: Promise<IDBDatabase> | undefined;
  const open = () =>
    (database ??= new Promise((resolve, reject) => {
      const request = idb.open(DATABASE, 1);
      request.onupgradeneeded = () => request.result.createObjectStore(STORE);
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    }));
  /** Runs one request in a transaction and resolves when the transaction has committed. */
  const run = async <T>(mode: IDBTransactionMode, action: (store: IDBObjectStore) => IDBRequest<T>) => {
    const db = await open();
    return new Promise<T>((resolve, reject) => {
      const transaction = db.transaction(STORE, mode);
      const request = action(transaction.objectStore(STORE));
      transaction.oncomplete = () => resolve(request.result);
      transaction.onerror = () => reject(transaction.error);
      transaction.onabort = () => reject(transaction.error);
    });
  };
  return {
    get: (name) => run("readonly", (store) => store.get(name) as IDBRequest<LedgerEntry | undefined>),
    put: async (name, entry) => {
      await run("readwrite", (store) => store.put(entry, name));
    },
    remove: async (name) => {
      await run("readwrite", (store) => store.delete(name));
    },
  };
}
