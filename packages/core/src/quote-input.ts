/**
 * How error messages show the input they refuse: a short prefix, never the whole value, so that a 1 MB workId
 * makes a message (and a log line) of a hundred characters, not of a megabyte.
 */

/** How many characters of a string an error message quotes; the rest is counted, not repeated. */
export const MAX_QUOTED_LENGTH = 64;

/**
 * A value as an error message shows it.
 *
 * Rules: a string is quoted in double quotes and cut to its first `max` characters (UTF-16 code units, never
 * splitting a surrogate pair), followed by `… (N more characters)` when cut; a number, boolean, bigint, symbol,
 * null or undefined is shown as `String()` shows it; a Date as its ISO time; an array as its length; any other
 * object by its kind. The cost is bounded by `max`, whatever the size of `value` (no `String()` of a large array).
 *
 * @param value - the input to show
 * @param max - the most characters of a string to quote
 * @returns a short description of `value`
 *
 * @example
 * ```ts
 * quoteInput('x'.repeat(1_000_000)); // '"xxxx…xxxx"… (999936 more characters)'
 * quoteInput(42);                    // '42'
 * ```
 */
export function quoteInput(value: unknown, max: number = MAX_QUOTED_LENGTH): string {
  if (typeof value === 'string') {
    if (value.length <= max) return `"${value}"`;
    // Do not end the prefix on the first half of a surrogate pair.
    const end = isHighSurrogate(value.charCodeAt(max - 1)) ? max - 1 : max;
    return `"${value.slice(0, end)}"… (${value.length - end} more characters)`;
  }
  if (value === null || value === undefined || typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') {
    return String(value);
  }
  if (typeof value === 'symbol') return 'a symbol';
  if (typeof value === 'function') return 'a function';
  if (value instanceof Date) return Number.isFinite(value.getTime()) ? value.toISOString() : 'an invalid Date';
  if (Array.isArray(value)) return `an array of ${value.length} items`;
  const name = (Object.getPrototypeOf(value) as { constructor?: { name?: unknown } } | null)?.constructor?.name;
  return typeof name === 'string' && name !== '' && name !== 'Object' ? `a ${name.slice(0, max)}` : 'an object';
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}
