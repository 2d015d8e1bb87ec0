import { MAX_TIMER_DELAY_MS, Scheduler, TimerQueue, type TaskHandle } from '@horae/core';
import { VirtualClock } from '@horae/core/testing';
import { describe, expect, it } from 'vitest';
import { setup } from './helpers.js';

const DAY = 86_400_000;

describe('TimerQueue', () => {
  it('hands out entries by runAt, then higher priority, then insertion order', async () => {
    const clock = new VirtualClock();
    const out: number[] = [];
    const queue = new TimerQueue({ clock, onDue: (id) => out.push(id) });
    const t = clock.now();
    queue.push(0, t + 20, 0, 0);
    queue.push(1, t + 10, 0, 1);
    queue.push(2, t + 10, 5, 2);
    queue.push(3, t + 10, 5, 3);
    queue.push(4, t + 5, -10, 4);
    queue.push(5, t + 10, 0, 5);
    queue.start();
    await clock.advance(100);
    expect(out).toEqual([4, 2, 3, 1, 5, 0]);
  });

  it('removes any entry and keeps the order of the rest', async () => {
    const clock = new VirtualClock();
    const out: number[] = [];
    const queue = new TimerQueue({ clock, onDue: (id) => out.push(id) });
    const times = [50, 10, 40, 20, 30, 60, 5, 45];
    times.forEach((ms, id) => queue.push(id, clock.now() + ms, 0, id));
    expect(queue.remove(2)).toBe(true);
    expect(queue.remove(6)).toBe(true);
    expect(queue.remove(6)).toBe(false);
    expect(queue.has(2)).toBe(false);
    expect(queue.size).toBe(6);
    queue.start();
    await clock.advance(100);
    expect(out).toEqual([1, 3, 4, 7, 0, 5]);
  });

  it('keeps the exact order through random pushes, removes and re-pushes (heap invariant)', async () => {
    let seed = 12345;
    const random = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const clock = new VirtualClock();
    const out: number[] = [];
    const queue = new TimerQueue({ clock, onDue: (id) => out.push(id) });
    const live = new Map<number, [number, number, number]>();
    let seq = 0;
    for (let step = 0; step < 5000; step++) {
      const id = Math.floor(random() * 800);
      if (live.has(id) && random() < 0.5) {
        expect(queue.remove(id)).toBe(true);
        live.delete(id);
      } else if (!live.has(id)) {
        // Few distinct times and priorities, so that the tie-breaks are exercised.
        const key: [number, number, number] = [clock.now() + Math.floor(random() * 50), Math.floor(random() * 3), seq++];
        queue.push(id, ...key);
        live.set(id, key);
      }
    }
    expect(queue.size).toBe(live.size);
    const expected = [...live.entries()]
      .sort(([, a], [, b]) => a[0] - b[0] || b[1] - a[1] || a[2] - b[2])
      .map(([id]) => id);
    queue.start();
    await clock.advance(100);
    expect(out).toEqual(expected);
  });

  it('hands out many entries due in one ms in insertion order, and buckets of several ms in time order', async () => {
    const clock = new VirtualClock();
    const out: number[] = [];
    const queue = new TimerQueue({ clock, onDue: (id) => out.push(id) });
    const t = clock.now();
    // 30,000 entries over three ms, pushed with the ms interleaved and the latest ms first.
    for (let id = 0; id < 30_000; id++) queue.push(id, t + 30 - 10 * (id % 3), 0, id);
    expect(queue.size).toBe(30_000);
    expect(queue.peekRunAt()).toBe(t + 10);
    queue.start();
    await clock.advance(10);
    expect(out).toHaveLength(10_000);
    expect(out.every((id, i) => id === 3 * i + 2)).toBe(true);
    await clock.advance(20);
    const byMs = (ms: number) => out.filter((id) => t + 30 - 10 * (id % 3) === ms);
    expect(out.slice(10_000, 20_000)).toEqual(byMs(t + 20));
    expect(out.slice(20_000)).toEqual(byMs(t + 30));
    expect(byMs(t + 30).every((id, i) => id === 3 * i)).toBe(true);
    expect(queue.size).toBe(0);
  });

  it('orders buckets of one ms by priority, and each bucket by seq', async () => {
    const clock = new VirtualClock();
    const out: number[] = [];
    const queue = new TimerQueue({ clock, onDue: (id) => out.push(id) });
    const t = clock.now();
    const priorities = [0, 5, -1, 5, 0, -1, 5, 0];
    priorities.forEach((priority, id) => queue.push(id, t + 7, priority, id));
    queue.push(8, t + 6, -100, 8);
    queue.start();
    await clock.advance(7);
    expect(out).toEqual([8, 1, 3, 6, 0, 4, 7, 2, 5]);
  });

  it('removes an entry from the middle of a bucket and keeps the rest in order', async () => {
    const clock = new VirtualClock();
    const out: number[] = [];
    const queue = new TimerQueue({ clock, onDue: (id) => out.push(id) });
    const t = clock.now();
    for (let id = 0; id < 5; id++) queue.push(id, t + 10, 0, id);
    expect(queue.remove(2)).toBe(true);
    expect(queue.remove(2)).toBe(false);
    expect(queue.has(2)).toBe(false);
    expect(queue.runAtOf(2)).toBeNaN();
    expect(queue.runAtOf(3)).toBe(t + 10);
    expect(queue.size).toBe(4);
    // The freed id goes back into the same bucket, at its end.
    queue.push(2, t + 10, 0, 5);
    queue.start();
    await clock.advance(10);
    expect(out).toEqual([0, 1, 3, 4, 2]);
  });

  it('removes the first and the last entry of a bucket, and drops a bucket emptied by removes', async () => {
    const clock = new VirtualClock();
    const out: number[] = [];
    const queue = new TimerQueue({ clock, onDue: (id) => out.push(id) });
    const t = clock.now();
    for (let id = 0; id < 4; id++) queue.push(id, t + 10, 0, id);
    queue.push(4, t + 20, 0, 4);
    expect(queue.remove(3)).toBe(true); // the last: the next push to the bucket goes after 2
    expect(queue.remove(0)).toBe(true); // the first
    queue.push(5, t + 10, 0, 5);
    expect(queue.peekRunAt()).toBe(t + 10);
    for (const id of [1, 2, 5]) expect(queue.remove(id)).toBe(true);
    // The bucket of t + 10 is empty and gone: the head is the next ms.
    expect(queue.peekRunAt()).toBe(t + 20);
    expect(queue.size).toBe(1);
    // A bucket of t + 10 is opened again from scratch.
    queue.push(0, t + 10, 0, 6);
    queue.push(1, t + 10, 0, 7);
    queue.start();
    await clock.advance(10);
    expect(out).toEqual([0, 1]);
    // The bucket of t + 20 empties by its last remove: nothing is queued, so no timer is left armed.
    expect(queue.remove(4)).toBe(true);
    expect(queue.size).toBe(0);
    expect(queue.peekRunAt()).toBeUndefined();
    expect(clock.pendingTimers).toBe(0);
  });

  it('keeps seq order when an entry comes back with an older seq than its bucket holds (a deferred task)', async () => {
    const clock = new VirtualClock();
    const out: number[] = [];
    const queue = new TimerQueue({ clock, onDue: (id) => out.push(id) });
    const t = clock.now();
    queue.push(0, t + 10, 0, 10);
    queue.push(1, t + 10, 0, 20);
    queue.push(2, t + 10, 0, 5);
    queue.push(3, t + 10, 0, 15);
    queue.push(4, t + 10, 0, 30);
    queue.push(5, t + 10, 0, 12);
    expect(queue.remove(0)).toBe(true); // the first of its bucket, while buckets of the same ms and priority exist
    queue.start();
    await clock.advance(10);
    expect(out).toEqual([2, 5, 3, 1, 4]);
  });

  it('hands out the exact order when entries are pushed, removed and fired in random order (bucket invariants)', async () => {
    let seed = 777;
    const random = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (const { times, priorities, ordered } of [
      { times: 8, priorities: 2, ordered: true }, // big buckets
      { times: 8, priorities: 3, ordered: false }, // big buckets with out-of-order seqs (twins)
      { times: 6000, priorities: 2, ordered: false }, // thousands of buckets: the table and the heap grow
    ]) {
      const clock = new VirtualClock();
      const out: number[] = [];
      const queue = new TimerQueue({ clock, onDue: (id) => out.push(id) });
      queue.start();
      const live = new Map<number, [number, number, number]>();
      let seq = 0;
      for (let round = 0; round < 20; round++) {
        for (let step = 0; step < 2000; step++) {
          const id = Math.floor(random() * 3000);
          if (live.has(id)) {
            if (random() < 0.5) {
              expect(queue.remove(id)).toBe(true);
              live.delete(id);
            }
          } else {
            const key: [number, number, number] = [
              clock.now() + 1 + Math.floor(random() * times),
              Math.floor(random() * priorities),
              // Unique, as the scheduler's are; out of order, like a deferred task's, when not `ordered`.
              ordered ? seq++ : Math.floor(random() * 1000) * 100_000 + seq++,
            ];
            queue.push(id, ...key);
            live.set(id, key);
            expect(queue.runAtOf(id)).toBe(key[0]);
          }
        }
        expect(queue.size).toBe(live.size);
        const until = clock.now() + 1 + Math.floor(random() * times);
        const due = [...live.entries()].filter(([, [runAt]]) => runAt <= until);
        const expected = due.sort(([, a], [, b]) => a[0] - b[0] || b[1] - a[1] || a[2] - b[2]).map(([id]) => id);
        out.length = 0;
        await clock.advance(until - clock.now());
        expect(out).toEqual(expected);
        for (const id of expected) live.delete(id);
      }
    }
  });

  it('rejects an invalid wallClockCheckMs', () => {
    expect(() => new TimerQueue({ clock: new VirtualClock(), onDue: () => {}, wallClockCheckMs: 0 })).toThrow(/wallClockCheckMs/);
  });
});

