import { Dispatcher, InvalidInputError, Scheduler } from '@horae/core';
import { VirtualClock } from '@horae/core/testing';
import { describe, expect, it } from 'vitest';
import { setup, sleepWork } from './helpers.js';

describe('Dispatcher', () => {
  it('never runs more than `concurrency` at once and gives free slots to the highest priority', async () => {
    const { clock, scheduler } = setup({ concurrency: 2, agingMs: Infinity });
    const started: string[] = [];
    let active = 0;
    let maxActive = 0;
    const job = (name: string) => async (ctx: Parameters<ReturnType<typeof sleepWork>>[0]) => {
      started.push(name);
      active++;
      maxActive = Math.max(maxActive, active);
      await sleepWork(100)(ctx);
      active--;
    };
    // All due at the same instant: 2 start, 6 wait.
    const runAt = clock.now() + 10;
    const specs: Array<[string, number]> = [
      ['m1', 0], ['m2', 0], ['l1', -10], ['h1', 10], ['m3', 0], ['h2', 10], ['l2', -10], ['x', 50],
    ];
    for (const [name, priority] of specs) await scheduler.schedule({ runAt, priority, work: job(name) });
    await clock.advance(10);
    // The heap hands out x and h1 first (highest priority), the rest wait.
    expect(started).toEqual(['x', 'h1']);
    expect(scheduler.running).toBe(2);
    expect(scheduler.pending).toBe(6);
    await clock.advance(1000);
    expect(started).toEqual(['x', 'h1', 'h2', 'm1', 'm2', 'm3', 'l1', 'l2']);
    expect(maxActive).toBe(2);
    expect(scheduler.running).toBe(0);
    expect(scheduler.concurrency).toBe(2);
  });

  it('ages waiting tasks: a low priority task runs under a constant stream of high ones', async () => {
    const { clock, scheduler } = setup({ concurrency: 1, agingMs: 1000 });
    const order: string[] = [];
    await scheduler.schedule({ delayMs: 0, priority: 'low', work: () => void order.push('low') });
    // A backlog of 5 high tasks, then a stream of one new high task every 100 ms, each 100 ms long: the
    // single slot is always busy and some high task always waits.
    for (let i = 0; i < 5; i++) await scheduler.schedule({ delayMs: 0, priority: 'high', work: sleepWork(100) });
    for (let i = 1; i <= 600; i++) await scheduler.schedule({ delayMs: i * 100, priority: 'high', work: sleepWork(100) });
    // Without aging, 'low' would wait for all 600 (60 s). It must get its turn once its wait outweighs the
    // 20-point gap: after ~20 s at agingMs 1000.
    for (let t = 0; t < 30_000 && !order.includes('low'); t += 100) await clock.advance(100);
    expect(order).toEqual(['low']);
    expect(clock.monotonic).toBeGreaterThanOrEqual(19_000);
    expect(clock.monotonic).toBeLessThanOrEqual(22_000);
    expect(scheduler.pending).toBeGreaterThan(100); // high tasks were still waiting when low ran
  });

  it('a task ages from its due time: one overdue for 20 s outranks a fresh task 10 points higher', async () => {
    const { clock, scheduler } = setup({ concurrency: 1, agingMs: 1000 });
    const order: string[] = [];
    await scheduler.schedule({ delayMs: 0, work: sleepWork(100) });
    await clock.advance(0);
    // Both wait for the one slot: 'old' was due 20 s ago (effective 0 + 20), 'fresh' is due now (10 + 0).
    await scheduler.schedule({ delayMs: 0, priority: 10, work: () => void order.push('fresh') });
    await scheduler.schedule({ runAt: clock.now() - 20_000, priority: 0, work: () => void order.push('old') });
    await clock.advance(200);
    expect(order).toEqual(['old', 'fresh']);
  });

  it('without aging, the same low priority task is still waiting after 30 s', async () => {
    const { clock, scheduler } = setup({ concurrency: 1, agingMs: Infinity });
    let lowRan = false;
    await scheduler.schedule({ delayMs: 0, priority: 'low', work: () => void (lowRan = true) });
    for (let i = 0; i < 5; i++) await scheduler.schedule({ delayMs: 0, priority: 'high', work: sleepWork(100) });
    for (let i = 1; i <= 400; i++) await scheduler.schedule({ delayMs: i * 100, priority: 'high', work: sleepWork(100) });
    for (let t = 0; t < 30_000; t += 1000) await clock.advance(1000);
    expect(lowRan).toBe(false);
  });

  it('cancels a due task that waits for a slot', async () => {
    const { clock, scheduler } = setup({ concurrency: 1 });
    await scheduler.schedule({ delayMs: 0, work: sleepWork(100) });
    let ran = false;
    const waiting = await scheduler.schedule({ delayMs: 0, work: () => void (ran = true) });
    await clock.advance(0);
    expect(scheduler.pending).toBe(1);
    expect(waiting.state).toBe('scheduled');
    expect(await waiting.cancel()).toBe(true);
    expect(waiting.state).toBe('cancelled');
    expect(scheduler.pending).toBe(0);
    await clock.advance(200);
    expect(ran).toBe(false);
  });

  it('validates its options', () => {
    const clock = new VirtualClock();
    expect(() => new Dispatcher({ clock, concurrency: 0, start: () => {} })).toThrow(InvalidInputError);
    expect(() => new Dispatcher({ clock, concurrency: 1.5, start: () => {} })).toThrow(InvalidInputError);
    expect(() => new Dispatcher({ clock, agingMs: -1, start: () => {} })).toThrow(InvalidInputError);
    expect(() => new Scheduler({ clock, concurrency: Number.NaN })).toThrow(InvalidInputError);
    expect(new Dispatcher({ clock, concurrency: Infinity, start: () => {} }).concurrency).toBe(Infinity);
  });
});
