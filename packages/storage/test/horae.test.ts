import { HoraeError, InvalidInputError, type Middleware } from '@horae/core';
import { nextEvent } from '@horae/core/testing';
import { WorkRegistry, createHorae, type Repository } from '@horae/storage';
import { afterEach, describe, expect, it } from 'vitest';
import { horaeOn, stopAll, world } from './horae-helpers.js';
import type { Horae , MemoryRepository} from '@horae/storage';

const started: Horae[] = [];
afterEach(() => stopAll(started.splice(0)));

async function startHorae(horae: Horae): Promise<Horae> {
  started.push(horae);
  await horae.start();
  return horae;
}

/** A repository without the ScheduleStore capability: the MemoryRepository with its schedule methods hidden. */
function withoutSchedules(repo: MemoryRepository): Repository {
  const hidden = new Set<PropertyKey>(['upsertSchedule', 'getSchedule', 'listSchedules', 'setSchedulePaused', 'removeSchedule', 'pullScheduleForward', 'advanceSchedule']);
  return new Proxy(repo, {
    get(target, prop) {
      if (hidden.has(prop)) return undefined;
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

describe('createHorae: options and wiring', () => {
  it('refuses a missing repository or registry, and an unknown mode', () => {
    const { repo } = world();
    expect(() => createHorae({ repository: repo } as never)).toThrow(InvalidInputError);
    expect(() => createHorae({ registry: new WorkRegistry() } as never)).toThrow(InvalidInputError);
    expect(() => createHorae({ repository: repo, registry: new WorkRegistry(), mode: 'cluster' as never })).toThrow(/mode/);
    expect(() => createHorae({ repository: repo, registry: new WorkRegistry(), scheduleTickMs: -1 })).toThrow(/scheduleTickMs/);
  });

  it('is single-node by default, multi-node when a nodeId is given (or when told)', () => {
    const { repo } = world();
    const registry = new WorkRegistry();
    expect(createHorae({ repository: repo, registry }).mode).toBe('single-node');
    const multi = createHorae({ repository: repo, registry, nodeId: 'node-a' });
    expect(multi.mode).toBe('multi-node');
    expect(multi.nodeId).toBe('node-a');
    expect(createHorae({ repository: repo, registry, mode: 'multi-node' }).mode).toBe('multi-node');
    expect(createHorae({ repository: repo, registry, nodeId: 'x', mode: 'single-node' }).mode).toBe('single-node');
  });

  it('throws a clear HoraeError from `schedules` (and recurring schedule()) when the repository does not persist schedules', async () => {
    const { clock, repo } = world();
    const horae = horaeOn(clock, repo, new WorkRegistry().register('w', () => 1), { repository: withoutSchedules(repo) });
    expect(() => horae.schedules).toThrow(HoraeError);
    expect(() => horae.schedules).toThrow(/ScheduleStore/);
    await startHorae(horae); // no schedule loop, but everything else works
    await expect(horae.schedule({ name: 'n', workId: 'w', every: 1000 })).rejects.toMatchObject({ code: 'INVALID_STATE' });
    const handle = await horae.schedule({ workId: 'w' });
    await clock.advance(0);
    expect(await horae.getTask(handle.taskId)).toMatchObject({ state: 'Done' });
  });

  it('installs the registry middleware first, the user middlewares next, storage last', async () => {
    const { clock, repo } = world();
    const seen: Array<{ hasWork: boolean; taskId: string | undefined }> = [];
    const spy: Middleware = (next) => (ctx) => {
      seen.push({ hasWork: ctx.work !== undefined, taskId: ctx.taskId });
      return next(ctx);
    };
    const order: string[] = [];
    const wrap: Middleware = (next) => (ctx) => next(ctx.withWork(async (wctx) => {
      // Before storage: this wrapper runs inside storage's, after the claim.
      order.push(`wrapper sees ${(await repo.getById(wctx.taskId)).state}`);
      return ctx.work!(wctx);
    }));
    const horae = await startHorae(horaeOn(clock, repo, new WorkRegistry().register('w', () => order.push('work')), { middlewares: [spy, wrap] }));
    const handle = await horae.schedule({ workId: 'w' });
    await clock.advance(0);
    await handle.result;
    // The user middleware saw the registered work (registry.middleware() ran first) and no task id yet (storage after it).
    expect(seen).toEqual([{ hasWork: true, taskId: undefined }]);
    expect(order).toEqual(['wrapper sees Working', 'work']);
  });
});

describe('Horae lifecycle', () => {
  it('runs nothing before start(), runs after it, and stop() stops everything; start after stop is refused', async () => {
    const { clock, repo } = world();
    const runs: string[] = [];
    const horae = horaeOn(clock, repo, new WorkRegistry().register('w', (ctx) => void runs.push(ctx.taskId)));
    started.push(horae);
    const early = await horae.schedule({ workId: 'w' });
    await clock.advance(5000);
    expect(runs).toEqual([]);
    expect(await horae.getTask(early.taskId)).toMatchObject({ state: 'Initialized' });
    expect(horae.started).toBe(false);
    await horae.start();
    expect(horae.started).toBe(true);
    expect(horae.start()).toBe(horae.start()); // the same promise
    await clock.advance(0);
    expect(runs).toEqual([early.taskId]);
    const stopping = horae.stop();
    expect(horae.stop()).toBe(stopping);
    await stopping;
    expect(horae.started).toBe(false);
    expect(horae.scheduler.started).toBe(false);
    await expect(horae.start()).rejects.toMatchObject({ code: 'INVALID_STATE' });
    await expect(horae.schedule({ workId: 'w' })).rejects.toMatchObject({ code: 'SCHEDULER_STOPPED' });
    // No loop is left armed on the clock.
    expect(clock.pendingTimers).toBe(0);
  });

  it('stop() before start() stops cleanly, and a later start() is refused', async () => {
    const { clock, repo } = world();
    const horae = horaeOn(clock, repo, new WorkRegistry().register('w', () => 1));
    await horae.stop();
    await expect(horae.start()).rejects.toMatchObject({ code: 'INVALID_STATE' });
    expect(clock.pendingTimers).toBe(0);
  });

  it('stop() called while start() restores waits for it, then stops everything', async () => {
    const { clock, repo } = world();
    const horae = horaeOn(clock, repo, new WorkRegistry().register('w', () => 1));
    const starting = horae.start();
    const stopping = horae.stop();
    await starting;
    await stopping;
    expect(horae.started).toBe(false);
    expect(horae.scheduler.started).toBe(false);
    expect(clock.pendingTimers).toBe(0);
  });

  it('stop() lets running work finish within timeoutMs, then releases it for the next start', async () => {
    const { clock, repo } = world();
    const registry = new WorkRegistry().register('slow', (ctx) => new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason as Error))));
    const horae = await startHorae(horaeOn(clock, repo, registry));
    const handle = await horae.schedule({ workId: 'slow' });
    await clock.advance(0);
    expect(await horae.getTask(handle.taskId)).toMatchObject({ state: 'Working', attempt: 1 });
    const stopping = horae.stop({ timeoutMs: 1000 });
    await clock.advance(1000);
    await clock.advance(200);
    await stopping;
    // Released, its attempt refunded: the next start runs it again.
    expect(await repo.getById(handle.taskId)).toMatchObject({ state: 'Initialized', attempt: 0 });
  });

  it('restores pending tasks at the next start (a restart)', async () => {
    const { clock, repo } = world();
    const runs: string[] = [];
    const registry = new WorkRegistry().register('w', (ctx) => void runs.push(ctx.taskId));
    const first = await startHorae(horaeOn(clock, repo, registry));
    const handle = await first.schedule({ workId: 'w', delayMs: 10_000 });
    await first.stop();
    await clock.advance(20_000);
    expect(runs).toEqual([]);
    await startHorae(horaeOn(clock, repo.openPeer(), registry));
    await clock.advance(0);
    expect(runs).toEqual([handle.taskId]);
    expect(await repo.getById(handle.taskId)).toMatchObject({ state: 'Done' });
  });
});

describe('Horae.schedule: one API for every job kind', () => {
  it('run now, run at, run after: tasks with kind immediate / scheduled', async () => {
    const { clock, repo } = world();
    const horae = await startHorae(horaeOn(clock, repo, new WorkRegistry().register('w', () => 'ok')));
    const now = await horae.schedule({ workId: 'w', param: { n: 1 } });
    const at = await horae.schedule({ workId: 'w', runAt: new Date(clock.now() + 60_000) });
    const after = await horae.schedule({ workId: 'w', delayMs: 30_000 });
    expect(await horae.getTask(now.taskId)).toMatchObject({ kind: 'immediate', scheduleName: null, param: { n: 1 } });
    expect(await horae.getTask(at.taskId)).toMatchObject({ kind: 'scheduled', scheduledAt: new Date(clock.now() + 60_000) });
    expect(await horae.getTask(after.taskId)).toMatchObject({ kind: 'scheduled', scheduledAt: new Date(clock.now() + 30_000) });
    await clock.advance(60_000);
    for (const handle of [now, at, after]) expect(await horae.getTask(handle.taskId)).toMatchObject({ state: 'Done' });
  });

  it('every / cron: a persisted schedule whose occurrences are periodic tasks, materialized by the loop', async () => {
    const { clock, repo } = world();
    const runs: Array<{ taskId: string; at: number }> = [];
    const horae = await startHorae(horaeOn(clock, repo, new WorkRegistry().register('w', (ctx) => void runs.push({ taskId: ctx.taskId, at: clock.now() }))));
    const every = await horae.schedule({ name: 'tick', workId: 'w', every: 10_000, param: { x: 1 } });
    expect(every).toMatchObject({ name: 'tick', spec: { everyMs: 10_000 }, workId: 'w', param: { x: 1 }, nextRunAt: new Date(clock.now() + 10_000) });
    const cron = await horae.schedule({ name: 'minutely', workId: 'w', cron: '* * * * *', timezone: 'Europe/Berlin', overlap: 'allow' });
    expect(cron).toMatchObject({ name: 'minutely', spec: { cron: '* * * * *', timezone: 'Europe/Berlin' }, overlap: 'allow' });
    // Re-scheduling the same name updates the schedule (idempotent when unchanged).
    expect(await horae.schedule({ name: 'tick', workId: 'w', every: 10_000, param: { x: 1 } })).toEqual(every);
    expect((await horae.schedules.list()).map((s) => s.name)).toEqual(['minutely', 'tick']);

    for (let i = 0; i < 4; i++) await clock.advance(10_000);
    const tasks = (await repo.list({ limit: 100 })).tasks.filter((t) => t.scheduleName === 'tick');
    expect(tasks.map((t) => t.kind)).toEqual(['periodic', 'periodic', 'periodic', 'periodic']);
    expect(tasks.every((t) => t.state === 'Done')).toBe(true);
    expect(runs.filter((r) => tasks.some((t) => t.id === r.taskId))).toHaveLength(4);
    // Each ran at (or within one loop period after) its occurrence time.
    for (const task of tasks) {
      const run = runs.find((r) => r.taskId === task.id)!;
      expect(run.at - task.scheduledAt.getTime()).toBeLessThanOrEqual(1000);
    }
    for (let i = 0; i < 4; i++) await clock.advance(30_000);
    const minutely = (await repo.list({ limit: 1000 })).tasks.filter((t) => t.scheduleName === 'minutely');
    expect(minutely.filter((t) => t.state === 'Done').length).toBeGreaterThanOrEqual(2);
    expect(minutely.every((t) => t.kind === 'periodic' && t.scheduledAt.getUTCSeconds() === 0)).toBe(true);
  });

  it('refuses a recurring schedule without a name, with both every and cron, or with one-time fields; nothing is written', async () => {
    const { clock, repo } = world();
    const horae = await startHorae(horaeOn(clock, repo, new WorkRegistry().register('w', () => 1)));
    await expect(horae.schedule({ workId: 'w', every: 1000 } as never)).rejects.toThrow(/name/);
    await expect(horae.schedule({ name: 'a', workId: 'w', every: 1000, cron: '* * * * *' } as never)).rejects.toThrow(/either/);
    await expect(horae.schedule({ name: 'a', workId: 'w', every: 1000, delayMs: 5 } as never)).rejects.toThrow(/delayMs/);
    await expect(horae.schedule({ name: 'a', workId: 'w', cron: '61 * * * *' })).rejects.toThrow(InvalidInputError);
    await expect(horae.schedule({ name: 'a', workId: 'nope', every: 1000 })).rejects.toThrow(InvalidInputError);
    await expect(horae.schedule({ workId: 'nope' })).rejects.toMatchObject({ code: 'UNKNOWN_WORK' });
    await expect(horae.schedule({ name: 'one-time?', workId: 'w', delayMs: 5 } as never)).rejects.toThrow(/every` or `cron/);
    expect(await horae.schedules.list()).toEqual([]);
    expect((await repo.list()).tasks).toEqual([]);
  });

  it('two Horae nodes on one repository: each occurrence of a schedule is materialized and run exactly once', async () => {
    const { clock, repo } = world();
    const runs = new Map<string, string[]>();
    const registry = (node: string): WorkRegistry =>
      new WorkRegistry().register('w', (ctx) => void runs.set(ctx.taskId, [...(runs.get(ctx.taskId) ?? []), node]));
    const ticks = { a: 0, b: 0 };
    const a = await startHorae(horaeOn(clock, repo, registry('a'), { nodeId: 'a', leaseMs: 9000 }));
    const b = await startHorae(horaeOn(clock, repo.openPeer(), registry('b'), { nodeId: 'b', leaseMs: 9000 }));
    a.horaeEvents.on('schedules:ticked', () => ticks.a++);
    b.horaeEvents.on('schedules:ticked', () => ticks.b++);
    await a.schedule({ name: 'every-2s', workId: 'w', every: 2000 });
    await b.schedule({ name: 'every-2s', workId: 'w', every: 2000 }); // the other node registers it too: one row
    for (let i = 0; i < 20; i++) await clock.advance(1000);
    expect(ticks.a).toBeGreaterThanOrEqual(20);
    expect(ticks.b).toBeGreaterThanOrEqual(20);
    const tasks = (await repo.list({ limit: 100 })).tasks;
    expect(tasks.length).toBeGreaterThanOrEqual(9);
    // One task per occurrence time, each run exactly once, by either node.
    expect(new Set(tasks.map((t) => t.scheduledAt.getTime())).size).toBe(tasks.length);
    for (const task of tasks) {
      if (task.state === 'Done') expect(runs.get(task.id)).toHaveLength(1);
    }
    expect(tasks.filter((t) => t.state === 'Done').length).toBeGreaterThanOrEqual(9);
    expect([...runs.values()].every((nodes) => nodes.length === 1)).toBe(true);
  });

  it('cancel(taskId) from another node: a scheduled task never starts', async () => {
    const { clock, repo } = world();
    const runs: string[] = [];
    const registry = new WorkRegistry().register('w', (ctx) => void runs.push(ctx.taskId));
    const a = await startHorae(horaeOn(clock, repo, registry, { nodeId: 'a' }));
    const b = await startHorae(horaeOn(clock, repo.openPeer(), registry, { nodeId: 'b' }));
    const handle = await a.schedule({ workId: 'w', delayMs: 5000 });
    await clock.advance(1000);
    expect(await b.cancel(handle.taskId, 'not needed')).toBe(true);
    expect(await b.cancel(handle.taskId)).toBe(false);
    await clock.advance(10_000);
    expect(runs).toEqual([]);
    expect(await a.getTask(handle.taskId)).toMatchObject({ state: 'Cancelled' });
    await expect(handle.result).rejects.toMatchObject({ code: 'CANCELLED' });
  });

  it('listAttempts(id) reads the execution history of a task', async () => {
    const { clock, repo } = world();
    let calls = 0;
    const registry = new WorkRegistry().register('flaky', () => {
      if (++calls === 1) throw new Error('first try fails');
      return 'ok';
    }, { maxAttempts: 2, retry: () => 100 });
    const horae = await startHorae(horaeOn(clock, repo, registry, { nodeId: 'n1' }));
    const handle = await horae.schedule({ workId: 'flaky' });
    await clock.advance(0);
    await clock.advance(100);
    await expect(handle.result).resolves.toBe('ok');
    const attempts = await horae.listAttempts(handle.taskId);
    expect(attempts.map((a) => [a.run, a.node, a.outcome])).toEqual([
      [1, 'n1', 'retried'],
      [2, 'n1', 'succeeded'],
    ]);
    expect(attempts[0]!.error).toMatchObject({ message: 'first try fails' });
  });

  it('tickSchedules() materializes a schedule pulled forward without waiting for the loop', async () => {
    const { clock, repo } = world();
    const horae = await startHorae(horaeOn(clock, repo, new WorkRegistry().register('w', () => 1), { scheduleTickMs: 3_600_000 }));
    await horae.schedule({ name: 'daily', workId: 'w', cron: '0 3 * * *' });
    await horae.schedules.runSoon('daily');
    const ticked = nextEvent(horae.horaeEvents, 'schedules:ticked');
    await horae.tickSchedules();
    expect((await ticked).created).toBe(1);
    await clock.advance(0);
    expect((await repo.list()).tasks).toMatchObject([{ scheduleName: 'daily', kind: 'periodic', state: 'Done' }]);
  });
});

describe('Horae event triggers, per-work limits and stall timeouts', () => {
  it('emit → a durable task in the repository, run once by whichever node claims it', async () => {
    const { clock, repo } = world();
    const runs: Array<{ node: string; param: unknown }> = [];
    const registry = (node: string): WorkRegistry => new WorkRegistry().register('welcome', (ctx) => void runs.push({ node, param: ctx.param }));
    const a = await startHorae(horaeOn(clock, repo, registry('a'), { nodeId: 'a' }));
    const b = await startHorae(horaeOn(clock, repo.openPeer(), registry('b'), { nodeId: 'b' }));
    for (const node of [a, b]) node.onEvent<{ userId: string }>('user.signed-up', { workId: 'welcome', param: (p) => ({ userId: p.userId }), delayMs: 2000 });
    expect(await a.emit('nobody.listens', {})).toEqual([]);
    const [handle] = await a.emit('user.signed-up', { userId: 'u1' });
    // Durable at once: the row is there before it runs.
    expect(await repo.getById(handle!.taskId)).toMatchObject({ state: 'Initialized', workId: 'welcome', param: { userId: 'u1' }, kind: 'scheduled' });
    await clock.advance(1000); // B's sync holds it too
    await clock.advance(1000);
    await clock.advance(1000);
    expect(runs).toHaveLength(1);
    expect(runs[0]!.param).toEqual({ userId: 'u1' });
    expect(await repo.getById(handle!.taskId)).toMatchObject({ state: 'Done', attempt: 1 });
  });

  it('an emitted task survives a restart: stored, then run by the next start', async () => {
    const { clock, repo } = world();
    const runs: string[] = [];
    const registry = new WorkRegistry().register('w', (ctx) => void runs.push(ctx.taskId));
    const first = await startHorae(horaeOn(clock, repo, registry));
    first.onEvent('later', { workId: 'w', delayMs: 60_000 });
    const [handle] = await first.emit('later');
    await first.stop();
    await startHorae(horaeOn(clock, repo.openPeer(), registry));
    await clock.advance(60_000);
    expect(runs).toEqual([handle!.taskId]);
  });

  it('passes workConcurrency to the scheduler', async () => {
    const { clock, repo } = world();
    const gates: Array<() => void> = [];
    const registry = new WorkRegistry().register('w', () => new Promise<void>((resolve) => gates.push(resolve)));
    const horae = await startHorae(horaeOn(clock, repo, registry, { workConcurrency: { w: 2 } }));
    expect(horae.scheduler.workConcurrency('w')).toBe(2);
    for (let i = 0; i < 5; i++) await horae.schedule({ workId: 'w' });
    await clock.advance(0);
    expect(horae.scheduler.runningOf('w')).toBe(2);
    expect((await repo.countByState()).Working).toBe(2);
    for (const open of gates.splice(0)) open();
    await clock.advance(0);
    expect(horae.scheduler.runningOf('w')).toBe(2);
    expect((await repo.countByState()).Done).toBe(2);
  });

  it('stallTimeoutMs: a run whose progress does not move is interrupted with a StalledError and retried by storage', async () => {
    const { clock, repo } = world();
    const signals: unknown[] = [];
    const registry = new WorkRegistry().register('stuck-once', async (ctx) => {
      if (ctx.attempt === 1) {
        ctx.progress({ completed: 1, total: 3 });
        // Hangs: no further progress, until its signal aborts.
        await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve()));
        signals.push(ctx.signal.reason);
        return 'too late';
      }
      return 'second try';
    }, { maxAttempts: 2, retry: () => 500 });
    const horae = await startHorae(horaeOn(clock, repo, registry, { stallTimeoutMs: 5000 }));
    const handle = await horae.schedule({ workId: 'stuck-once' });
    await clock.advance(4999);
    expect(await repo.getById(handle.taskId)).toMatchObject({ state: 'Working', attempt: 1 });
    await clock.advance(1);
    expect(signals).toHaveLength(1);
    expect(signals[0]).toMatchObject({ code: 'STALLED' });
    expect(await repo.getById(handle.taskId)).toMatchObject({ state: 'Initialized', lastError: { code: 'STALLED' } });
    await clock.advance(500);
    await expect(handle.result).resolves.toBe('second try');
    expect((await horae.listAttempts(handle.taskId)).map((a) => a.outcome)).toEqual(['retried', 'succeeded']);
  });
});