describe('Scheduler timing', () => {
  it('runs tasks in (runAt, priority, insertion) order', async () => {
    const { clock, scheduler } = setup({ concurrency: 1 });
    const order: string[] = [];
    const at = (name: string, ms: number, priority = 0) =>
      scheduler.schedule({ runAt: clock.now() + ms, priority, work: () => void order.push(name) });
    await at('late', 300);
    await at('a-low', 100, -1);
    await at('a-first', 100);
    await at('a-high', 100, 10);
    await at('a-second', 100);
    await at('early', 50);
    await clock.advance(1000);
    expect(order).toEqual(['early', 'a-high', 'a-first', 'a-second', 'a-low', 'late']);
  });

  it('arms one timer, whatever the number of tasks', async () => {
    const { clock, scheduler } = setup();
    for (let i = 0; i < 2000; i++) await scheduler.schedule({ delayMs: 1000 + ((i * 7919) % 5000), work: () => {} });
    expect(scheduler.pending).toBe(2000);
    expect(clock.pendingTimers).toBe(1);
    await clock.advance(2500);
    expect(clock.pendingTimers).toBe(1);
    await clock.advance(5000);
    expect(scheduler.pending).toBe(0);
    expect(clock.pendingTimers).toBe(0);
  });

  it('cancel removes a task, disarms when the queue empties, and reuses memory', async () => {
    const { clock, scheduler } = setup();
    let ran = 0;
    for (let round = 0; round < 5; round++) {
      const handles: TaskHandle[] = [];
      for (let i = 0; i < 500; i++) handles.push(await scheduler.schedule({ delayMs: 1000 + i, work: () => void ran++ }));
      for (const handle of handles) expect(await handle.cancel()).toBe(true);
      expect(scheduler.pending).toBe(0);
      expect(clock.pendingTimers).toBe(0);
    }
    // Slots of cancelled tasks are reused: the tables never grew past one round's 500.
    expect(scheduler.capacity).toBe(500);
    await clock.advance(10_000);
    expect(ran).toBe(0);
  });

  it('runs a task 40 days out (beyond 2^31-1 ms) at its time, not before', async () => {
    const { clock, scheduler } = setup({ wallClockCheckMs: Infinity });
    const runAt = clock.now() + 40 * DAY;
    let ranAt: number | undefined;
    await scheduler.schedule({ runAt, work: () => void (ranAt = clock.now()) });
    expect(40 * DAY).toBeGreaterThan(MAX_TIMER_DELAY_MS);
    await clock.advance(40 * DAY - 1);
    expect(ranAt).toBeUndefined();
    await clock.advance(1);
    expect(ranAt).toBe(runAt);
  });

  it('runs a task in the past at once', async () => {
    const { clock, scheduler } = setup();
    const handle = await scheduler.schedule({ runAt: new Date(clock.now() - 60_000), work: () => 'late' });
    await clock.advance(0);
    expect(handle.state).toBe('done');
    await expect(handle.result).resolves.toBe('late');
  });

  it('does not run early nor lose a task when the wall clock jumps backwards', async () => {
    const { clock, scheduler } = setup();
    const runAt = clock.now() + 10_000;
    const ranAt: number[] = [];
    await scheduler.schedule({ runAt, work: () => void ranAt.push(clock.now()) });
    await clock.advance(5000);
    clock.jump(-3_600_000);
    await clock.advance(5000);
    expect(ranAt).toEqual([]); // 10 s of monotonic time passed, but the wall clock says it is not due yet
    await clock.advance(3_600_000 - 1);
    expect(ranAt).toEqual([]);
    await clock.advance(1000);
    expect(ranAt).toHaveLength(1);
    expect(ranAt[0]).toBeGreaterThanOrEqual(runAt);
    expect(ranAt[0]! - runAt).toBeLessThanOrEqual(1000);
    expect(clock.pendingTimers).toBe(0);
  });

  it('notices a forward wall-clock jump within wallClockCheckMs, and runs the task once', async () => {
    const { clock, scheduler } = setup({ wallClockCheckMs: 500 });
    let runs = 0;
    const handle = await scheduler.schedule({ delayMs: 3_600_000, work: () => void runs++ });
    await clock.advance(100);
    clock.jump(3_600_000);
    await clock.advance(499);
    expect(runs).toBe(1);
    expect(handle.state).toBe('done');
    await clock.advance(10_000_000);
    expect(runs).toBe(1);
  });

  it('runs tasks scheduled before start() only after start()', async () => {
    const clock = new VirtualClock();
    const scheduler = new Scheduler({ clock });
    let runs = 0;
    await scheduler.schedule({ delayMs: 10, work: () => void runs++ });
    await clock.advance(1000);
    expect(runs).toBe(0);
    expect(clock.pendingTimers).toBe(0);
    scheduler.start();
    await clock.advance(0);
    expect(runs).toBe(1);
  });
});
