/**
 * One receiver of status hooks: its URL, its secrets and how long a POST may take. It signs and POSTs one
 * delivery and classifies the answer; what to do next (retry, give up) is its caller's business.
 */
import { InvalidInputError, type Clock } from '@horae/core';
import {
  STATUS_HOOK_DELIVERY_ATTEMPT_HEADER,
  STATUS_HOOK_ID_HEADER,
  STATUS_HOOK_SIGNATURE_HEADER,
  STATUS_HOOK_TIMESTAMP_HEADER,
  decodeStatusHookSecret,
  signStatusHook,
  type StatusHookSecret,
} from './hook-signature.js';
import { StatusHookDeliveryError, StatusHookUrlError } from './status-hook-error.js';

/** Where and how to POST: the part of the status hook options that names the receiver. */
export interface HookEndpointOptions {
  /** Where to POST: an http: or https: URL, without a username or password (put those in `headers`). */
  url: string | URL;
  /**
   * The shared secret (`whsec_` + base64, see `generateStatusHookSecret`), or several while rotating it: each
   * delivery then carries one `v1,` signature per secret, so a receiver holding either one verifies it.
   */
  secret: StatusHookSecret | readonly StatusHookSecret[];
  /**
   * How long one POST may take, headers and body, before it is aborted and counts as a retryable failure.
   *
   * @remarks Measured on real time (`AbortSignal.timeout`), not on a clock: it bounds a real socket.
   * @defaultValue 10000
   */
  timeoutMs?: number;
  /**
   * Extra request headers (an `authorization` for a gateway, say). The signature, id, timestamp and content-type
   * headers always win over these.
   *
   * @defaultValue none
   */
  headers?: Readonly<Record<string, string>>;
}

/** What one POST came to. */
export type HookPostResult = { ok: true; status: number } | { ok: false; error: StatusHookDeliveryError };

/** One delivery to POST: its id (the `webhook-id`), its JSON body, and which attempt this is. */
export interface HookPostRequest {
  /** The delivery id, the same on every attempt. */
  id: string;
  /** The exact body. */
  body: string;
  /** 1 for the first POST. */
  attempt: number;
}

const USER_AGENT = 'horae-status-hooks/0.2';

/**
 * A receiver of status hooks.
 *
 * Rules:
 * - Each POST is signed afresh (Standard Webhooks: `v1,<base64>` of `${id}.${timestamp}.${body}` per secret) with
 *   the timestamp of the clock at that moment, so a late retry still falls inside the receiver's replay window.
 * - 2xx is delivered. Network errors, timeouts, 408, 425, 429 and 5xx are retryable; any other status (3xx
 *   included: redirects are not followed) is not.
 * - `post` never rejects.
 */
export class HookEndpoint {
  readonly #url: URL;
  readonly #keys: readonly Buffer[];
  readonly #timeoutMs: number;
  readonly #headers: Readonly<Record<string, string>>;
  readonly #clock: Clock;

  /**
   * @param options - the receiver
   * @param clock - the clock of the signing timestamps
   * @throws StatusHookUrlError when the URL is not an http(s) URL or carries credentials
   * @throws InvalidInputError when a secret is not `whsec_` + base64 of 24 to 64 bytes, or timeoutMs is not a positive integer
   */
  constructor(options: HookEndpointOptions, clock: Clock) {
    this.#url = parseHookUrl(options.url);
    const secrets = typeof options.secret === 'string' ? [options.secret] : options.secret;
    if (!Array.isArray(secrets) || secrets.length === 0) throw new InvalidInputError('status hooks: secret must be a whsec_ secret or a non-empty array of them');
    this.#keys = secrets.map(decodeStatusHookSecret);
    this.#timeoutMs = positiveInteger(options.timeoutMs, 10_000, 'timeoutMs');
    this.#headers = { ...options.headers };
    this.#clock = clock;
  }

  /** The URL without query or credentials, for messages. */
  get where(): string {
    return `${this.#url.origin}${this.#url.pathname}`;
  }

