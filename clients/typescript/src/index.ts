// @sovereign/client: a typed client for Sovereign.
//
// - `createSovereign({ url })` → `auth` (sessions that refresh safely), `files` (uploads and
//   signed URLs), `realtime()`, and
//   `client` for every generated operation: `import { vectorSearch } from "@sovereign/client"`,
//   then `vectorSearch({ client: sovereign.client, path: { name }, body })`.
// - Errors: `SovereignError` (the server said no) and `NetworkError` (no answer).

export { createSovereign, type Sovereign, type SovereignOptions } from "./sovereign.js";
export { Auth, type AuthEvent } from "./auth.js";
export { MfaRequiredError, SovereignError, NetworkError } from "./errors.js";
export { Files, type UploadBody, type UploadOptions, type UploadProgress } from "./files.js";
export {
  Realtime,
  RealtimeError,
  closeReason,
  type CloseInfo,
  type CloseReason,
  type Message,
  type Position,
  type RealtimeOptions,
  type RealtimeState,
  type Recovery,
  type SubscribeHandlers,
  type Subscription,
  type WebSocketFactory,
  type WebSocketLike,
} from "./realtime.js";
export {
  localStorageStorage,
  memoryStorage,
  type StorageLike,
  type StoredSession,
  type TokenStorage,
} from "./storage.js";
export * from "./generated/sdk.gen.js";
export type * from "./generated/types.gen.js";
export type { Client } from "./generated/client/index.js";
