/**
 * Durations as operators type them: `7d`, `12h`, `30m`, `45s`, `500ms`, `2w`.
 */
import { usageError } from './exit-codes.js';

const UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** The longest duration accepted: about 100 years, far beyond any retention, and well inside a Date's range. */
const MAX_DURATION_MS = 100 * 365 * 86_400_000;

/**
 * Parses a duration.
 *
 * @param text - an integer followed by a unit: ms, s, m, h, d or w (e.g. `7d`)
 * @param what - the option, for the message
 * @returns milliseconds, > 0
 * @throws CliError (usage, exit 2) on anything else: no unit, an unknown unit, a fraction, zero, a negative or huge value
 */
export function parseDuration(text: string, what: string): number {
  const match = /^(\d+)(ms|s|m|h|d|w)$/.exec(text.trim());
  if (match === null) {
    throw usageError(`${what} must be a whole number followed by a unit (ms, s, m, h, d, w), such as 7d, 12h or 30m; got ${JSON.stringify(text)}`);
  }
  const ms = Number(match[1]) * UNITS[match[2]!]!;
  if (ms <= 0) throw usageError(`${what} must be longer than zero; got ${JSON.stringify(text)}`);
  if (!Number.isSafeInteger(ms) || ms > MAX_DURATION_MS) throw usageError(`${what} is too long (at most 100 years); got ${JSON.stringify(text)}`);
  return ms;
}

/** A duration in the largest unit that divides it, for messages (`604800000` → `7d`). */
export function formatDuration(ms: number): string {
  for (const unit of ['w', 'd', 'h', 'm', 's'] as const) {
    const size = UNITS[unit]!;
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}
