import { InvalidInputError, Scheduler, SchedulerStoppedError, type ScheduleOptions, type SchedulerEvents, type TaskGenerator, type WorkContext } from '@horae/core';
import { VirtualClock } from '@horae/core/testing';
import { describe, expect, it } from 'vitest';
import { setup, sleepWork } from './helpers.js';

/** An async iterator of `size` items that counts its next() calls and the items that finished. */
function countingIterator(size: number, workMs: number) {
  const stats = { nextCalls: 0, finished: 0, maxInFlight: 0 };
  const iterator: AsyncIterator<ScheduleOptions> = {
    next() {
      stats.nextCalls++;
      const n = stats.nextCalls;
      if (n > size) return Promise.resolve({ done: true, value: undefined });
      return Promise.resolve({
        done: false,
        value: {
          param: n,
          work: async (ctx: WorkContext) => {
            await sleepWork(workMs)(ctx);
            stats.finished++;
          },
        },
      });
    },
  };
  return { iterator, stats };
}

/** A TaskGenerator of `size` items per round, whose readiness the test controls. */
function zotGenerator(size: number, ran: string[], workMs = 10) {
  const state = { i: 0, ready: true, resets: 0, generateCalls: 0 };
  const generator: TaskGenerator = {
    generate() {
      state.generateCalls++;
      const n = ++state.i;
      const round = state.resets;
      return {
        param: n,
        work: async (ctx: WorkContext) => {
          ran.push(`r${round}-${n}`);
          await sleepWork(workMs)(ctx);
        },
      };
    },
    isDone: () => state.i >= size,
    isReady: () => state.ready,
    reset: () => {
      state.i = 0;
      state.resets++;
    },
  };
  return { generator, state };
}

function collect<K extends keyof SchedulerEvents>(scheduler: Scheduler, name: K): Array<SchedulerEvents[K]> {
  const seen: Array<SchedulerEvents[K]> = [];
  scheduler.events.on(name, (payload) => void seen.push(payload));
  return seen;
}

