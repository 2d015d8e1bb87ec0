import { Scheduler, TaskCancelledError, type TaskHandle } from '@horae/core';
import { VirtualClock } from '@horae/core/testing';
import { describe, expect, it } from 'vitest';
import { setup } from './helpers.js';

// A work that returns a non-promise is settled without its run being stored in the task (see Scheduler #run):
// what a run can do while its work executes synchronously must still reach that run.
describe('a run whose work returns synchronously', () => {
  it('can cancel its own handle: the task ends cancelled and its signal is aborted', async () => {
    const { clock, scheduler } = setup();
    let abortedInside: boolean | undefined;
    let cancelReturned: boolean | undefined;
    const own: TaskHandle = await scheduler.schedule({
      delayMs: 10,
      work: (ctx) => {
        void own.cancel('self').then((result) => (cancelReturned = result));
        abortedInside = ctx.signal.aborted;
        return 'value';
      },
    });
    await clock.advance(10);
    expect(abortedInside).toBe(true);
    expect(cancelReturned).toBe(true);
    expect(own.state).toBe('cancelled');
    await expect(own.result).rejects.toBeInstanceOf(TaskCancelledError);
  });

  it('records progress reported during the call, and ignores a report after it returned', async () => {
    const { clock, scheduler } = setup();
    let later: (() => void) | undefined;
    const handle = await scheduler.schedule({
      delayMs: 5,
      work: (ctx) => {
        ctx.progress({ completed: 1, total: 2 });
        later = () => ctx.progress({ completed: 2, total: 2 });
      },
    });
    const seen: number[] = [];
    scheduler.events.on('task:progress', ({ progress }) => seen.push(progress.completed));
    await clock.advance(5);
    expect(handle.state).toBe('done');
    expect(handle.progress).toEqual({ completed: 1, total: 2 });
    later!();
    expect(handle.progress).toEqual({ completed: 1, total: 2 });
    expect(seen).toEqual([1]);
  });

  it('lets a task:start listener cancel the run that starts', async () => {
    const { clock, scheduler } = setup();
    let ran = false;
    const handle = await scheduler.schedule({ delayMs: 1, work: () => void (ran = true) });
    scheduler.events.on('task:start', () => void handle.cancel('at start'));
    await clock.advance(1);
    expect(ran).toBe(true);
    expect(handle.state).toBe('cancelled');
  });

  it('finds the outer run while a nested run (started by setWorkConcurrency) executes', async () => {
    const clock = new VirtualClock();
    const scheduler = new Scheduler({ clock, workConcurrency: { inner: 1 } });
    scheduler.start();
    const order: string[] = [];
    // Two inner tasks: the first holds the work's only slot, the second waits for it.
    let release: ((value: unknown) => void) | undefined;
    await scheduler.schedule({ delayMs: 1, workId: 'inner', work: () => new Promise((resolve) => (release = resolve)) });
    await scheduler.schedule({
      delayMs: 1,
      workId: 'inner',
      work: () => {
        order.push('inner');
        // Runs inside the outer work's synchronous call: cancel the outer task from here.
        void outer.cancel('from the nested run');
      },
    });
    const outer: TaskHandle = await scheduler.schedule({
      delayMs: 2,
      work: () => {
        order.push('outer:before');
        scheduler.setWorkConcurrency('inner', 2); // starts the waiting inner task synchronously
        order.push('outer:after');
        return 'outer value';
      },
    });
    await clock.advance(2);
    expect(order).toEqual(['outer:before', 'inner', 'outer:after']);
    expect(outer.state).toBe('cancelled');
    await expect(outer.result).rejects.toBeInstanceOf(TaskCancelledError);
    release!(undefined);
    await scheduler.stop();
  });

  it('still stores an awaiting run: cancel() aborts it and progress reaches it after the first await', async () => {
    const { clock, scheduler } = setup();
    let reportAfterAwait: (() => void) | undefined;
    const handle = await scheduler.schedule({
      delayMs: 1,
      work: async (ctx) => {
        await Promise.resolve();
        reportAfterAwait = () => ctx.progress({ completed: 3, total: 4 });
        await new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason as Error), { once: true }));
      },
    });
    await clock.advance(1);
    expect(handle.state).toBe('running');
    reportAfterAwait!();
    expect(handle.progress).toEqual({ completed: 3, total: 4 });
    expect(await handle.cancel()).toBe(true);
    await expect(handle.result).rejects.toBeInstanceOf(TaskCancelledError);
    expect(handle.state).toBe('cancelled');
  });
});