  /** How long one POST may take. */
  get timeoutMs(): number {
    return this.#timeoutMs;
  }

  /**
   * Signs and POSTs one delivery.
   *
   * @param request - the delivery
   * @param signal - aborts the POST (a close that gave up waiting); the result is then a non-retryable failure
   * @returns the outcome; never rejects
   */
  async post(request: HookPostRequest, signal?: AbortSignal): Promise<HookPostResult> {
    const timestamp = String(Math.floor(this.#clock.now() / 1000));
    const timeout = AbortSignal.timeout(this.#timeoutMs);
    const where = this.where;
    try {
      const response = await fetch(this.#url, {
        method: 'POST',
        headers: {
          ...this.#headers,
          'content-type': 'application/json',
          'user-agent': USER_AGENT,
          [STATUS_HOOK_ID_HEADER]: request.id,
          [STATUS_HOOK_TIMESTAMP_HEADER]: timestamp,
          [STATUS_HOOK_SIGNATURE_HEADER]: signStatusHook(this.#keys, request.id, timestamp, request.body),
          [STATUS_HOOK_DELIVERY_ATTEMPT_HEADER]: String(request.attempt),
        },
        body: request.body,
        signal: signal === undefined ? timeout : AbortSignal.any([timeout, signal]),
        redirect: 'manual',
      });
      // The answer's body is not used; discard it so that the connection is freed.
      await response.body?.cancel().catch(() => undefined);
      const status = response.status;
      if (status >= 200 && status < 300) return { ok: true, status };
      const retryable = status >= 500 || status === 408 || status === 425 || status === 429;
      return {
        ok: false,
        error: new StatusHookDeliveryError(`the status hook at ${where} answered ${status} ${response.statusText}`.trimEnd(), { status, retryable }),
      };
    } catch (cause) {
      if (timeout.aborted) {
        return { ok: false, error: new StatusHookDeliveryError(`the status hook at ${where} did not answer within ${this.#timeoutMs} ms`, { retryable: true, cause }) };
      }
      if (signal?.aborted === true) {
        return { ok: false, error: new StatusHookDeliveryError('the status hook sender was closed', { retryable: false, cause }) };
      }
      const reason = cause instanceof Error ? (cause.cause instanceof Error ? cause.cause.message : cause.message) : String(cause);
      return { ok: false, error: new StatusHookDeliveryError(`could not reach the status hook at ${where}: ${reason}`, { retryable: true, cause }) };
    }
  }
}

/**
 * Parses and checks a hook URL.
 *
 * @param url - the configured URL
 * @returns the parsed URL
 * @throws StatusHookUrlError when it is not a URL, not http(s), or carries a username or password (never quoted)
 */
export function parseHookUrl(url: string | URL): URL {
  let parsed: URL;
  try {
    parsed = new URL(String(url));
  } catch (cause) {
    // Not quoted: a malformed URL may still hold a password.
    throw new StatusHookUrlError('status hooks: url is not a valid URL', 'invalid', { cause });
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new StatusHookUrlError(`status hooks: url must be http: or https:, got ${parsed.protocol}`, 'protocol');
  }
  if (parsed.username !== '' || parsed.password !== '') {
    throw new StatusHookUrlError(
      `status hooks: the url for ${parsed.origin}${parsed.pathname} carries credentials (user:password@); they are not sent by fetch and would leak into error messages: pass them as a header instead, e.g. headers: { authorization: 'Basic …' }`,
      'credentials',
    );
  }
  return parsed;
}

/**
 * Checks an optional positive integer option.
 *
 * @param value - the option
 * @param fallback - its default
 * @param what - its name, for the message
 * @returns the value or the default
 * @throws InvalidInputError when it is given and not an integer ≥ 1
 */
export function positiveInteger(value: number | undefined, fallback: number, what: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new InvalidInputError(`status hooks: ${what} must be a positive integer, got ${String(value)}`);
  }
  return value;
}
