import {
  InvalidInputError,
  SchedulerStoppedError,
  WorkIdKey,
  type Middleware,
  type SchedulerContext,
  type WorkContext,
} from '@horae/core';
import { describe, expect, it } from 'vitest';
import { setup } from './helpers.js';

describe('event triggers: onEvent and emit', () => {
  it('schedules one task per emit, with the param mapped from the payload', async () => {
    const { clock, scheduler } = setup();
    const seen: unknown[] = [];
    scheduler.onEvent<{ orderId: number; secret: string }>('order.placed', {
      work: (ctx: WorkContext) => void seen.push(ctx.param),
      param: (payload, eventName) => ({ id: payload.orderId, eventName }),
    });
    const first = await scheduler.emit('order.placed', { orderId: 7, secret: 'x' });
    const second = await scheduler.emit('order.placed', { orderId: 8, secret: 'y' });
    expect(first).toHaveLength(1);
    expect(second).toHaveLength(1);
    expect(first[0]!.taskId).not.toBe(second[0]!.taskId);
    await clock.advance(0);
    expect(seen).toEqual([
      { id: 7, eventName: 'order.placed' },
      { id: 8, eventName: 'order.placed' },
    ]);
  });

  it('runs every registration of the event, in registration order, with its own options', async () => {
    const { clock, scheduler } = setup({ concurrency: 1 });
    const ran: string[] = [];
    const start = clock.now();
    scheduler.onEvent('deploy', { work: (ctx: WorkContext) => void ran.push(`notify:${String(ctx.param)}`), param: 'fixed' });
    scheduler.onEvent('deploy', { work: () => void ran.push('audit'), delayMs: 500, priority: 'high' });
    scheduler.onEvent('other', { work: () => void ran.push('other') });
    const handles = await scheduler.emit('deploy', { v: 2 });
    expect(handles.map((h) => h.runAt.getTime() - start)).toEqual([0, 500]);
    expect(handles.map((h) => h.priority)).toEqual([0, 10]);
    await clock.advance(0);
    expect(ran).toEqual(['notify:fixed']);
    await clock.advance(500);
    expect(ran).toEqual(['notify:fixed', 'audit']);
  });

  it('resolves [] for an event nobody registered, and after every registration was removed', async () => {
    const { scheduler } = setup();
    expect(await scheduler.emit('nobody.listens', { a: 1 })).toEqual([]);
    const off = scheduler.onEvent('ping', { work: () => 'pong' });
    const keep = scheduler.onEvent('ping', { work: () => 'kept' });
    expect(await scheduler.emit('ping')).toHaveLength(2);
    off();
    off(); // twice does nothing
    const after = await scheduler.emit('ping');
    expect(after).toHaveLength(1);
    keep();
    expect(await scheduler.emit('ping')).toEqual([]);
    expect(scheduler.pending).toBe(3);
  });

  it('refuses an invalid spec at registration with InvalidInputError', () => {
    const { scheduler } = setup();
    const bad: unknown[] = [
      null,
      {},
      { param: 1 },
      { work: 'nope' },
      { work: () => {}, priority: 'urgent' },
      { work: () => {}, delayMs: -1 },
      { work: () => {}, runAt: new Date('invalid') },
      { work: () => {}, runAt: 0, delayMs: 10 },
      { workId: '' },
      { work: () => {}, taskId: '' },
      { work: () => {}, stallTimeoutMs: 0 },
    ];
    for (const spec of bad) expect(() => scheduler.onEvent('e', spec as never), JSON.stringify(spec)).toThrow(InvalidInputError);
    expect(() => scheduler.onEvent('', { work: () => {} })).toThrow(InvalidInputError);
  });

  it('keeps a copy of the spec: changing the caller object later changes nothing', async () => {
    const { scheduler } = setup();
    const spec = { work: () => {}, priority: 1 };
    scheduler.onEvent('e', spec);
    spec.priority = 99;
    const [handle] = await scheduler.emit('e');
    expect(handle!.priority).toBe(1);
  });

  it('rejects with SchedulerStoppedError after stop(), for known and unknown events', async () => {
    const { scheduler } = setup();
    scheduler.onEvent('e', { work: () => {} });
    await scheduler.stop();
    await expect(scheduler.emit('e', 1)).rejects.toBeInstanceOf(SchedulerStoppedError);
    await expect(scheduler.emit('unknown')).rejects.toBeInstanceOf(SchedulerStoppedError);
    expect(scheduler.pending).toBe(0);
  });

  it('schedules nothing when a param mapper throws, and says which event', async () => {
    const { scheduler } = setup();
    scheduler.onEvent('e', { work: () => {}, param: 'ok' });
    scheduler.onEvent('e', {
      work: () => {},
      param: () => {
        throw new Error('bad payload');
      },
    });
    const rejection = scheduler.emit('e', {});
    await expect(rejection).rejects.toBeInstanceOf(InvalidInputError);
    await expect(rejection).rejects.toThrow(/"e".*bad payload/);
    await expect(rejection).rejects.toMatchObject({ cause: new Error('bad payload') });
    expect(scheduler.pending).toBe(0);
  });

  it('rejects with the first refusal while the other registrations stay scheduled', async () => {
    const { scheduler } = setup();
    scheduler.onEvent('e', { work: () => {}, delayMs: 10 });
    scheduler.onEvent('e', { work: () => {}, delayMs: 10, taskId: 'only-one' });
    expect(await scheduler.emit('e')).toHaveLength(2);
    await expect(scheduler.emit('e')).rejects.toMatchObject({ code: 'DUPLICATE_KEY' });
    expect(scheduler.pending).toBe(3);
  });

  it('sends event-triggered tasks through the whole middleware chain (the storage path)', async () => {
    const { clock, scheduler } = setup();
    // A stand-in for a storage middleware: it "persists" every request it sees and supplies the work from the
    // workId, as a WorkRegistry does; the event spec names only a workId.
    const persisted: Array<{ workId: string | undefined; param: unknown; runAtMs: number }> = [];
    const works: Record<string, (ctx: WorkContext) => unknown> = { welcome: (ctx) => `welcome ${String((ctx.param as { user: string }).user)}` };
    const storageLike: Middleware = (next) => (ctx: SchedulerContext) => {
      persisted.push({ workId: ctx.value(WorkIdKey), param: ctx.param, runAtMs: ctx.runAtMs });
      return next(ctx.work === undefined && ctx.workId !== undefined ? ctx.withWork(works[ctx.workId]!) : ctx);
    };
    scheduler.use(storageLike);
    scheduler.onEvent<{ user: string }>('user.signed-up', { workId: 'welcome', param: (p) => ({ user: p.user }), delayMs: 1000 });
    const [handle] = await scheduler.emit('user.signed-up', { user: 'ada' });
    expect(persisted).toEqual([{ workId: 'welcome', param: { user: 'ada' }, runAtMs: clock.now() + 1000 }]);
    await clock.advance(1000);
    await expect(handle!.result).resolves.toBe('welcome ada');
  });

  it('refuses a workId-only spec at emit when no middleware supplies the work', async () => {
    const { scheduler } = setup();
    scheduler.onEvent('e', { workId: 'unregistered' });
    await expect(scheduler.emit('e')).rejects.toBeInstanceOf(InvalidInputError);
    expect(scheduler.pending).toBe(0);
  });
});
