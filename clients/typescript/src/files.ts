// `sovereign.files`: uploads — one request through the API for small files, direct and in parts
// for large ones (to the store's presigned URLs, or the server's signed part URLs), with
// progress, retries and resumption — and signed download URLs. Every other storage operation
// is a generated function: `storageListObjects`, `storageCopyObject`, `storageMoveObject`, …

import type { Client } from "./generated/client/index.js";
import {
  storageAbortUpload,
  storageCompleteUpload,
  storageCreateUpload,
  storageGetUpload,
  storagePutObject,
  storageSignUrl,
} from "./generated/sdk.gen.js";
import type { ObjectInfo, Part, Upload } from "./generated/types.gen.js";
import { NetworkError, SovereignError } from "./errors.js";

/** What can be uploaded. */
export type UploadBody = Blob | ArrayBuffer | Uint8Array;

export interface UploadProgress {
  /** Bytes the server has (parts count once they arrived whole). */
  sent: number;
  total: number;
}

export interface UploadOptions {
  /** Default: the `Blob`'s type, else `application/octet-stream`. */
  contentType?: string;
  /** User metadata (direct uploads). */
  metadata?: Record<string, unknown>;
  /** Refuse if the key exists. */
  createOnly?: boolean;
  onProgress?: (progress: UploadProgress) => void;
  /** Called once a direct upload is declared: keep its `id` to `resume` after a reload. */
  onUpload?: (upload: Upload) => void;
  signal?: AbortSignal;
  /** Upload directly, in parts, from this size (default 8 MiB); below it, one request. */
  directFrom?: number;
  /** Bytes per part (default: the server's, 16 MiB). */
  partSize?: number;
  /** Parts sent at once (default 4). */
  concurrency?: number;
  /** Attempts per part before giving up (default 3). */
  attempts?: number;
}

const MIB = 1 << 20;

function toBlob(body: UploadBody, contentType?: string): Blob {
  if (body instanceof Blob) return body;
  const bytes = body instanceof Uint8Array ? body : new Uint8Array(body);
  return new Blob([bytes as Uint8Array<ArrayBuffer>], contentType ? { type: contentType } : {});
}

export class Files {
  constructor(
    private readonly client: Client,
    /** A plain `fetch`: part URLs carry their own signature, never the session's token. */
    private readonly fetchFn: typeof fetch,
  ) {}

  /** Uploads `body` to `key` of `bucket`, through the API or directly by its size. */
  async upload(bucket: string, key: string, body: UploadBody, options: UploadOptions = {}): Promise<ObjectInfo> {
    const blob = toBlob(body, options.contentType);
    if (blob.size >= (options.directFrom ?? 8 * MIB)) return this.uploadDirect(bucket, key, blob, options);
    const total = blob.size;
    options.onProgress?.({ sent: 0, total });
    const headers: Record<string, string> = { "Content-Type": contentTypeOf(blob, options) };
    if (options.createOnly) headers["If-None-Match"] = "*";
    const { data } = await storagePutObject({
      client: this.client,
      path: { bucket, key },
      body: blob,
      headers,
      signal: options.signal,
    });
    options.onProgress?.({ sent: total, total });
    return data;
  }

  /** Declares a direct upload, sends its parts, and completes it. */
  async uploadDirect(bucket: string, key: string, body: UploadBody, options: UploadOptions = {}): Promise<ObjectInfo> {
    const blob = toBlob(body, options.contentType);
    const { data: upload } = await storageCreateUpload({
      client: this.client,
      path: { bucket },
      body: {
        key,
        size: blob.size,
        content_type: contentTypeOf(blob, options),
        metadata: options.metadata ?? {},
        part_size: options.partSize ?? null,
        create_only: options.createOnly ?? false,
      },
      signal: options.signal,
    });
    options.onUpload?.(upload);
    return this.finish(upload, blob, options);
  }

  /** Resumes upload `id` with the same bytes: only the parts that did not arrive are sent. */
  async resume(id: string, body: UploadBody, options: UploadOptions = {}): Promise<ObjectInfo> {
    const blob = toBlob(body, options.contentType);
    const { data: upload } = await storageGetUpload({ client: this.client, path: { id }, signal: options.signal });
    if (upload.size !== blob.size) {
      throw new Error(`resume: upload ${id} is ${upload.size} bytes, not ${blob.size}: not the same file`);
    }
    return this.finish(upload, blob, options);
  }

  /** Abandons a direct upload (its parts are removed). */
  async abort(id: string): Promise<void> {
    await storageAbortUpload({ client: this.client, path: { id } });
  }

  /** A URL that reads the object without credentials until it expires (default 300 s). */
  async signedUrl(bucket: string, key: string, expiresIn?: number): Promise<string> {
    const { data } = await storageSignUrl({
      client: this.client,
      path: { bucket },
      body: { key, expires_in: expiresIn ?? null },
    });
    return data.url;
  }

  private async finish(upload: Upload, blob: Blob, options: UploadOptions): Promise<ObjectInfo> {
    const total = upload.size;
    let sent = upload.parts.filter((p) => p.received).reduce((n, p) => n + p.size, 0);
    options.onProgress?.({ sent, total });
    const queue = upload.parts.filter((p) => !p.received);
    const worker = async () => {
      for (let part = queue.shift(); part; part = queue.shift()) {
        const start = (part.number - 1) * upload.part_size;
        await this.sendPart(part, blob.slice(start, start + part.size), options);
        sent += part.size;
        options.onProgress?.({ sent, total });
      }
    };
    const workers = Math.max(1, Math.min(options.concurrency ?? 4, queue.length));
    await Promise.all(Array.from({ length: workers }, worker));
    const { data } = await storageCompleteUpload({ client: this.client, path: { id: upload.id }, signal: options.signal });
    return data;
  }

  /** PUTs one part to its URL; network failures and 5xx answers are retried. */
  private async sendPart(part: Part, bytes: Blob, options: UploadOptions): Promise<void> {
    if (!part.url) throw new Error(`part ${part.number} has no URL`);
    const attempts = Math.max(1, options.attempts ?? 3);
    for (let attempt = 1; ; attempt++) {
      let response: Response;
      try {
        response = await this.fetchFn(part.url, { method: "PUT", body: bytes, signal: options.signal });
      } catch (error) {
        if (options.signal?.aborted) throw error;
        if (attempt < attempts) continue;
        throw new NetworkError(`part ${part.number}: no answer`, { cause: error });
      }
      if (response.ok) return;
      if (response.status >= 500 && attempt < attempts) continue;
      throw await partError(response);
    }
  }
}

function contentTypeOf(blob: Blob, options: UploadOptions): string {
  return options.contentType ?? (blob.type || "application/octet-stream");
}

/** The server's problem, or (from an S3 store, which answers in XML) one made of the status. */
async function partError(response: Response): Promise<SovereignError> {
  return SovereignError.fromResponse(response, await response.json().catch(() => null));
}
