import { InvalidInputError, RunDeferred, TaskCancelledError, UnrecoverableError, type WorkFn } from '@horae/core';
import { VirtualClock } from '@horae/core/testing';
import {
  DurableWriter,
  InvalidStateError,
  LeaseKeeper,
  LeaseLostError,
  MemoryRepository,
  RepositoryError,
  UnknownWorkError,
  WorkRegistry,
  decideSync,
  retryDelay,
  type LocalTaskView,
  type RepositoryErrorReport,
  type TaskInfo,
} from '@horae/storage';
import { describe, expect, it } from 'vitest';

const noop: WorkFn = () => undefined;

describe('WorkRegistry', () => {
  it('registers works, refuses duplicates and bad options, and looks them up', () => {
    const registry = new WorkRegistry().register('a', noop).register('b', noop, { maxAttempts: 3, timeoutMs: 100 });
    expect(registry.workIds()).toEqual(['a', 'b']);
    expect(registry.has('a')).toBe(true);
    expect(registry.get('b').options.maxAttempts).toBe(3);
    expect(() => registry.register('a', noop)).toThrow(InvalidInputError);
    expect(() => registry.register('', noop)).toThrow(InvalidInputError);
    expect(() => registry.register('c', 'nope' as never)).toThrow(InvalidInputError);
    expect(() => registry.register('c', noop, { maxAttempts: 0 })).toThrow(InvalidInputError);
    expect(() => registry.register('c', noop, { timeoutMs: -1 })).toThrow(InvalidInputError);
    expect(() => registry.register('c', noop, { validate: 42 as never })).toThrow(InvalidInputError);
    expect(() => registry.get('zzz')).toThrow(UnknownWorkError);
  });

  it('validates params with a function (returning or not) or a parse() object, then requires JSON', () => {
    const registry = new WorkRegistry()
      .register('checks', noop, {
        validate: (p) => {
          if (p !== 'ok') throw new Error('not ok');
        },
      })
      .register('maps', noop, { validate: (p) => ({ wrapped: p }) })
      .register('parses', noop, { validate: { parse: (p: unknown) => Number(p) } })
      .register('free', noop);
    expect(registry.validateParam('checks', 'ok')).toBe('ok');
    const error = (() => {
      try {
        registry.validateParam('checks', 'ko');
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(InvalidInputError);
    expect((error as Error).cause).toMatchObject({ message: 'not ok' });
    expect(registry.validateParam('maps', 1)).toEqual({ wrapped: 1 });
    expect(registry.validateParam('parses', '12')).toBe(12);
    expect(() => registry.validateParam('parses', 'x')).toThrow(InvalidInputError); // NaN is not JSON
    expect(registry.validateParam('free', undefined)).toBeNull();
    expect(() => registry.validateParam('free', new Map())).toThrow(InvalidInputError);
    expect(() => registry.validateParam('nope', 1)).toThrow(UnknownWorkError);
  });

  it('middleware() gives a context its registered work, and leaves others alone', async () => {
    const registry = new WorkRegistry().register('a', noop);
    const seen: unknown[] = [];
    const handler = registry.middleware()((ctx) => {
      seen.push(ctx.work);
      return undefined as never;
    });
    const { SchedulerContext } = await import('@horae/core');
    const own: WorkFn = () => 1;
    await handler(SchedulerContext.create({ workId: 'a' }));
    await handler(SchedulerContext.create({ workId: 'a', work: own }));
    await handler(SchedulerContext.create({ workId: 'unknown' }));
    expect(seen).toEqual([noop, own, undefined]);
  });
});

describe('retryDelay', () => {
  it('retries while attempts are left, with the given backoff', () => {
    expect(retryDelay(1, 3, new Error('x'), (attempt) => attempt * 10)).toBe(10);
    expect(retryDelay(2, 3, new Error('x'), (attempt) => attempt * 10)).toBe(20);
    expect(retryDelay(3, 3, new Error('x'), () => 10)).toBeNull();
  });

  it('never retries an UnrecoverableError, a cancel or a deferral; respects isRetryable', () => {
    expect(retryDelay(1, 5, new UnrecoverableError('no'), () => 1)).toBeNull();
    expect(retryDelay(1, 5, new TaskCancelledError(), () => 1)).toBeNull();
    expect(retryDelay(1, 5, new RunDeferred(new Date()), () => 1)).toBeNull();
    expect(retryDelay(1, 5, new Error('transient'), { backoff: () => 7, isRetryable: (e) => (e as Error).message === 'transient' })).toBe(7);
    expect(retryDelay(1, 5, new Error('fatal'), { backoff: () => 7, isRetryable: (e) => (e as Error).message === 'transient' })).toBeNull();
  });

  it('defaults to exponential backoff with jitter in [d/2, d], and treats a broken backoff as no retry', () => {
    for (let i = 0; i < 20; i++) {
      const d = retryDelay(3, 10, new Error('x'), undefined)!;
      expect(d).toBeGreaterThanOrEqual(2000);
      expect(d).toBeLessThanOrEqual(4000);
    }
    expect(retryDelay(1, 3, new Error('x'), () => -5)).toBeNull();
  });
});

describe('DurableWriter', () => {
  it('retries a RepositoryError with growing delays until the call lands, reporting each failure', async () => {
    const clock = new VirtualClock();
    const reports: RepositoryErrorReport[] = [];
    const writer = new DurableWriter({ clock, backoff: (attempt) => attempt * 100, onError: (r) => reports.push(r) });
    let calls = 0;
    const result = writer.run('markAsDone', 't1', () => {
      calls++;
      return calls < 4 ? Promise.reject(new RepositoryError('down')) : Promise.resolve('landed');
    });
    await clock.advance(0);
    expect(calls).toBe(1);
    expect(writer.inFlight).toBe(1);
    await clock.advance(100);
    expect(calls).toBe(2);
    await clock.advance(200);
    expect(calls).toBe(3);
    await clock.advance(300);
    await expect(result).resolves.toBe('landed');
    expect(reports.map((r) => [r.operation, r.taskId, r.attempt, r.retryInMs])).toEqual([
      ['markAsDone', 't1', 1, 100],
      ['markAsDone', 't1', 2, 200],
      ['markAsDone', 't1', 3, 300],
    ]);
    await writer.idle();
    expect(writer.inFlight).toBe(0);
  });

  it('throws answers (LeaseLost, InvalidState, anything else) at once, without retrying', async () => {
    const clock = new VirtualClock();
    const writer = new DurableWriter({ clock });
    let calls = 0;
    await expect(writer.run('markAsDone', 't', () => (calls++, Promise.reject(new LeaseLostError('t'))))).rejects.toBeInstanceOf(LeaseLostError);
    await expect(writer.run('update', 't', () => (calls++, Promise.reject(new InvalidStateError('t', 'Done', 'update'))))).rejects.toBeInstanceOf(InvalidStateError);
    await expect(writer.run('x', 't', () => (calls++, Promise.reject(new TypeError('bug'))))).rejects.toBeInstanceOf(TypeError);
    expect(calls).toBe(3);
  });
});

describe('LeaseKeeper', () => {
  async function claimed(): Promise<{ clock: VirtualClock; repo: MemoryRepository; task: TaskInfo }> {
    const clock = new VirtualClock();
    const repo = new MemoryRepository({ clock });
    const { task } = await repo.insert({ workId: 'w', scheduledAt: new Date(clock.now()) });
    const held = await repo.claim(task.id, { owner: 'me', leaseMs: 3000 });
    return { clock, repo, task: held! };
  }

  it('renews every third of the lease', async () => {
    const { clock, repo, task } = await claimed();
    const keeper = new LeaseKeeper({ repository: repo, clock, taskId: task.id, token: task.lease!.token, leaseMs: 3000, onLost: () => undefined });
    keeper.start();
    await clock.advance(999);
    expect((await repo.getById(task.id)).lease!.until.getTime()).toBe(task.lease!.until.getTime());
    await clock.advance(1);
    expect((await repo.getById(task.id)).lease!.until.getTime()).toBe(clock.now() + 3000);
    await clock.advance(10_000);
    expect((await repo.getById(task.id)).lease!.until.getTime()).toBeGreaterThan(clock.now());
    keeper.stop();
  });

  it('reports a refused renewal at once', async () => {
    const { clock, repo, task } = await claimed();
    const lost: LeaseLostError[] = [];
    const keeper = new LeaseKeeper({ repository: repo, clock, taskId: task.id, token: task.lease!.token, leaseMs: 3000, onLost: (e) => lost.push(e) });
    keeper.start();
    await repo.markAsCancelled(task.id);
    await clock.advance(1000);
    expect(lost).toHaveLength(1);
    await clock.advance(10_000);
    expect(lost).toHaveLength(1);
  });

  it('keeps trying through an outage, and gives up when the lease would have expired', async () => {
    const { clock, repo, task } = await claimed();
    const lost: LeaseLostError[] = [];
    const failures: number[] = [];
    const keeper = new LeaseKeeper({
      repository: repo,
      clock,
      taskId: task.id,
      token: task.lease!.token,
      leaseMs: 3000,
      onLost: (e) => lost.push(e),
      onRepositoryError: (_, attempt) => failures.push(attempt),
    });
    keeper.start();
    repo.setUnavailable(true);
    await clock.advance(2999);
    expect(lost).toHaveLength(0);
    expect(failures.length).toBeGreaterThan(1);
    await clock.advance(1);
    expect(lost).toHaveLength(1);
    expect(lost[0]!.message).toMatch(/could not be renewed/);
  });

  it('an outage shorter than the lease is ridden out', async () => {
    const { clock, repo, task } = await claimed();
    const lost: LeaseLostError[] = [];
    const keeper = new LeaseKeeper({ repository: repo, clock, taskId: task.id, token: task.lease!.token, leaseMs: 3000, onLost: (e) => lost.push(e) });
    keeper.start();
    repo.setUnavailable(true);
    await clock.advance(2000);
    repo.setUnavailable(false);
    await clock.advance(10_000);
    expect(lost).toHaveLength(0);
    keeper.stop();
  });
});

describe('decideSync', () => {
  const now = Date.UTC(2026, 0, 1);
  const context = { nodeId: 'me', windowEnd: now + 3_600_000, knowsWork: (workId: string) => workId !== 'unknown' };
  const task = (patch: Partial<TaskInfo> = {}): TaskInfo => ({
    id: 't',
    workId: 'w',
    param: null,
    scheduledAt: new Date(now + 1000),
    state: 'Initialized',
    priority: 0,
    attempt: 0,
    claims: 0,
    unstartedClaims: 0,
    maxAttempts: 1,
    lease: null,
    lastError: null,
    uniqueKey: null,
    progress: null,
    createdAt: new Date(now),
    updatedAt: new Date(now),
    kind: 'scheduled',
    scheduleName: null,
    ...patch,
  });
  const local = (phase: LocalTaskView['phase'], patch: Partial<LocalTaskView> = {}): LocalTaskView => ({ phase, scheduledAt: now + 1000, priority: 0, ...patch });
  const lease = (owner: string) => ({ owner, until: new Date(now + 30_000), token: 'tok', started: true });

  it.each<[string, TaskInfo, LocalTaskView | undefined, string]>([
    ['a new Initialized task in the window is scheduled', task(), undefined, 'schedule'],
    ['one beyond the window is left in the repository', task({ scheduledAt: new Date(now + 7_200_000) }), undefined, 'ignore'],
    ['an unknown workId is reported', task({ workId: 'unknown' }), undefined, 'unknown-work'],
    ['a task that is not Initialized and not held is ignored', task({ state: 'Working', lease: lease('x') }), undefined, 'ignore'],
    ['a held task that did not change is ignored', task(), local('scheduled'), 'ignore'],
    ['a held task whose runAt changed is rescheduled', task({ scheduledAt: new Date(now + 5000) }), local('scheduled'), 'reschedule'],
    ['a held task whose priority changed is rescheduled', task({ priority: 10 }), local('scheduled'), 'reschedule'],
    ['a held task claimed by another node is dropped', task({ state: 'Working', lease: lease('other') }), local('scheduled'), 'drop-claimed'],
    ['a held task claimed by this node is ignored', task({ state: 'Working', lease: lease('me') }), local('scheduled'), 'ignore'],
    ['a held task that ended elsewhere is dropped', task({ state: 'Done' }), local('scheduled'), 'drop-ended'],
    ['a task this node runs is never cancelled by what it reads (its own Working row)', task({ state: 'Working', lease: lease('me') }), local('running'), 'ignore'],
    ['a task this node runs that was released elsewhere is left to its lease', task(), local('running'), 'ignore'],
    ['a task this node runs that another node cancelled is aborted', task({ state: 'Cancelled' }), local('running'), 'abort-run'],
    ['a task being inserted is left to its insert', task(), local('inserting'), 'ignore'],
    ['a remote task that ended settles its handle', task({ state: 'Failed' }), local('remote'), 'settle-remote'],
    ['a remote task that came back to Initialized is scheduled here', task(), local('remote'), 'schedule'],
  ])('%s', (_, row, held, expected) => {
    expect(decideSync(row, held, context)).toBe(expected);
  });
});
