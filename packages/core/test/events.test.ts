import { RunDeferred, TaskCancelledError, TypedEventEmitter } from '@horae/core';
import { nextEvent } from '@horae/core/testing';
import { describe, expect, it } from 'vitest';
import { setup } from './helpers.js';

describe('TypedEventEmitter', () => {
  it('calls listeners in order, unsubscribes, and resolves once()', async () => {
    const events = new TypedEventEmitter<{ tick: { n: number } }>();
    const seen: string[] = [];
    const offA = events.on('tick', ({ n }) => seen.push(`a${n}`));
    events.on('tick', ({ n }) => seen.push(`b${n}`));
    const next = events.once('tick');
    events.emit('tick', { n: 1 });
    offA();
    offA();
    events.emit('tick', { n: 2 });
    expect(seen).toEqual(['a1', 'b1', 'b2']);
    await expect(next).resolves.toEqual({ n: 1 });
    expect(events.hasListeners('tick')).toBe(true);
  });

  it('keeps going when a listener throws, and reports the error', () => {
    const reported: Array<[unknown, string]> = [];
    const events = new TypedEventEmitter<{ tick: number }>({ onListenerError: (error, name) => void reported.push([error, name]) });
    const seen: number[] = [];
    events.on('tick', () => {
      throw new Error('bad listener');
    });
    events.on('tick', (n) => void seen.push(n));
    expect(() => events.emit('tick', 7)).not.toThrow();
    expect(seen).toEqual([7]);
    expect(reported).toHaveLength(1);
    expect(reported[0]![1]).toBe('tick');
    expect((reported[0]![0] as Error).message).toBe('bad listener');
  });

  it('rejects once() when its signal aborts', async () => {
    const events = new TypedEventEmitter<{ tick: number }>();
    const controller = new AbortController();
    const next = events.once('tick', controller.signal);
    controller.abort(new Error('gave up'));
    await expect(next).rejects.toThrow('gave up');
    expect(events.hasListeners('tick')).toBe(false);
  });
});

describe('Scheduler events', () => {
  it('reports a task from scheduled to success, with typed payloads', async () => {
    const { clock, scheduler } = setup();
    const names: string[] = [];
    for (const name of ['task:scheduled', 'task:start', 'task:progress', 'task:checkin', 'task:success'] as const) {
      scheduler.events.on(name, () => void names.push(name));
    }
    const scheduled = nextEvent(scheduler.events, 'task:scheduled');
    const success = nextEvent(scheduler.events, 'task:success');
    const handle = await scheduler.schedule({
      delayMs: 100,
      priority: 'high',
      work: (ctx) => {
        ctx.progress({ completed: 1, total: 1 });
        ctx.checkIn('half way');
        return 42;
      },
    });
    expect(await scheduled).toMatchObject({ taskId: handle.taskId, priority: 10 });
    await clock.advance(100);
    expect(await success).toEqual({ taskId: handle.taskId, attempt: 1, value: 42, durationMs: 0 });
    expect(names).toEqual(['task:scheduled', 'task:start', 'task:progress', 'task:checkin', 'task:success']);
  });

  it('reports failure, deferral and cancellation', async () => {
    const { clock, scheduler } = setup();
    const failure = nextEvent(scheduler.events, 'task:failure');
    const cancelled = nextEvent(scheduler.events, 'task:cancelled');
    const failing = await scheduler.schedule({ work: () => Promise.reject(new Error('boom')) });
    const other = await scheduler.schedule({ delayMs: 100, work: () => {} });
    await clock.advance(0);
    expect(await failure).toMatchObject({ taskId: failing.taskId, attempt: 1 });
    await other.cancel('bye');
    const reason = (await cancelled).reason;
    expect(reason).toBeInstanceOf(TaskCancelledError);
    expect((reason as Error).message).toBe('bye');
    const deferred = nextEvent(scheduler.events, 'task:deferred');
    const again = await scheduler.schedule({
      work: (ctx) => {
        if (ctx.attempt === 1) throw new RunDeferred(new Date(clock.now() + 500), 'later');
      },
    });
    await clock.advance(0);
    expect(await deferred).toMatchObject({ taskId: again.taskId, attempt: 1, runAt: new Date(clock.now() + 500) });
  });

  it('survives a throwing listener and reports it as listener:error', async () => {
    const { clock, scheduler } = setup();
    scheduler.events.on('task:start', () => {
      throw new Error('listener bug');
    });
    const errors = nextEvent(scheduler.events, 'listener:error');
    const handle = await scheduler.schedule({ work: () => 'still ran' });
    await clock.advance(0);
    await expect(handle.result).resolves.toBe('still ran');
    const reported = await errors;
    expect(reported.event).toBe('task:start');
    expect((reported.error as Error).message).toBe('listener bug');
  });

  it('emits scheduler:stopped', async () => {
    const { scheduler } = setup();
    const stopped = nextEvent(scheduler.events, 'scheduler:stopped');
    await scheduler.stop();
    expect(await stopped).toEqual({ aborted: 0, unfinished: 0 });
  });
});