describe('generators', () => {
  it('pulls a generator of 1,000,000 items only into free slots: memory for about one item per slot', async () => {
    const concurrency = 2;
    const { clock, scheduler } = setup({ concurrency });
    const { iterator, stats } = countingIterator(1_000_000, 10);
    const handle = scheduler.addGenerator(iterator, { priority: 'low' });
    let worst = 0;
    for (let t = 0; t < 200; t += 5) {
      await clock.advance(5);
      const outstanding = handle.pulled - stats.finished;
      worst = Math.max(worst, outstanding);
      expect(outstanding).toBeLessThanOrEqual(concurrency + 1);
    }
    // 200 ms at 2 slots of 10 ms runs: about 40 items finished, and next() was called for about as many.
    expect(stats.finished).toBeGreaterThanOrEqual(36);
    expect(stats.finished).toBeLessThanOrEqual(40);
    expect(stats.nextCalls).toBeLessThanOrEqual(stats.finished + concurrency + 1);
    expect(stats.nextCalls).toBe(handle.pulled);
    expect(worst).toBeGreaterThanOrEqual(1);
    expect(scheduler.running).toBeLessThanOrEqual(concurrency);
    expect(scheduler.capacity).toBeLessThanOrEqual(concurrency + 1); // task tables never grew beyond the slots
    expect(handle.done).toBe(false);
    handle.remove();
  });

  it('schedules every item at the generator priority, and runs them all', async () => {
    const { clock, scheduler } = setup({ concurrency: 1 });
    const scheduled = collect(scheduler, 'task:scheduled');
    const done = collect(scheduler, 'generator:done');
    const ran: unknown[] = [];
    const items: ScheduleOptions[] = [1, 2, 3].map((n) => ({ priority: 99, param: n, work: (ctx: WorkContext) => void ran.push(ctx.param) }));
    const handle = scheduler.addGenerator(items, { priority: 'high', name: 'three' });
    await clock.advance(10);
    expect(ran).toEqual([1, 2, 3]);
    expect(scheduled.map((s) => s.priority)).toEqual([10, 10, 10]);
    expect(done).toEqual([{ generator: 'three', round: 1 }]);
    expect([handle.name, handle.pulled, handle.done]).toEqual(['three', 3, true]);
  });

  it('pulls nothing before start(), and stops pulling at stop()', async () => {
    const clock = new VirtualClock();
    const scheduler = new Scheduler({ clock, concurrency: 2 });
    const { iterator, stats } = countingIterator(100, 10);
    scheduler.addGenerator(iterator);
    await clock.advance(100);
    expect(stats.nextCalls).toBe(0);
    scheduler.start();
    await clock.advance(0);
    expect(stats.nextCalls).toBe(2);
    const stopping = scheduler.stop();
    await clock.advance(1000);
    await stopping;
    expect(stats.nextCalls).toBe(2);
    expect(stats.finished).toBe(2);
    expect(() => scheduler.addGenerator([])).toThrow(SchedulerStoppedError);
  });

  it('gives a free slot to a due task of higher priority before pulling a generator', async () => {
    const { clock, scheduler } = setup({ concurrency: 1, agingMs: Infinity });
    const order: string[] = [];
    await scheduler.schedule({ work: async (ctx) => { order.push('busy'); await sleepWork(100)(ctx); } });
    await clock.advance(0);
    const items = (function* () {
      for (let i = 1; i <= 3; i++) yield { work: () => void order.push(`gen${i}`) };
    })();
    scheduler.addGenerator(items, { priority: 'low' });
    await scheduler.schedule({ delayMs: 50, priority: 'high', work: () => void order.push('high') });
    await clock.advance(200);
    expect(order).toEqual(['busy', 'high', 'gen1', 'gen2', 'gen3']);
  });

  it('TaskGenerator: skips it while not ready, asks again on a timer and on slot releases, reports each round', async () => {
    const { clock, scheduler } = setup({ concurrency: 1 });
    const done = collect(scheduler, 'generator:done');
    const ran: string[] = [];
    const { generator, state } = zotGenerator(3, ran);
    state.ready = false;
    scheduler.addGenerator(generator, { readyCheckMs: 500 });
    await clock.advance(100);
    expect(state.generateCalls).toBe(0);
    state.ready = true;
    await clock.advance(399);
    expect(state.generateCalls).toBe(0); // not asked before the check
    await clock.advance(1);
    await clock.advance(100);
    expect(ran).toEqual(['r0-1', 'r0-2', 'r0-3']);
    expect(done).toEqual([{ generator: 'generator-1', round: 1 }]);
    expect(state.generateCalls).toBe(3);
  });

  it('TaskGenerator: a slot release re-checks readiness before the timer', async () => {
    const { clock, scheduler } = setup({ concurrency: 1 });
    const ran: string[] = [];
    const { generator, state } = zotGenerator(2, ran);
    state.ready = false;
    await scheduler.schedule({ work: sleepWork(50) });
    scheduler.addGenerator(generator, { readyCheckMs: 10_000 });
    await clock.advance(10);
    state.ready = true;
    await clock.advance(100); // the 50 ms run ends and frees its slot: the generator is asked again
    expect(ran).toEqual(['r0-1', 'r0-2']);
  });

  it('TaskGenerator: wake() asks it again at once, without waiting for the check or a slot release', async () => {
    const { clock, scheduler } = setup({ concurrency: 1 });
    const ran: string[] = [];
    const { generator, state } = zotGenerator(2, ran);
    state.ready = false;
    const handle = scheduler.addGenerator(generator, { readyCheckMs: 10_000 });
    await clock.advance(10);
    expect(state.generateCalls).toBe(0);
    state.ready = true;
    handle.wake();
    await clock.advance(30);
    expect(ran).toEqual(['r0-1', 'r0-2']);
    // Removed: wake does nothing.
    handle.remove();
    handle.wake();
    expect(handle.removed).toBe(true);
  });

  it('periodic: wake() does not cut short the interval of a finished round', async () => {
    const { clock, scheduler } = setup({ concurrency: 2 });
    const ran: string[] = [];
    const { generator, state } = zotGenerator(1, ran, 10);
    const handle = scheduler.addGenerator(generator, { intervalMs: 1000 });
    await clock.advance(20);
    expect(handle.done).toBe(true);
    handle.wake();
    await clock.advance(500);
    expect(state.resets).toBe(0);
    await clock.advance(500);
    expect(state.resets).toBe(1);
  });

  it('periodic: a generator is reset and run again every interval after it is done', async () => {
    const { clock, scheduler } = setup({ concurrency: 2 });
    const done = collect(scheduler, 'generator:done');
    const ran: string[] = [];
    const { generator, state } = zotGenerator(2, ran, 10);
    const handle = scheduler.addGenerator(generator, { intervalMs: 1000 });
    await clock.advance(20);
    expect(ran).toEqual(['r0-1', 'r0-2']);
    expect(handle.done).toBe(true); // since its last item was pulled, at 0
    await clock.advance(979);
    expect(state.resets).toBe(0);
    await clock.advance(20);
    expect(state.resets).toBe(1);
    expect(ran).toEqual(['r0-1', 'r0-2', 'r1-1', 'r1-2']);
    await clock.advance(1100);
    expect(done.map((d) => d.round)).toEqual([1, 2, 3]);
    handle.remove();
    await clock.advance(5000);
    expect(state.resets).toBe(2);
    expect(clock.pendingTimers).toBe(0);
  });

  it('periodic: an async iterable starts over with a fresh iterator; a generator object is refused', async () => {
    const { clock, scheduler } = setup();
    const ran: number[] = [];
    let round = 0;
    const iterable: AsyncIterable<ScheduleOptions> = {
      async *[Symbol.asyncIterator]() {
        round++;
        await Promise.resolve();
        for (let i = 1; i <= 2; i++) yield { work: () => void ran.push(round * 10 + i) };
      },
    };
    scheduler.addGenerator(iterable, { intervalMs: 100 });
    await clock.advance(10);
    expect(ran).toEqual([11, 12]);
    await clock.advance(110);
    expect(ran).toEqual([11, 12, 21, 22]);
    async function* once() {
      await Promise.resolve();
      yield { work: () => {} };
    }
    expect(() => scheduler.addGenerator(once(), { intervalMs: 100 })).toThrow(InvalidInputError);
    expect(() => scheduler.addGenerator({ next: () => Promise.resolve({ done: true, value: undefined }) }, { intervalMs: 100 })).toThrow(InvalidInputError);
  });

  it('reports what a generator throws as generator:error, and the scheduler goes on', async () => {
    const { clock, scheduler } = setup({ concurrency: 1 });
    const errors = collect(scheduler, 'generator:error');
    let calls = 0;
    const flaky: TaskGenerator = {
      generate() {
        calls++;
        if (calls === 2) throw new Error('flaky source');
        return { work: () => {} };
      },
      isDone: () => calls >= 4,
      isReady: () => true,
      reset: () => {},
    };
    scheduler.addGenerator(flaky, { name: 'flaky', readyCheckMs: 100 });
    async function* broken() {
      await Promise.resolve();
      yield { work: () => {} };
      throw new Error('iterator broke');
    }
    scheduler.addGenerator(broken(), { name: 'broken' });
    const other = await scheduler.schedule({ delayMs: 50, work: () => 'still running' });
    await clock.advance(500);
    expect(errors.map((e) => [e.generator, (e.error as Error).message])).toEqual([
      ['flaky', 'flaky source'],
      ['broken', 'iterator broke'],
    ]);
    expect(calls).toBe(4); // asked again after the error
    await expect(other.result).resolves.toBe('still running');
  });

  it('asks a TaskGenerator that had nothing to give again only at the next check, never in a busy loop', async () => {
    const { clock, scheduler } = setup({ concurrency: 1 });
    const errors = collect(scheduler, 'generator:error');
    let calls = 0;
    const empty: TaskGenerator = { generate: () => void calls++, isDone: () => false, isReady: () => true, reset: () => {} };
    let throws = 0;
    const failing: TaskGenerator = {
      generate() {
        throws++;
        throw new Error('always');
      },
      isDone: () => false,
      isReady: () => true,
      reset: () => {},
    };
    scheduler.addGenerator(empty, { readyCheckMs: 100 });
    scheduler.addGenerator(failing, { readyCheckMs: 100 });
    await clock.advance(1000);
    // Once at the start, then once per check (every 100 ms): 11 calls each, not thousands.
    expect(calls).toBe(11);
    expect(throws).toBe(11);
    expect(errors).toHaveLength(11);
  });

  it('reports an item that schedule() refuses, and pulls the next', async () => {
    const { clock, scheduler } = setup({ concurrency: 1 });
    const errors = collect(scheduler, 'generator:error');
    const ran: number[] = [];
    const items: unknown[] = [{ work: () => void ran.push(1) }, { delayMs: -1, work: () => {} }, 42, { work: () => void ran.push(2) }];
    scheduler.addGenerator(items as ScheduleOptions[], { name: 'mixed' });
    await clock.advance(10);
    expect(ran).toEqual([1, 2]);
    expect(errors.map((e) => e.error)).toEqual([expect.any(InvalidInputError), expect.any(InvalidInputError)]);
  });

  it('remove() stops the pulls and lets an iterator run its finally block', async () => {
    const { clock, scheduler } = setup({ concurrency: 1 });
    let closed = false;
    let produced = 0;
    async function* endless() {
      try {
        for (;;) {
          produced++;
          await Promise.resolve();
          yield { work: sleepWork(10) };
        }
      } finally {
        closed = true;
      }
    }
    const handle = scheduler.addGenerator(endless());
    await clock.advance(35);
    const before = produced;
    expect(before).toBeGreaterThanOrEqual(3);
    handle.remove();
    await clock.advance(100);
    expect(handle.removed).toBe(true);
    expect(closed).toBe(true);
    expect(produced).toBe(before);
    expect(scheduler.running).toBe(0);
  });

  it('ages generators among themselves: a low priority generator still gets slots under a busy high one', async () => {
    const { clock, scheduler } = setup({ concurrency: 1, agingMs: 1000 });
    const high = countingIterator(1_000_000, 100);
    const low = countingIterator(1_000_000, 100);
    scheduler.addGenerator(high.iterator, { priority: 'high' });
    scheduler.addGenerator(low.iterator, { priority: 'low' });
    for (let t = 0; t < 25_000 && low.stats.nextCalls === 0; t += 100) await clock.advance(100);
    expect(low.stats.nextCalls).toBe(1);
    expect(clock.monotonic).toBeGreaterThanOrEqual(19_000);
    expect(clock.monotonic).toBeLessThanOrEqual(22_000);
    expect(high.stats.nextCalls).toBeGreaterThan(150);
  });

  it("pulls a ready generator of precedence 'first' before a higher-priority one, whatever their aging", async () => {
    // Issue 9: the storage backlog is such a generator; a user's 'high' generator must not hold it back.
    async function run(precedence: 'first' | 'aged'): Promise<string[]> {
      const { clock, scheduler } = setup({ concurrency: 1, agingMs: 1000 });
      const ran: string[] = [];
      function* high(): Generator<ScheduleOptions> {
        for (let n = 1; n <= 50; n++) {
          yield {
            work: async (ctx: WorkContext) => {
              ran.push(`high-${n}`);
              await sleepWork(100)(ctx);
            },
          };
        }
      }
      scheduler.addGenerator(high(), { priority: 'high' });
      // Low priority and not ready at first: the high generator takes the slot.
      const system = zotGenerator(3, ran, 100);
      system.state.ready = false;
      const handle = scheduler.addGenerator(system.generator, { priority: 'low', precedence, readyCheckMs: 60_000 });
      await clock.advance(50);
      system.state.ready = true;
      handle.wake();
      await clock.advance(1000);
      return ran;
    }
    // Ready while high-1 runs: its three items take the next slots, then the high generator goes on.
    expect((await run('first')).slice(0, 6)).toEqual(['high-1', 'r0-1', 'r0-2', 'r0-3', 'high-2', 'high-3']);
    // The same generator aged like the others waits 20 points of priority (20 s here) behind the high one.
    expect((await run('aged')).slice(0, 6)).toEqual(['high-1', 'high-2', 'high-3', 'high-4', 'high-5', 'high-6']);
  });

  it('pulls other generators only into the slots left beyond the heldSlots of a generator', async () => {
    const { clock, scheduler } = setup({ concurrency: 2 });
    const user = countingIterator(100, 100);
    let held = 2;
    // A system generator that schedules its tasks itself (a batch claim under way): it holds both free slots.
    const system: TaskGenerator = { generate: () => undefined, isDone: () => false, isReady: () => false, reset: () => {} };
    const systemHandle = scheduler.addGenerator(system, { precedence: 'first', readyCheckMs: 60_000, heldSlots: () => held });
    const userHandle = scheduler.addGenerator(user.iterator, { priority: 'high' });
    await clock.advance(10);
    expect(user.stats.nextCalls).toBe(0);
    // One of its tasks is known not to come: one slot is left for the others, at the next wake.
    held = 1;
    systemHandle.wake();
    await clock.advance(10);
    expect(user.stats.nextCalls).toBe(1);
    held = 0;
    userHandle.wake();
    await clock.advance(10);
    expect(user.stats.nextCalls).toBe(2);
    expect(scheduler.running).toBe(2);
  });

  it('still pulls a ready generator whose own heldSlots exceed the free slots (it decides its own room)', async () => {
    const { clock, scheduler } = setup({ concurrency: 2 });
    const ran: string[] = [];
    const system = zotGenerator(2, ran, 100);
    scheduler.addGenerator(system.generator, { precedence: 'first', heldSlots: () => 5 });
    await clock.advance(10);
    expect(ran).toEqual(['r0-1', 'r0-2']);
  });

  it('validates its input', () => {
    const { scheduler } = setup();
    expect(() => scheduler.addGenerator(null as never)).toThrow(InvalidInputError);
    expect(() => scheduler.addGenerator({} as never)).toThrow(InvalidInputError);
    expect(() => scheduler.addGenerator([], { priority: 'urgent' as never })).toThrow(InvalidInputError);
    expect(() => scheduler.addGenerator([], { intervalMs: 0 })).toThrow(InvalidInputError);
    expect(() => scheduler.addGenerator([], { readyCheckMs: -1 })).toThrow(InvalidInputError);
    expect(() => scheduler.addGenerator([], { name: '' })).toThrow(InvalidInputError);
    expect(() => scheduler.addGenerator([], { precedence: 'urgent' as never })).toThrow(InvalidInputError);
    expect(() => scheduler.addGenerator([], { heldSlots: 2 as never })).toThrow(InvalidInputError);
  });
});

describe('generators without a slot bound', () => {
  it('with concurrency Infinity, pulls a synchronous generator 1000 items per turn and yields in between', async () => {
    const { clock, scheduler } = setup({ concurrency: Infinity });
    let produced = 0;
    let ran = 0;
    function* many(): Generator<ScheduleOptions> {
      for (let i = 0; i < 5000; i++) {
        produced++;
        yield { work: () => void ran++ };
      }
    }
    scheduler.addGenerator(many());
    await clock.flush(); // promise jobs only: the first turn's pulls
    expect(produced).toBe(1000);
    expect(ran).toBe(0);
    await clock.advance(0);
    expect(produced).toBe(5000);
    expect(ran).toBe(5000);
  });
});
