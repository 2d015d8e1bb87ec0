/**
 * The HMAC-SHA256 signature of status hook requests: how the sender signs a body and how a receiver
 * checks it. Kept apart from the sender so that a receiver can import only this.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

/** Header carrying `sha256=<hex>`: the HMAC-SHA256 of `<timestamp>.<body bytes>` under the shared secret. */
export const STATUS_HOOK_SIGNATURE_HEADER = 'x-horae-signature';
/** Header carrying the signing time in whole seconds since the epoch; it is part of the signed material. */
export const STATUS_HOOK_TIMESTAMP_HEADER = 'x-horae-timestamp';
/** Header carrying a uuid that is the same on every retry of one delivery: receivers dedupe on it. */
export const STATUS_HOOK_DELIVERY_HEADER = 'x-horae-delivery';
/** Header carrying the delivery attempt (1 for the first POST, 2 for the first retry...). Not signed. */
export const STATUS_HOOK_DELIVERY_ATTEMPT_HEADER = 'x-horae-delivery-attempt';

/** How far a signature's timestamp may be from the receiver's clock, either way, before it is refused. */
export const DEFAULT_STATUS_HOOK_TOLERANCE_MS = 5 * 60_000;

/** A shared secret: a string (taken as UTF-8) or raw bytes. */
export type StatusHookSecret = string | Uint8Array;

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

/**
 * Signs a status hook body.
 *
 * @param secret - the shared secret
 * @param body - the exact body bytes that are sent (a string is taken as UTF-8)
 * @param timestamp - seconds since the epoch, as sent in {@link STATUS_HOOK_TIMESTAMP_HEADER}
 * @returns the value of {@link STATUS_HOOK_SIGNATURE_HEADER}: `sha256=` and 64 lowercase hex digits
 *
 * @remarks The signed material is the timestamp's decimal digits, a `.`, then the body bytes. Binding the
 * timestamp into the MAC is what stops an attacker from replaying an old request with a fresh timestamp.
 */
export function signStatusHookBody(secret: StatusHookSecret, body: string | Uint8Array, timestamp: number | string): string {
  const mac = createHmac('sha256', secret);
  mac.update(`${String(timestamp)}.`, 'utf8');
  mac.update(body);
  return `sha256=${mac.digest('hex')}`;
}

/**
 * Checks a status hook request, as a receiver does before trusting it.
 *
 * Rules: it returns true only when the timestamp header is a whole number of seconds within
 * `toleranceMs` of `now`, and the signature header equals `sha256=` + HMAC-SHA256(secret,
 * `<timestamp>.<body>`) for one of the given secrets. Any missing, repeated or malformed header, a
 * changed body byte or a stale timestamp gives false; it never throws for a bad request.
 *
 * @param secret - the shared secret, or several while rotating it (any one may match)
 * @param body - the raw request body exactly as received (not re-serialized JSON)
 * @param headers - the request headers
 * @param options - the replay window and the current time
 * @returns true when the request is authentic and fresh
 * @throws never for request data; a `TypeError` from node:crypto only when `secret` is not a string or bytes
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
  const timestamp = headerValue(headers, STATUS_HOOK_TIMESTAMP_HEADER);
  const signature = headerValue(headers, STATUS_HOOK_SIGNATURE_HEADER);
  if (timestamp === undefined || signature === undefined) return false;
  if (!/^\d{1,15}$/.test(timestamp)) return false;
  const toleranceMs = options.toleranceMs ?? DEFAULT_STATUS_HOOK_TOLERANCE_MS;
  const now = options.now ?? Date.now();
  if (Math.abs(now - Number(timestamp) * 1000) > toleranceMs) return false;
  const given = Buffer.from(signature.trim(), 'utf8');
  const secrets: readonly StatusHookSecret[] = typeof secret === 'string' || secret instanceof Uint8Array ? [secret] : secret;
  let ok = false;
  for (const candidate of secrets) {
    const expected = Buffer.from(signStatusHookBody(candidate, body, timestamp), 'utf8');
    // Constant-time comparison, and every secret is tried, so timing reveals neither the MAC nor which secret matched.
    if (expected.length === given.length && timingSafeEqual(expected, given)) ok = true;
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
