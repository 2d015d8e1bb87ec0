/**
 * The signature of status hook requests, in the Standard Webhooks format (https://www.standardwebhooks.com):
 * how the sender signs a delivery and how a receiver checks it. Kept apart from the sender so that a receiver
 * can import only this; a receiver may as well use any Standard Webhooks library (`standardwebhooks` on npm).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { InvalidInputError } from '@horae/core';

/** Header carrying the delivery id: the same on every attempt of one change, and part of the signed content. */
export const STATUS_HOOK_ID_HEADER = 'webhook-id';
/** Header carrying the signing time in whole seconds since the epoch; part of the signed content. */
export const STATUS_HOOK_TIMESTAMP_HEADER = 'webhook-timestamp';
/** Header carrying space-separated `v1,<base64 HMAC-SHA256>` signatures, one per active secret. */
export const STATUS_HOOK_SIGNATURE_HEADER = 'webhook-signature';
/** Header carrying the delivery attempt (1 for the first POST, 2 for the first retry...). Informational: not signed. */
export const STATUS_HOOK_DELIVERY_ATTEMPT_HEADER = 'x-horae-delivery-attempt';

/** How far a signature's timestamp may be from the receiver's clock, either way, before it is refused (the Standard Webhooks default). */
export const DEFAULT_STATUS_HOOK_TOLERANCE_MS = 5 * 60_000;

/** The prefix of a Standard Webhooks secret; the rest is the key in base64. */
export const STATUS_HOOK_SECRET_PREFIX = 'whsec_';
/** The shortest key a secret may hold, in bytes (the Standard Webhooks recommendation). */
export const MIN_STATUS_HOOK_SECRET_BYTES = 24;
/** The longest key a secret may hold, in bytes (the Standard Webhooks recommendation). */
export const MAX_STATUS_HOOK_SECRET_BYTES = 64;

/** A shared secret: `whsec_` followed by the base64 of 24 to 64 random bytes (see {@link generateStatusHookSecret}). */
export type StatusHookSecret = string;

/**
 * Request headers as a receiver has them: a fetch `Headers`, Node's `IncomingHttpHeaders`, or a plain
 * record. Names are matched case-insensitively.
 */
export type StatusHookHeaders = Headers | Readonly<Record<string, string | readonly string[] | number | undefined>>;

