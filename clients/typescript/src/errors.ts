// Every failure the client reports is one of two classes: `SovereignError` (the server answered
// with a non-2xx status) or `NetworkError` (no answer: offline, refused, DNS, CORS, aborted).

import type { Problem, ProblemField } from "./generated/types.gen.js";

/** The server answered with an error. Fields come from its RFC 9457 problem body. */
export class SovereignError extends Error {
  override readonly name = "SovereignError";
  /** The HTTP status. */
  readonly status: number;
  /** Stable machine-readable code (`invalid_credentials`, `rate_limited`, …); see docs/errors.md. */
  readonly code: string;
  /** Explanation specific to this occurrence. */
  readonly detail: string;
  /** Per-field problems of a validation error (`[]` otherwise). */
  readonly fields: ProblemField[];
  /** The request id, as in the server's logs: quote it when reporting a problem. */
  readonly requestId: string | undefined;
  /** Seconds to wait before retrying (from `Retry-After`), when the server said so. */
  readonly retryAfter: number | undefined;
  /** How to fix or avoid the problem, when the server has a suggestion. */
  readonly suggestion: string | undefined;

  constructor(init: {
    status: number;
    code: string;
    detail: string;
    fields?: ProblemField[];
    requestId?: string;
    retryAfter?: number;
    suggestion?: string;
  }) {
    super(`${init.status} ${init.code}: ${init.detail}`);
    this.status = init.status;
    this.code = init.code;
    this.detail = init.detail;
    this.fields = init.fields ?? [];
    this.requestId = init.requestId;
    this.retryAfter = init.retryAfter;
    this.suggestion = init.suggestion;
  }

  /** The error for a response and its body (parsed JSON, or text when it was not JSON). */
  static fromResponse(response: Response, body: unknown): SovereignError {
    const headers = response.headers;
    const retryAfter = parseRetryAfter(headers.get("retry-after"));
    const headerRequestId = headers.get("x-request-id") ?? undefined;
    if (isProblem(body)) {
      return new SovereignError({
        status: response.status,
        code: body.code,
        detail: body.detail,
        fields: body.errors,
        requestId: body.request_id || headerRequestId,
        retryAfter,
        suggestion: body.suggestion ?? undefined,
      });
    }
    // Not one of our problem bodies: a proxy or load balancer answered.
    return new SovereignError({
      status: response.status,
      code: "unexpected_response",
      detail: `HTTP ${response.status} ${response.statusText}`.trim(),
      requestId: headerRequestId,
      retryAfter,
    });
  }
}

/** A sign-in needs a second factor: complete it with `auth.completeSignIn({ challenge, code })`. */
export class MfaRequiredError extends Error {
  override readonly name = "MfaRequiredError";
  /** Single use; valid for `expiresIn` seconds. */
  readonly challenge: string;
  readonly expiresIn: number;
  /** `totp`, `recovery_code`. */
  readonly methods: string[];
  /**
   * The account has no second factor but its tenant requires one: enrol an authenticator with
   * `enrolWithChallenge`, then `confirmEnrolment` (instead of `completeSignIn`).
   */
  readonly enrolmentRequired: boolean;
  constructor(challenge: { status?: string; challenge: string; expires_in: number; methods: string[] }) {
    super("a second factor is required to complete the sign-in");
    this.challenge = challenge.challenge;
    this.expiresIn = challenge.expires_in;
    this.methods = challenge.methods;
    this.enrolmentRequired = challenge.status === "mfa_enrolment_required";
  }
}

/** The request got no answer: the network, DNS, CORS or an abort. Nothing reached the app. */
export class NetworkError extends Error {
  override readonly name = "NetworkError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

function isProblem(body: unknown): body is Problem {
  if (typeof body !== "object" || body === null) return false;
  const b = body as Record<string, unknown>;
  return typeof b.code === "string" && typeof b.detail === "string" && typeof b.status === "number";
}

/** `Retry-After` as seconds: delta-seconds or an HTTP date. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (value === null || value.trim() === "") return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, Math.ceil((date - now) / 1000));
}
