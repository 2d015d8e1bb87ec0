import { InvalidInputError, Scheduler, type WorkContext } from '@horae/core';
import { VirtualClock } from '@horae/core/testing';
import { describe, expect, it } from 'vitest';
import { setup, sleepWork } from './helpers.js';

/** Records starts and the peak number of concurrent runs per work. */
function tracker() {
  const started: string[] = [];
  const active = new Map<string, number>();
  const peak = new Map<string, number>();
  const job =
    (workId: string, name: string, ms = 100) =>
    async (ctx: WorkContext): Promise<void> => {
      started.push(name);
      const now = (active.get(workId) ?? 0) + 1;
      active.set(workId, now);
      peak.set(workId, Math.max(peak.get(workId) ?? 0, now));
      await sleepWork(ms)(ctx);
      active.set(workId, active.get(workId)! - 1);
    };
  return { started, peak, job };
}

describe('per-work concurrency', () => {
  it('caps the runs of one work while other works use the free slots (no head-of-line blocking)', async () => {
    const { clock, scheduler } = setup({ concurrency: 3, agingMs: Infinity, workConcurrency: { a: 1 } });
    const { started, peak, job } = tracker();
    const runAt = clock.now() + 10;
    // The 'a' tasks have the highest priority and come first: without per-work bookkeeping that skips them,
    // they would block the queue while 'a' is at its limit.
    for (let i = 1; i <= 3; i++) await scheduler.schedule({ runAt, priority: 10, workId: 'a', work: job('a', `a${i}`) });
    for (let i = 1; i <= 4; i++) await scheduler.schedule({ runAt, priority: 0, workId: 'b', work: job('b', `b${i}`) });
    await clock.advance(10);
    expect(started).toEqual(['a1', 'b1', 'b2']);
    expect(scheduler.running).toBe(3);
    expect(scheduler.runningOf('a')).toBe(1);
    expect(scheduler.runningOf('b')).toBe(2);
    await clock.advance(100);
    // a1 ended: a2 takes its slot at once (highest priority, and 'a' is below its limit again); b3, b4 follow b1, b2.
    expect(started).toEqual(['a1', 'b1', 'b2', 'a2', 'b3', 'b4']);
    await clock.advance(1000);
    expect(started).toHaveLength(7);
    expect(started.at(-1)).toBe('a3');
    expect(peak.get('a')).toBe(1);
    expect(peak.get('b')).toBe(2);
    expect(scheduler.running).toBe(0);
    expect(scheduler.pending).toBe(0);
  });

  it('skips a queued task whose work reached its limit while it waited, and gives the slot to the next one', async () => {
    const { clock, scheduler } = setup({ concurrency: 3, agingMs: Infinity, workConcurrency: { a: 2 } });
    const { started, peak, job } = tracker();
    const t0 = clock.now();
    await scheduler.schedule({ runAt: t0, workId: 'x', work: job('x', 'x1', 1000) });
    await scheduler.schedule({ runAt: t0, workId: 'x', work: job('x', 'x2', 1000) });
    await scheduler.schedule({ runAt: t0, workId: 'x', work: job('x', 'x3', 100) });
    // Queued while every slot is busy and 'a' is below its limit: all three wait in the ready queue.
    for (let i = 1; i <= 3; i++) await scheduler.schedule({ runAt: t0 + 10, priority: 10, workId: 'a', work: job('a', `a${i}`, 1000) });
    await scheduler.schedule({ runAt: t0 + 10, priority: 0, workId: 'b', work: job('b', 'b1', 1000) });
    await clock.advance(100);
    expect(started).toEqual(['x1', 'x2', 'x3', 'a1']);
    await clock.advance(900);
    // x1 and x2 ended: a2 takes one slot; a3 is next by priority but 'a' is at its limit, so b1 takes the other.
    expect(started).toEqual(['x1', 'x2', 'x3', 'a1', 'a2', 'b1']);
    await clock.advance(100);
    expect(started).toEqual(['x1', 'x2', 'x3', 'a1', 'a2', 'b1', 'a3']);
    expect(peak.get('a')).toBe(2);
  });

  it('keeps priority order among the runnable tasks, and within the limited work', async () => {
    const { clock, scheduler } = setup({ concurrency: 1, agingMs: Infinity, workConcurrency: { a: 1 } });
    const { started, job } = tracker();
    const runAt = clock.now() + 10;
    const specs: Array<[string, string, number]> = [
      ['a', 'a-low', -5], ['x', 'x-mid', 0], ['a', 'a-high', 20], ['y', 'y-high', 10], ['a', 'a-mid', 1],
    ];
    for (const [workId, name, priority] of specs) await scheduler.schedule({ runAt, priority, workId, work: job(workId, name) });
    await clock.advance(2000);
    expect(started).toEqual(['a-high', 'y-high', 'a-mid', 'x-mid', 'a-low']);
  });

  it('setWorkConcurrency: raising a limit starts waiting tasks at once; lowering one aborts no run', async () => {
    const { clock, scheduler } = setup({ concurrency: 10 });
    const { started, job } = tracker();
    scheduler.setWorkConcurrency('a', 1);
    expect(scheduler.workConcurrency('a')).toBe(1);
    expect(scheduler.workConcurrency('other')).toBe(Infinity);
    for (let i = 1; i <= 4; i++) await scheduler.schedule({ workId: 'a', work: job('a', `a${i}`, 1000) });
    await clock.advance(0);
    expect(started).toEqual(['a1']);
    expect(scheduler.pending).toBe(3);
    scheduler.setWorkConcurrency('a', 3);
    expect(started).toEqual(['a1', 'a2', 'a3']);
    scheduler.setWorkConcurrency('a', 1);
    expect(scheduler.runningOf('a')).toBe(3); // nothing aborted
    await clock.advance(1000);
    expect(started).toEqual(['a1', 'a2', 'a3', 'a4']);
    scheduler.setWorkConcurrency('a', undefined);
    expect(scheduler.workConcurrency('a')).toBe(Infinity);
  });

  it('counts runs that started before the limit was set', async () => {
    const { clock, scheduler } = setup({ concurrency: 10 });
    const { started, job } = tracker();
    for (let i = 1; i <= 2; i++) await scheduler.schedule({ workId: 'a', work: job('a', `a${i}`, 1000) });
    await clock.advance(0);
    scheduler.setWorkConcurrency('a', 2);
    await scheduler.schedule({ workId: 'a', work: job('a', 'a3', 1000) });
    await clock.advance(500);
    expect(started).toEqual(['a1', 'a2']);
    await clock.advance(500);
    expect(started).toEqual(['a1', 'a2', 'a3']);
  });

  it('cancels a task that waits for its work limit: it never runs, the others go on', async () => {
    const { clock, scheduler } = setup({ concurrency: 5, workConcurrency: { a: 1 } });
    const { started, job } = tracker();
    await scheduler.schedule({ workId: 'a', work: job('a', 'a1') });
    const waiting = await scheduler.schedule({ workId: 'a', work: job('a', 'a2') });
    await scheduler.schedule({ workId: 'a', work: job('a', 'a3') });
    await clock.advance(0);
    expect(scheduler.pending).toBe(2);
    expect(await waiting.cancel()).toBe(true);
    expect(waiting.state).toBe('cancelled');
    expect(scheduler.pending).toBe(1);
    await clock.advance(300);
    expect(started).toEqual(['a1', 'a3']);
  });

  it('leaves tasks without a workId, and works without a limit, unlimited', async () => {
    const { clock, scheduler } = setup({ concurrency: 4, workConcurrency: { a: 1 } });
    const { started, job } = tracker();
    for (let i = 1; i <= 2; i++) await scheduler.schedule({ work: job('none', `n${i}`) });
    for (let i = 1; i <= 2; i++) await scheduler.schedule({ workId: 'b', work: job('b', `b${i}`) });
    await clock.advance(0);
    expect(started).toEqual(['n1', 'n2', 'b1', 'b2']);
  });

  it('a low priority task still runs under a constant stream of high ones of a limited work (aging holds)', async () => {
    const { clock, scheduler } = setup({ concurrency: 2, agingMs: 1000, workConcurrency: { hot: 2 } });
    const order: string[] = [];
    await scheduler.schedule({ delayMs: 0, priority: 'low', workId: 'cold', work: () => void order.push('low') });
    for (let i = 0; i < 10; i++) await scheduler.schedule({ delayMs: 0, priority: 'high', workId: 'hot', work: sleepWork(100) });
    for (let i = 1; i <= 600; i++) {
      await scheduler.schedule({ delayMs: i * 50, priority: 'high', workId: 'hot', work: sleepWork(100) });
    }
    for (let t = 0; t < 30_000 && !order.includes('low'); t += 100) await clock.advance(100);
    expect(order).toEqual(['low']);
    // 20 points of priority at one point per second.
    expect(clock.monotonic).toBeGreaterThanOrEqual(19_000);
    expect(clock.monotonic).toBeLessThanOrEqual(22_000);
    expect(scheduler.pending).toBeGreaterThan(100);
  });

  it('validates limits', () => {
    const clock = new VirtualClock();
    expect(() => new Scheduler({ clock, workConcurrency: { a: 0 } })).toThrow(InvalidInputError);
    expect(() => new Scheduler({ clock, workConcurrency: { a: 1.5 } })).toThrow(InvalidInputError);
    expect(() => new Scheduler({ clock, workConcurrency: null as never })).toThrow(InvalidInputError);
    const scheduler = new Scheduler({ clock, workConcurrency: { a: Infinity } });
    expect(scheduler.workConcurrency('a')).toBe(Infinity);
    expect(() => scheduler.setWorkConcurrency('', 1)).toThrow(InvalidInputError);
    expect(() => scheduler.setWorkConcurrency('a', -1)).toThrow(InvalidInputError);
    expect(() => scheduler.setWorkConcurrency('a', Number.NaN)).toThrow(InvalidInputError);
  });
});
