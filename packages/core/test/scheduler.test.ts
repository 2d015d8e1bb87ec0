import {
  InvalidInputError,
  RunAbandoned,
  RunDeferred,
  Scheduler,
  SchedulerContext,
  SchedulerStoppedError,
  TaskCancelledError,
  createKey,
  type Middleware,
  type WorkContext,
} from '@horae/core';
import { VirtualClock } from '@horae/core/testing';
import { describe, expect, it } from 'vitest';
import { setup, sleepWork, untilAborted } from './helpers.js';

describe('Scheduler: schedule and run', () => {
  it('gives the work its context and settles the handle with its value', async () => {
    const { clock, scheduler } = setup();
    const Tenant = createKey<string>('tenant');
    let seen: WorkContext | undefined;
    const handle = await scheduler.schedule({
      delayMs: 1000,
      param: { n: 1 },
      values: [[Tenant, 'acme']],
      work: (ctx) => {
        seen = ctx;
        ctx.progress({ completed: 1, total: 2 });
        return 'value';
      },
    });
    expect(handle.state).toBe('scheduled');
    expect(handle.runAt.getTime()).toBe(clock.now() + 1000);
    expect(scheduler.get(handle.taskId)).toBe(handle);
    await clock.advance(1000);
    await expect(handle.result).resolves.toBe('value');
    expect(handle.state).toBe('done');
    expect(handle.progress).toEqual({ completed: 1, total: 2 });
    expect(seen!.taskId).toBe(handle.taskId);
    expect(seen!.attempt).toBe(1);
    expect(seen!.param).toEqual({ n: 1 });
    expect(seen!.value(Tenant)).toBe('acme');
    expect(seen!.context.value(Tenant)).toBe('acme');
    expect(seen!.scheduledAt.getTime()).toBe(handle.runAt.getTime());
    expect(seen!.signal.aborted).toBe(false);
    expect(scheduler.get(handle.taskId)).toBeUndefined(); // ended tasks are forgotten
  });

  it('fails the handle with the error the work throws, sync or async', async () => {
    const { clock, scheduler } = setup();
    const sync = await scheduler.schedule({ work: () => { throw new Error('sync boom'); } });
    const async = await scheduler.schedule({ work: () => Promise.reject(new Error('async boom')) });
    await clock.advance(0);
    await expect(sync.result).rejects.toThrow('sync boom');
    await expect(async.result).rejects.toThrow('async boom');
    expect([sync.state, async.state]).toEqual(['failed', 'failed']);
  });

  it('uses a given taskId, or the idGenerator, and refuses a duplicate live id', async () => {
    let n = 0;
    const { scheduler } = setup({ idGenerator: () => `job-${++n}` });
    const a = await scheduler.schedule({ delayMs: 10, work: () => {} });
    const b = await scheduler.schedule({ delayMs: 10, taskId: 'mine', work: () => {} });
    expect([a.taskId, b.taskId]).toEqual(['job-1', 'mine']);
    expect(scheduler.get('mine')).toBe(b);
    await expect(scheduler.schedule({ delayMs: 10, taskId: 'mine', work: () => {} })).rejects.toMatchObject({ code: 'DUPLICATE_KEY' });
    expect(scheduler.pending).toBe(2);
  });

  it('generates distinct ids and finds tasks by them', async () => {
    const { scheduler } = setup();
    const handles = await Promise.all(Array.from({ length: 50 }, () => scheduler.schedule({ delayMs: 10, work: () => {} })));
    expect(new Set(handles.map((h) => h.taskId)).size).toBe(50);
    for (const h of handles) expect(scheduler.get(h.taskId)).toBe(h);
    expect(scheduler.get('nope')).toBeUndefined();
    expect(scheduler.get(handles[0]!.taskId + '0')).toBeUndefined();
  });

  it('keeps an ended handle accurate after its slot is reused by another task', async () => {
    const { clock, scheduler } = setup();
    const first = await scheduler.schedule({ delayMs: 10, priority: 3, work: () => {} });
    const id = first.taskId;
    const runAt = first.runAt.getTime();
    await clock.advance(10);
    const second = await scheduler.schedule({ delayMs: 5000, priority: -7, work: () => {} });
    expect(scheduler.capacity).toBe(1); // the slot was reused
    expect([first.taskId, first.runAt.getTime(), first.priority, first.state]).toEqual([id, runAt, 3, 'done']);
    expect(second.taskId).not.toBe(id);
    expect(scheduler.get(id)).toBeUndefined();
    expect(scheduler.get(second.taskId)).toBe(second);
    await expect(first.result).resolves.toBeUndefined();
    const cancelled = await scheduler.schedule({ delayMs: 10, work: () => {} });
    await cancelled.cancel();
    await expect(cancelled.result).rejects.toBeInstanceOf(TaskCancelledError);
  });

  it('rejects bad input with InvalidInputError and schedules nothing', async () => {
    const { scheduler } = setup();
    const bad: unknown[] = [
      { runAt: new Date('not a date'), work: () => {} },
      { runAt: Number.NaN, work: () => {} },
      { runAt: 'tomorrow', work: () => {} },
      {},
      { work: 'not a function' },
      { work: () => {}, priority: 'urgent' },
      { work: () => {}, priority: Number.POSITIVE_INFINITY },
      { work: () => {}, delayMs: -5 },
      null,
    ];
    for (const input of bad) {
      await expect(scheduler.schedule(input as never)).rejects.toBeInstanceOf(InvalidInputError);
    }
    expect(scheduler.pending).toBe(0);
    expect(scheduler.capacity).toBe(0);
  });

  it('accepts a SchedulerContext', async () => {
    const { clock, scheduler } = setup();
    const ctx = SchedulerContext.create({ delayMs: 5, work: () => 'ctx' }, clock.now());
    const handle = await scheduler.schedule(ctx);
    await clock.advance(5);
    await expect(handle.result).resolves.toBe('ctx');
  });

  it('never reports an unhandled rejection for a result nobody reads', async () => {
    const { clock, scheduler } = setup();
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const failed = await scheduler.schedule({ work: () => Promise.reject(new Error('nobody listens')) });
      const cancelled = await scheduler.schedule({ delayMs: 100, work: () => {} });
      void failed.result; // read but not awaited
      await cancelled.cancel();
      void cancelled.result;
      await clock.advance(200);
      await new Promise((resolve) => setTimeout(resolve, 10));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});

describe('Scheduler: cancel', () => {
  it('cancels a scheduled task: it never runs and its result rejects', async () => {
    const { clock, scheduler } = setup();
    let ran = false;
    const handle = await scheduler.schedule({ delayMs: 100, work: () => void (ran = true) });
    const result = handle.result;
    expect(await handle.cancel('not needed')).toBe(true);
    expect(await handle.cancel()).toBe(false);
    expect(handle.state).toBe('cancelled');
    await expect(result).rejects.toBeInstanceOf(TaskCancelledError);
    await expect(handle.result).rejects.toThrow('not needed');
    await clock.advance(1000);
    expect(ran).toBe(false);
  });

  it('cancels a running task: its signal aborts and the outcome is cancelled whatever the work throws', async () => {
    const { clock, scheduler } = setup();
    let signal: AbortSignal | undefined;
    const handle = await scheduler.schedule({
      work: (ctx) => {
        signal = ctx.signal;
        return untilAborted(ctx).catch(() => {
          throw new Error('the work failed on its own terms');
        });
      },
    });
    await clock.advance(0);
    expect(handle.state).toBe('running');
    expect(await handle.cancel('stop it')).toBe(true);
    expect(signal!.aborted).toBe(true);
    expect(signal!.reason).toBeInstanceOf(TaskCancelledError);
    await clock.flush();
    expect(handle.state).toBe('cancelled');
    await expect(handle.result).rejects.toBeInstanceOf(TaskCancelledError);
    expect(scheduler.running).toBe(0);
  });

  it('applies an abort that came before the work read its signal', async () => {
    const { clock, scheduler } = setup();
    let aborted: boolean | undefined;
    const handle = await scheduler.schedule({
      work: async (ctx) => {
        await new Promise<void>((resolve) => ctx.clock!.setTimer(resolve, 10));
        aborted = ctx.signal.aborted;
        return 'ignored the signal';
      },
    });
    await clock.advance(0);
    await handle.cancel();
    await clock.advance(10);
    expect(aborted).toBe(true);
    expect(handle.state).toBe('cancelled');
  });
});

describe('Scheduler: RunDeferred and RunAbandoned', () => {
  it('RunDeferred puts the task back at runAt with attempt + 1, result pending', async () => {
    const { clock, scheduler } = setup();
    const attempts: number[] = [];
    const handle = await scheduler.schedule({
      work: (ctx) => {
        attempts.push(ctx.attempt);
        if (ctx.attempt < 3) throw new RunDeferred(new Date(clock.now() + 1000));
        return 'third time';
      },
    });
    let settled = false;
    void handle.result.then(() => (settled = true));
    await clock.advance(0);
    expect(handle.state).toBe('scheduled');
    expect(handle.runAt.getTime()).toBe(clock.now() + 1000);
    expect(scheduler.get(handle.taskId)).toBe(handle);
    await clock.advance(999);
    expect(attempts).toEqual([1]);
    expect(settled).toBe(false);
    await clock.advance(1);
    expect(attempts).toEqual([1, 2]);
    await clock.advance(1000);
    expect(attempts).toEqual([1, 2, 3]);
    await expect(handle.result).resolves.toBe('third time');
  });

  it('RunAbandoned ends the task cancelled with that error', async () => {
    const { clock, scheduler } = setup();
    const handle = await scheduler.schedule({ work: () => Promise.reject(new RunAbandoned('another node won')) });
    await clock.advance(0);
    expect(handle.state).toBe('cancelled');
    await expect(handle.result).rejects.toBeInstanceOf(RunAbandoned);
  });
});

describe('Scheduler: stop', () => {
  it('emits scheduler:stopping when stop() is called, before running work ends, and scheduler:stopped after', async () => {
    const { clock, scheduler } = setup();
    const seen: string[] = [];
    scheduler.events.on('scheduler:stopping', ({ timeoutMs }) => seen.push(`stopping ${timeoutMs}`));
    scheduler.events.on('scheduler:stopped', () => seen.push('stopped'));
    let finish!: () => void;
    await scheduler.schedule({ work: () => new Promise<void>((resolve) => (finish = resolve)) });
    await clock.advance(0);
    const stopping = scheduler.stop({ timeoutMs: 1000 });
    expect(seen).toEqual(['stopping 1000']);
    finish();
    await stopping;
    expect(seen).toEqual(['stopping 1000', 'stopped']);
  });

  it('waits for running work, then aborts a stuck run with SchedulerStoppedError and returns after the grace', async () => {
    const { clock, scheduler } = setup({ stopGraceMs: 500 });
    let signal: AbortSignal | undefined;
    const stuck = await scheduler.schedule({
      work: (ctx) => {
        signal = ctx.signal;
        return new Promise(() => {}); // ignores its signal forever
      },
    });
    const finishing = await scheduler.schedule({ work: sleepWork(300, 'finished') });
    let laterRan = false;
    await scheduler.schedule({ delayMs: 100, work: () => void (laterRan = true) });
    await clock.advance(0);
    expect(scheduler.running).toBe(2);
    let stopped = false;
    const stopping = scheduler.stop({ timeoutMs: 1000 }).then(() => (stopped = true));
    await clock.advance(999);
    expect(stopped).toBe(false);
    expect(signal!.aborted).toBe(false);
    expect(laterRan).toBe(false); // due during stop: stays queued
    await expect(finishing.result).resolves.toBe('finished');
    await clock.advance(1);
    expect(signal!.aborted).toBe(true);
    expect(signal!.reason).toBeInstanceOf(SchedulerStoppedError);
    expect(stopped).toBe(false);
    await clock.advance(500);
    expect(stopped).toBe(true);
    await stopping;
    expect(stuck.state).toBe('running');
    expect(scheduler.pending).toBe(1);
    expect(clock.pendingTimers).toBe(0);
  });

  it('resolves at once with no running work, and refuses schedule() and start() after', async () => {
    const { clock, scheduler } = setup();
    await scheduler.schedule({ delayMs: 10, work: () => {} });
    await scheduler.stop();
    expect(clock.pendingTimers).toBe(0);
    await expect(scheduler.schedule({ work: () => {} })).rejects.toBeInstanceOf(SchedulerStoppedError);
    expect(scheduler.pending).toBe(1);
    expect(() => scheduler.start()).toThrow(SchedulerStoppedError);
    expect(scheduler.stop()).toBe(scheduler.stop());
  });

  it('refuses a task that reaches the core after stop() began (async middleware)', async () => {
    const clock = new VirtualClock();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const slow: Middleware = (next) => async (ctx) => {
      await gate;
      return next(ctx);
    };
    const scheduler = new Scheduler({ clock }).use(slow);
    const pending = scheduler.schedule({ work: () => {} });
    await scheduler.stop();
    release();
    await expect(pending).rejects.toBeInstanceOf(SchedulerStoppedError);
    expect(scheduler.pending).toBe(0);
  });
});
