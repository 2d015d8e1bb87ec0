import {
  InvalidInputError,
  SchedulerStoppedError,
  TaskCancelledError,
  UnrecoverableError,
  exponentialBackoff,
  fixedBackoff,
  retry,
  shouldRetry,
  type RetryPolicy,
} from '@horae/core';
import { describe, expect, it } from 'vitest';
import { setup, untilAborted } from './helpers.js';

/** A seeded PRNG (mulberry32), so jitter tests are deterministic and still cover the range. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('backoff math', () => {
  it('grows exponentially and caps at maxMs without jitter', () => {
    const backoff = exponentialBackoff({ baseMs: 100, factor: 3, maxMs: 5000, jitter: 'none' });
    expect([1, 2, 3, 4, 5, 6].map((n) => backoff(n, null))).toEqual([100, 300, 900, 2700, 5000, 5000]);
    expect(backoff(10_000, null)).toBe(5000); // factor^n overflow is capped too
  });

  it('keeps full jitter in [0, d] and equal jitter in [d/2, d]', () => {
    const full = exponentialBackoff({ baseMs: 1000, jitter: 'full', random: seeded(1) });
    const equal = exponentialBackoff({ baseMs: 1000, jitter: 'equal', random: seeded(2) });
    let fullMin = Infinity;
    let fullMax = 0;
    for (let i = 0; i < 2000; i++) {
      const f = full(3, null);
      const e = equal(3, null);
      expect(f).toBeGreaterThanOrEqual(0);
      expect(f).toBeLessThanOrEqual(4000);
      expect(e).toBeGreaterThanOrEqual(2000);
      expect(e).toBeLessThanOrEqual(4000);
      fullMin = Math.min(fullMin, f);
      fullMax = Math.max(fullMax, f);
    }
    // The jitter really spreads the delays over the range.
    expect(fullMin).toBeLessThan(400);
    expect(fullMax).toBeGreaterThan(3600);
    // Defaults: base 1000, factor 2, full jitter.
    expect(exponentialBackoff({ random: () => 0.5 })(2, null)).toBe(1000);
    expect(exponentialBackoff({ random: () => 0.5, jitter: 'equal' })(2, null)).toBe(1500);
  });

  it('validates its options', () => {
    expect(() => exponentialBackoff({ baseMs: -1 })).toThrow(InvalidInputError);
    expect(() => exponentialBackoff({ factor: 0.5 })).toThrow(InvalidInputError);
    expect(() => exponentialBackoff({ maxMs: Number.NaN })).toThrow(InvalidInputError);
    expect(() => exponentialBackoff({ jitter: 'some' as never })).toThrow(InvalidInputError);
    expect(() => fixedBackoff(-5)).toThrow(InvalidInputError);
    expect(() => retry({ maxAttempts: 0, backoff: fixedBackoff(1) })).toThrow(InvalidInputError);
    expect(() => retry({ maxAttempts: 2, backoff: 5 as never })).toThrow(InvalidInputError);
  });
});

describe('shouldRetry', () => {
  const policy: RetryPolicy = { maxAttempts: 3, backoff: fixedBackoff(250) };
  it('retries while attempts are left', () => {
    expect(shouldRetry(policy, 1, new Error('x'))).toEqual({ retry: true, delayMs: 250 });
    expect(shouldRetry(policy, 2, new Error('x'))).toEqual({ retry: true, delayMs: 250 });
    expect(shouldRetry(policy, 3, new Error('x'))).toEqual({ retry: false });
    expect(shouldRetry(policy, 3, new Error('x'), 5)).toEqual({ retry: true, delayMs: 250 });
  });
  it('never retries unrecoverable, cancelled or stopped runs, nor what isRetryable refuses', () => {
    expect(shouldRetry(policy, 1, new UnrecoverableError('no'))).toEqual({ retry: false });
    expect(shouldRetry(policy, 1, new TaskCancelledError())).toEqual({ retry: false });
    expect(shouldRetry(policy, 1, new SchedulerStoppedError())).toEqual({ retry: false });
    const picky: RetryPolicy = { ...policy, isRetryable: (e) => e instanceof RangeError };
    expect(shouldRetry(picky, 1, new Error('x'))).toEqual({ retry: false });
    expect(shouldRetry(picky, 1, new RangeError('x')).retry).toBe(true);
  });
  it('rejects a backoff that returns a bad delay', () => {
    expect(() => shouldRetry({ maxAttempts: 3, backoff: () => Number.NaN }, 1, new Error('x'))).toThrow(InvalidInputError);
  });
});

describe('retry middleware', () => {
  it('re-runs a failing work after the backoff, with attempt + 1, until it succeeds', async () => {
    const { clock, scheduler } = setup();
    scheduler.use(retry({ maxAttempts: 4, backoff: exponentialBackoff({ baseMs: 1000, jitter: 'none' }) }));
    const runs: Array<{ attempt: number; at: number }> = [];
    const start = clock.now();
    const handle = await scheduler.schedule({
      work: (ctx) => {
        runs.push({ attempt: ctx.attempt, at: clock.now() - start });
        if (ctx.attempt < 3) throw new Error(`fail ${ctx.attempt}`);
        return 'ok';
      },
    });
    await clock.advance(0);
    expect(handle.state).toBe('scheduled');
    await clock.advance(3000);
    await expect(handle.result).resolves.toBe('ok');
    expect(runs).toEqual([
      { attempt: 1, at: 0 },
      { attempt: 2, at: 1000 },
      { attempt: 3, at: 3000 },
    ]);
  });

  it('fails with the last error when attempts run out, and honours the task maxAttempts', async () => {
    const { clock, scheduler } = setup();
    scheduler.use(retry({ maxAttempts: 5, backoff: fixedBackoff(100) }));
    let runs = 0;
    const handle = await scheduler.schedule({ maxAttempts: 2, work: () => Promise.reject(new Error(`run ${++runs}`)) });
    await clock.advance(1000);
    expect(runs).toBe(2);
    expect(handle.state).toBe('failed');
    await expect(handle.result).rejects.toThrow('run 2');
  });

  it('does not retry an unrecoverable error nor a cancelled run', async () => {
    const { clock, scheduler } = setup();
    scheduler.use(retry({ maxAttempts: 5, backoff: fixedBackoff(100) }));
    let runs = 0;
    const fatal = await scheduler.schedule({
      work: () => {
        runs++;
        throw new UnrecoverableError('bad data');
      },
    });
    const cancelled = await scheduler.schedule({ delayMs: 10, work: (ctx) => untilAborted(ctx).catch(() => Promise.reject(new Error('aborted'))) });
    await clock.advance(10);
    await cancelled.cancel();
    await clock.advance(1000);
    expect(runs).toBe(1);
    expect(fatal.state).toBe('failed');
    expect(cancelled.state).toBe('cancelled');
    expect(scheduler.pending).toBe(0);
  });
});