/** Options of {@link verifyStatusHookSignature}. */
export interface VerifyStatusHookOptions {
  /**
   * How far the timestamp may be from `now`, either way. Older requests are refused as replays.
   *
   * @defaultValue {@link DEFAULT_STATUS_HOOK_TOLERANCE_MS} (5 minutes)
   */
  toleranceMs?: number;
  /**
   * The receiver's current time in epoch milliseconds.
   *
   * @defaultValue `Date.now()`
   */
  now?: number;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Decodes a secret into its HMAC key.
 *
 * @param secret - `whsec_` + base64 of 24 to 64 bytes
 * @returns the key bytes
 * @throws InvalidInputError when the prefix is missing, the rest is not base64 or the key length is out of range;
 * the message never quotes the secret
 */
export function decodeStatusHookSecret(secret: StatusHookSecret): Buffer {
  if (typeof secret !== 'string' || !secret.startsWith(STATUS_HOOK_SECRET_PREFIX)) {
    throw new InvalidInputError(
      `status hooks: a secret must be a string "${STATUS_HOOK_SECRET_PREFIX}" + base64 (the Standard Webhooks format); generateStatusHookSecret() makes one`,
    );
  }
  const encoded = secret.slice(STATUS_HOOK_SECRET_PREFIX.length);
  if (!BASE64.test(encoded)) throw new InvalidInputError(`status hooks: the part of a secret after "${STATUS_HOOK_SECRET_PREFIX}" must be base64`);
  const key = Buffer.from(encoded, 'base64');
  if (key.length < MIN_STATUS_HOOK_SECRET_BYTES || key.length > MAX_STATUS_HOOK_SECRET_BYTES) {
    throw new InvalidInputError(
      `status hooks: a secret must hold ${MIN_STATUS_HOOK_SECRET_BYTES} to ${MAX_STATUS_HOOK_SECRET_BYTES} bytes, this one holds ${key.length}`,
    );
  }
  return key;
}

/**
 * Makes a new random secret in the Standard Webhooks format.
 *
 * @returns `whsec_` + the base64 of 32 random bytes
 */
export function generateStatusHookSecret(): StatusHookSecret {
  return STATUS_HOOK_SECRET_PREFIX + randomBytes(32).toString('base64');
}

/**
 * Signs one delivery under every given key.
 *
 * @param keys - the decoded secrets (see {@link decodeStatusHookSecret}); several while rotating
 * @param id - the delivery id, as sent in {@link STATUS_HOOK_ID_HEADER}
 * @param timestamp - seconds since the epoch, as sent in {@link STATUS_HOOK_TIMESTAMP_HEADER}
 * @param body - the exact body bytes that are sent (a string is taken as UTF-8)
 * @returns the value of {@link STATUS_HOOK_SIGNATURE_HEADER}: `v1,<base64>` per key, space-separated
 *
 * @remarks The signed content is `${id}.${timestamp}.${body}`: the id and the timestamp are both inside the MAC,
 * so a captured request cannot be replayed under a fresh id (to pass a receiver's dedupe) or a fresh timestamp
 * (to pass its replay window).
 */
export function signStatusHook(keys: readonly Uint8Array[], id: string, timestamp: number | string, body: string | Uint8Array): string {
  return keys.map((key) => `v1,${hmac(key, id, String(timestamp), body)}`).join(' ');
}

function hmac(key: Uint8Array, id: string, timestamp: string, body: string | Uint8Array): string {
  const mac = createHmac('sha256', key);
  mac.update(`${id}.${timestamp}.`, 'utf8');
  mac.update(body);
  return mac.digest('base64');
}

/**
 * Checks a status hook request as the Standard Webhooks libraries do, for receivers in Node that would rather not
 * add one.
 *
 * Rules: it returns true only when the id, timestamp and signature headers are each present once, the timestamp is
 * a whole number of seconds within `toleranceMs` of `now`, and one of the `v1,` signatures equals the HMAC-SHA256
 * of `${id}.${timestamp}.${body}` under one of the given secrets. Anything else (a missing, repeated or malformed
 * header, a changed body byte, id or timestamp, a stale timestamp) gives false; it never throws for a bad request.
 *
 * @param secret - the shared secret, or several while rotating it (any one may match)
 * @param body - the raw request body exactly as received (not re-serialized JSON)
 * @param headers - the request headers
 * @param options - the replay window and the current time
 * @returns true when the request is authentic and fresh
 * @throws InvalidInputError when a secret is not in the `whsec_` format (a configuration error, not a bad request)
 *
 * @example
 * ```ts
 * import { createServer } from 'node:http';
 * import { verifyStatusHookSignature } from '@horae/storage';
 *
 * createServer((req, res) => {
 *   const chunks: Buffer[] = [];
 *   req.on('data', (c: Buffer) => chunks.push(c));
 *   req.on('end', () => {
 *     const body = Buffer.concat(chunks);
 *     if (!verifyStatusHookSignature(process.env.HOOK_SECRET ?? '', body, req.headers)) {
 *       res.writeHead(401).end();
 *       return;
 *     }
 *     const change = JSON.parse(body.toString('utf8')) as { taskId: string; to: string };
 *     console.log(change.taskId, change.to);
 *     res.writeHead(204).end();
 *   });
 * }).listen(8080);
 * ```
 */
export function verifyStatusHookSignature(
  secret: StatusHookSecret | readonly StatusHookSecret[],
  body: string | Uint8Array,
  headers: StatusHookHeaders,
  options: VerifyStatusHookOptions = {},
): boolean {
  const keys = (typeof secret === 'string' ? [secret] : secret).map(decodeStatusHookSecret);
  const id = headerValue(headers, STATUS_HOOK_ID_HEADER);
  const timestamp = headerValue(headers, STATUS_HOOK_TIMESTAMP_HEADER);
  const signatures = headerValue(headers, STATUS_HOOK_SIGNATURE_HEADER);
  if (id === undefined || timestamp === undefined || signatures === undefined) return false;
  if (!/^\d{1,15}$/.test(timestamp)) return false;
  const toleranceMs = options.toleranceMs ?? DEFAULT_STATUS_HOOK_TOLERANCE_MS;
  const now = options.now ?? Date.now();
  if (Math.abs(now - Number(timestamp) * 1000) > toleranceMs) return false;
  const given = signatures
    .split(' ')
    .filter((entry) => entry.startsWith('v1,'))
    .map((entry) => Buffer.from(entry.slice(3), 'utf8'));
  let ok = false;
  for (const key of keys) {
    const expected = Buffer.from(hmac(key, id, timestamp, body), 'utf8');
    // Constant-time comparisons, and every pair is tried, so timing reveals neither the MAC nor which secret matched.
    for (const candidate of given) if (candidate.length === expected.length && timingSafeEqual(candidate, expected)) ok = true;
  }
  return ok;
}

/** One header's value, or undefined when it is missing or repeated (a repeated signature header is ambiguous). */
function headerValue(headers: StatusHookHeaders, name: string): string | undefined {
  if (headers instanceof Headers) return headers.get(name) ?? undefined;
  let found: string | readonly string[] | number | undefined;
  let matches = 0;
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() === name && value !== undefined) {
      found = value;
      matches += 1;
    }
  }
  if (matches !== 1 || found === undefined) return undefined;
  if (typeof found === 'number') return String(found);
  if (typeof found === 'string') return found;
  return found.length === 1 ? found[0] : undefined;
}
