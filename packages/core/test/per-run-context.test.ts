import { SchedulerContext, TaskCancelledError, TaskIdKey, createKey, isWorkAborted, type WorkContext } from '@horae/core';
import { describe, expect, it } from 'vitest';
import { setup } from './helpers.js';

describe('SchedulerContext.withValues', () => {
  it('sets every pair in one copy, later pairs winning, and leaves the original as it was', () => {
    const A = createKey<string>('a');
    const B = createKey<number>('b');
    const base = SchedulerContext.create({ runAt: 0 }).withValue(A, 'kept');
    const copy = base.withValues([
      [B, 1],
      [TaskIdKey, 'x'],
      [B, 2],
      [A, undefined],
    ]);
    expect(copy.value(B)).toBe(2);
    expect(copy.value(TaskIdKey)).toBe('x');
    expect(copy.value(A)).toBeUndefined();
    expect(base.value(A)).toBe('kept');
    expect(base.value(B)).toBeUndefined();
    expect(copy.runAtMs).toBe(base.runAtMs);
  });
});

describe('isWorkAborted', () => {
  it('tells a run that was cancelled from one that was not, whether or not the work read its signal', async () => {
    const { clock, scheduler } = setup();
    const seen: WorkContext[] = [];
    // The runs last until the test lets them end: the cancel lands while they run.
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const work = (ctx: WorkContext): Promise<void> => {
      seen.push(ctx);
      return gate;
    };
    const cancelled = await scheduler.schedule({ delayMs: 1, work });
    const kept = await scheduler.schedule({ delayMs: 1, work });
    await clock.advance(1);
    expect(seen).toHaveLength(2);
    expect(seen.map((ctx) => isWorkAborted(ctx))).toEqual([false, false]);
    await cancelled.cancel('stop');
    expect(isWorkAborted(seen[0]!)).toBe(true);
    expect(seen[0]!.signal.aborted).toBe(true);
    expect(isWorkAborted(seen[1]!)).toBe(false);
    release();
    await kept.result;
    await expect(cancelled.result).rejects.toBeInstanceOf(TaskCancelledError);
  });

  it('reads any other context through its signal', () => {
    const controller = new AbortController();
    const ctx = { signal: controller.signal } as WorkContext;
    expect(isWorkAborted(ctx)).toBe(false);
    controller.abort(new Error('x'));
    expect(isWorkAborted(ctx)).toBe(true);
  });
});
