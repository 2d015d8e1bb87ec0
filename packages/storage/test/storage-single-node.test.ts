import { InvalidInputError, TaskCancelledError, UnrecoverableError, type Middleware, type WorkContext } from '@horae/core';
import { VirtualClock } from '@horae/core/testing';
import { MemoryRepository, RestoredTaskKey, UnknownWorkError, WorkRegistry } from '@horae/storage';
import { describe, expect, it } from 'vitest';
import { allTasks, deferred, eventNames, fixture, startNode, untilAborted } from './storage-helpers.js';

describe('singleNodeStorage: the life of a task', () => {
  it('writes the task at schedule time and marks it Done after the run', async () => {
    const { clock, repo } = fixture();
    const seen: WorkContext[] = [];
    const registry = new WorkRegistry().register('greet', (ctx) => {
      seen.push(ctx);
      return `hello ${(ctx.param as { name: string }).name}`;
    });
    const node = await startNode(repo, registry, clock);
    const handle = await node.scheduler.schedule({ workId: 'greet', param: { name: 'Ada' }, delayMs: 1000, priority: 'high' });
    const stored = await repo.getById(handle.taskId);
    expect(stored).toMatchObject({ workId: 'greet', param: { name: 'Ada' }, state: 'Initialized', priority: 10, attempt: 0, maxAttempts: 1 });
    expect(stored.scheduledAt.getTime()).toBe(clock.now() + 1000);
    expect(handle.state).toBe('scheduled');

    await clock.advance(999);
    expect(seen).toHaveLength(0);
    await clock.advance(1);
    await expect(handle.result).resolves.toBe('hello Ada');
    expect(handle.state).toBe('done');
    expect(seen[0]).toMatchObject({ taskId: handle.taskId, attempt: 1, param: { name: 'Ada' } });
    const done = await repo.getById(handle.taskId);
    expect(done).toMatchObject({ state: 'Done', attempt: 1, lease: null });
    expect(eventNames(node)).toEqual(['task:scheduled', 'task:started', 'task:succeeded']);
  });

  it('renews the lease while a long work runs, so nothing reclaims it', async () => {
    const { clock, repo } = fixture();
    const gate = deferred<string>();
    const registry = new WorkRegistry().register('long', () => gate.promise);
    const node = await startNode(repo, registry, clock, { leaseMs: 3000, syncIntervalMs: 1000 });
    const handle = await node.scheduler.schedule({ workId: 'long' });
    await clock.advance(0);
    const first = await repo.getById(handle.taskId);
    expect(first.state).toBe('Working');
    await clock.advance(20_000); // ~7 lease lengths, with reclaim passes every second
    const later = await repo.getById(handle.taskId);
    expect(later.state).toBe('Working');
    expect(later.lease?.token).toBe(first.lease?.token);
    expect(later.lease!.until.getTime()).toBeGreaterThan(clock.now());
    gate.resolve('ok');
    await expect(handle.result).resolves.toBe('ok');
    expect((await repo.getById(handle.taskId)).state).toBe('Done');
  });

  it('persists progress and check-ins, throttled', async () => {
    const { clock, repo } = fixture();
    const gate = deferred();
    const registry = new WorkRegistry().register('report', async (ctx) => {
      ctx.progress({ completed: 1, total: 10 });
      ctx.progress({ completed: 2, total: 10 });
      ctx.checkIn('halfway');
      await gate.promise;
    });
    const node = await startNode(repo, registry, clock, { progressThrottleMs: 500 });
    const handle = await node.scheduler.schedule({ workId: 'report' });
    await clock.advance(0);
    expect((await repo.getById(handle.taskId)).progress).toMatchObject({ completed: 1, total: 10 });
    await clock.advance(500);
    expect((await repo.getById(handle.taskId)).progress).toMatchObject({ completed: 2, total: 10, message: 'halfway' });
    gate.resolve();
    await handle.result;
  });
});

describe('retries (maxAttempts, backoff, custom function, UnrecoverableError)', () => {
  it('releases a failed run with backoff, records lastError, and succeeds on a later attempt', async () => {
    const { clock, repo } = fixture();
    const attempts: number[] = [];
    const registry = new WorkRegistry().register(
      'flaky',
      (ctx) => {
        attempts.push(ctx.attempt);
        if (ctx.attempt < 3) throw new Error(`boom ${ctx.attempt}`);
        return 'finally';
      },
      { maxAttempts: 3, retry: (attempt) => attempt * 1000 },
    );
    const node = await startNode(repo, registry, clock);
    const handle = await node.scheduler.schedule({ workId: 'flaky' });
    await clock.advance(0);
    let stored = await repo.getById(handle.taskId);
    expect(stored).toMatchObject({ state: 'Initialized', attempt: 1, lastError: { message: 'boom 1' } });
    expect(stored.scheduledAt.getTime()).toBe(clock.now() + 1000);
    expect(handle.state).toBe('scheduled');
    await clock.advance(1000);
    stored = await repo.getById(handle.taskId);
    expect(stored).toMatchObject({ state: 'Initialized', attempt: 2, lastError: { message: 'boom 2' } });
    expect(stored.scheduledAt.getTime()).toBe(clock.now() + 2000);
    await clock.advance(1999);
    expect(attempts).toEqual([1, 2]);
    await clock.advance(1);
    await expect(handle.result).resolves.toBe('finally');
    expect(attempts).toEqual([1, 2, 3]);
    expect(await repo.getById(handle.taskId)).toMatchObject({ state: 'Done', attempt: 3 });
    expect(eventNames(node).filter((n) => n === 'task:retried')).toHaveLength(2);
  });

  it('fails for good when attempts are spent, with the last error', async () => {
    const { clock, repo } = fixture();
    const registry = new WorkRegistry().register('bad', () => Promise.reject(new Error('always')));
    const node = await startNode(repo, registry, clock, { maxAttempts: 2, retry: () => 10 });
    const handle = await node.scheduler.schedule({ workId: 'bad' });
    await clock.advance(100);
    await expect(handle.result).rejects.toThrow('always');
    expect(handle.state).toBe('failed');
    expect(await repo.getById(handle.taskId)).toMatchObject({ state: 'Failed', attempt: 2, lastError: { message: 'always' } });
  });

  it('uses the default exponential backoff with jitter when no retry option is given', async () => {
    const { clock, repo } = fixture();
    const registry = new WorkRegistry().register('bad', () => {
      throw new Error('x');
    });
    const node = await startNode(repo, registry, clock, { maxAttempts: 3 });
    const handle = await node.scheduler.schedule({ workId: 'bad' });
    await clock.advance(0);
    const first = await repo.getById(handle.taskId);
    const delay1 = first.scheduledAt.getTime() - clock.now();
    expect(delay1).toBeGreaterThanOrEqual(500);
    expect(delay1).toBeLessThanOrEqual(1000);
    await clock.advance(delay1);
    const second = await repo.getById(handle.taskId);
    const delay2 = second.scheduledAt.getTime() - clock.now();
    expect(delay2).toBeGreaterThanOrEqual(1000);
    expect(delay2).toBeLessThanOrEqual(2000);
  });

  it('never retries an UnrecoverableError, and the per-task maxAttempts wins over the defaults', async () => {
    const { clock, repo } = fixture();
    let runs = 0;
    const registry = new WorkRegistry().register(
      'fatal',
      () => {
        runs++;
        throw new UnrecoverableError('the user is gone');
      },
      { maxAttempts: 5 },
    );
    const node = await startNode(repo, registry, clock, { retry: () => 1 });
    const handle = await node.scheduler.schedule({ workId: 'fatal', maxAttempts: 9 });
    expect((await repo.getById(handle.taskId)).maxAttempts).toBe(9);
    await clock.advance(100);
    await expect(handle.result).rejects.toBeInstanceOf(UnrecoverableError);
    expect(runs).toBe(1);
    expect(await repo.getById(handle.taskId)).toMatchObject({ state: 'Failed', attempt: 1, lastError: { name: 'UnrecoverableError' } });
  });

  it('fails a run that exceeds the registered timeoutMs with a TimeoutError', async () => {
    const { clock, repo } = fixture();
    let aborted: unknown;
    const registry = new WorkRegistry().register(
      'slow',
      untilAborted((abortReason) => (aborted = abortReason)),
      { timeoutMs: 5000 },
    );
    const node = await startNode(repo, registry, clock);
    const handle = await node.scheduler.schedule({ workId: 'slow' });
    await clock.advance(5000);
    await expect(handle.result).rejects.toMatchObject({ code: 'TIMEOUT' });
    expect(aborted).toMatchObject({ code: 'TIMEOUT' });
    expect(await repo.getById(handle.taskId)).toMatchObject({ state: 'Failed', lastError: { code: 'TIMEOUT' } });
  });
});

describe('cancel', () => {
  it('a handle cancel writes Cancelled and the task never runs', async () => {
    const { clock, repo } = fixture();
    let runs = 0;
    const registry = new WorkRegistry().register('w', () => void runs++);
    const node = await startNode(repo, registry, clock);
    const handle = await node.scheduler.schedule({ workId: 'w', delayMs: 1000 });
    await expect(handle.cancel('changed my mind')).resolves.toBe(true);
    await expect(handle.result).rejects.toBeInstanceOf(TaskCancelledError);
    expect(handle.state).toBe('cancelled');
    expect((await repo.getById(handle.taskId)).state).toBe('Cancelled');
    await clock.advance(5000);
    expect(runs).toBe(0);
    await expect(handle.cancel()).resolves.toBe(false);
    expect(node.scheduler.pending).toBe(0);
  });

  it('cancelling a running task aborts its signal and writes Cancelled', async () => {
    const { clock, repo } = fixture();
    let reason: unknown;
    const registry = new WorkRegistry().register(
      'w',
      untilAborted((abortReason) => (reason = abortReason)),
    );
    const node = await startNode(repo, registry, clock);
    const handle = await node.scheduler.schedule({ workId: 'w' });
    await clock.advance(0);
    expect(handle.state).toBe('running');
    await expect(node.storage.cancel(handle.taskId, 'stop it')).resolves.toBe(true);
    await clock.advance(0);
    expect(reason).toBeInstanceOf(TaskCancelledError);
    await expect(handle.result).rejects.toBeInstanceOf(TaskCancelledError);
    expect((await repo.getById(handle.taskId)).state).toBe('Cancelled');
    expect(eventNames(node)).not.toContain('task:lease-lost');
  });

  it('a cancel through the core handle (scheduler.get) is written too', async () => {
    const { clock, repo } = fixture();
    const registry = new WorkRegistry().register('w', () => 1);
    const node = await startNode(repo, registry, clock);
    const handle = await node.scheduler.schedule({ workId: 'w', delayMs: 1000 });
    await node.scheduler.get(handle.taskId)!.cancel();
    await clock.advance(0);
    expect((await repo.getById(handle.taskId)).state).toBe('Cancelled');
    await expect(handle.result).rejects.toBeInstanceOf(TaskCancelledError);
  });
});

describe('semantics 7: unique tasks', () => {
  it('scheduling with a uniqueKey a live task holds returns that task, and it runs once', async () => {
    const { clock, repo } = fixture();
    let runs = 0;
    const registry = new WorkRegistry().register('report', () => ++runs);
    const node = await startNode(repo, registry, clock);
    const a = await node.scheduler.schedule({ workId: 'report', uniqueKey: 'daily-2026-01-01', delayMs: 1000 });
    const b = await node.scheduler.schedule({ workId: 'report', uniqueKey: 'daily-2026-01-01', delayMs: 5000 });
    expect(b.taskId).toBe(a.taskId);
    expect(b).toBe(a);
    expect(await allTasks(repo)).toHaveLength(1);
    await clock.advance(1000);
    await expect(a.result).resolves.toBe(1);
    expect(runs).toBe(1);
    // Once the holder is terminal, the key is free again.
    const c = await node.scheduler.schedule({ workId: 'report', uniqueKey: 'daily-2026-01-01' });
    expect(c.taskId).not.toBe(a.taskId);
  });

  it('a uniqueKey held by a task stored before this process started is restored and returned', async () => {
    const { clock, repo } = fixture();
    const { task } = await repo.insert({ workId: 'report', scheduledAt: new Date(clock.now() + 10_000_000), uniqueKey: 'k' });
    let runs = 0;
    const registry = new WorkRegistry().register('report', () => ++runs);
    const node = await startNode(repo, registry, clock);
    expect(node.scheduler.pending).toBe(0); // beyond the one-hour window
    const handle = await node.scheduler.schedule({ workId: 'report', uniqueKey: 'k' });
    expect(handle.taskId).toBe(task.id);
    expect(node.scheduler.pending).toBe(1);
    await clock.advance(10_000_000);
    await expect(handle.result).resolves.toBe(1);
  });
});

describe('semantics 8: bad input gets a clear error and writes nothing', () => {
  const registry = (): WorkRegistry =>
    new WorkRegistry()
      .register('typed', () => 1, {
        validate: (p) => {
          if (typeof p !== 'object' || p === null || typeof (p as { n?: unknown }).n !== 'number') throw new Error('n must be a number');
          return p;
        },
      })
      .register('schema', () => 1, {
        validate: {
          parse: (p: unknown) => {
            if (typeof p !== 'string') throw new TypeError('expected a string');
            return p.toUpperCase();
          },
        },
      })
      .register('any', () => 1);

  it('a param that fails the work validator is refused with InvalidInputError, its cause kept', async () => {
    const { clock, repo } = fixture();
    const node = await startNode(repo, registry(), clock);
    const error = await node.scheduler.schedule({ workId: 'typed', param: { n: 'x' } }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidInputError);
    expect((error as Error).cause).toMatchObject({ message: 'n must be a number' });
    expect((await repo.countByState()).Initialized).toBe(0);
    expect(node.scheduler.pending).toBe(0);
  });

  it('a schema-like validator (parse) may transform the param; its output is stored', async () => {
    const { clock, repo } = fixture();
    const node = await startNode(repo, registry(), clock);
    await expect(node.scheduler.schedule({ workId: 'schema', param: 42 })).rejects.toBeInstanceOf(InvalidInputError);
    const handle = await node.scheduler.schedule({ workId: 'schema', param: 'abc' });
    expect((await repo.getById(handle.taskId)).param).toBe('ABC');
    expect(await allTasks(repo)).toHaveLength(1);
  });

  it('an unknown workId throws UnknownWorkError (code UNKNOWN_WORK) and writes nothing', async () => {
    const { clock, repo } = fixture();
    const node = await startNode(repo, registry(), clock);
    const error = await node.scheduler.schedule({ workId: 'nope' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UnknownWorkError);
    expect(error).toMatchObject({ code: 'UNKNOWN_WORK' });
    expect(await allTasks(repo)).toHaveLength(0);
  });

  it('a param that is not JSON, an invalid date, or a missing workId are refused and write nothing', async () => {
    const { clock, repo } = fixture();
    const node = await startNode(repo, registry(), clock);
    await expect(node.scheduler.schedule({ workId: 'any', param: { when: new Date() } })).rejects.toBeInstanceOf(InvalidInputError);
    await expect(node.scheduler.schedule({ workId: 'any', param: { f: () => 1 } })).rejects.toBeInstanceOf(InvalidInputError);
    await expect(node.scheduler.schedule({ workId: 'any', param: Number.NaN })).rejects.toBeInstanceOf(InvalidInputError);
    await expect(node.scheduler.schedule({ workId: 'any', runAt: new Date('nope') })).rejects.toBeInstanceOf(InvalidInputError);
    await expect(node.scheduler.schedule({ work: () => 1 })).rejects.toBeInstanceOf(InvalidInputError);
    expect(await allTasks(repo)).toHaveLength(0);
    expect(node.scheduler.pending).toBe(0);
  });
});

describe('freeParam', () => {
  it('keeps the param out of the local timer and loads it (as last stored) just before the run', async () => {
    const { clock, repo } = fixture();
    const seen: unknown[] = [];
    const registry = new WorkRegistry().register('w', (ctx) => void seen.push(ctx.param));
    const heldParams: unknown[] = [];
    const node = await startNode(repo, registry, clock, {
      freeParam: true,
      after: [(next) => (ctx) => (heldParams.push(ctx.param), next(ctx))],
    });
    const big = { rows: Array.from({ length: 100 }, (_, i) => ({ i })) };
    const handle = await node.scheduler.schedule({ workId: 'w', param: big, delayMs: 1000 });
    expect(heldParams).toEqual([undefined]);
    await repo.update(handle.taskId, { param: { rows: [] } });
    await clock.advance(1000);
    await handle.result;
    expect(seen).toEqual([{ rows: [] }]);
  });

  it('a restored task keeps neither its param nor its stored row in the local timer under freeParam', async () => {
    const { clock, repo } = fixture();
    const { task } = await repo.insert({ workId: 'w', scheduledAt: new Date(clock.now() + 1000), param: { big: 'x'.repeat(1000) } });
    const seen: unknown[] = [];
    const registry = new WorkRegistry().register('w', (ctx) => void seen.push(ctx.param));
    const held: Array<[unknown, unknown]> = [];
    const node = await startNode(repo, registry, clock, {
      freeParam: true,
      after: [(next) => (ctx) => (held.push([ctx.param, ctx.value(RestoredTaskKey)]), next(ctx))],
    });
    expect(node.scheduler.pending).toBe(1);
    expect(held).toEqual([[undefined, undefined]]);
    await clock.advance(1000);
    expect(seen).toEqual([task.param]);
  });

  it('without freeParam the context carries the param', async () => {
    const { clock, repo } = fixture();
    const registry = new WorkRegistry().register('w', () => 1);
    const heldParams: unknown[] = [];
    const node = await startNode(repo, registry, clock, { after: [(next) => (ctx) => (heldParams.push(ctx.param), next(ctx))] });
    await node.scheduler.schedule({ workId: 'w', param: { a: 1 } });
    expect(heldParams).toEqual([{ a: 1 }]);
  });
});

describe('restart recovery', () => {
  it('a new process restores pending tasks: overdue ones run at once, the others at their time', async () => {
    const { clock, repo } = fixture();
    const runs: string[] = [];
    const registry = new WorkRegistry().register('w', (ctx) => void runs.push(ctx.param as string));
    const first = await startNode(repo, registry, clock);
    await first.scheduler.schedule({ workId: 'w', param: 'soon', delayMs: 1000 });
    await first.scheduler.schedule({ workId: 'w', param: 'later', delayMs: 60_000 });
    // The process goes away without running anything; time passes.
    await first.scheduler.stop();
    await first.storage.stop();
    clock.jump(5000);
    const second = await startNode(repo, registry, clock);
    await clock.advance(0);
    expect(runs).toEqual(['soon']);
    await clock.advance(60_000);
    expect(runs).toEqual(['soon', 'later']);
    expect((await repo.countByState()).Done).toBe(2);
    await second.scheduler.stop();
  });

  it('shouldRestore filters what a start restores (for example, skip overdue tasks)', async () => {
    const { clock, repo } = fixture();
    await repo.insert({ workId: 'w', scheduledAt: new Date(clock.now() - 60_000), param: 'stale' });
    await repo.insert({ workId: 'w', scheduledAt: new Date(clock.now() + 1000), param: 'fresh' });
    const runs: unknown[] = [];
    const registry = new WorkRegistry().register('w', (ctx) => void runs.push(ctx.param));
    const node = await startNode(repo, registry, clock, { shouldRestore: (task) => task.scheduledAt.getTime() >= clock.now() });
    await clock.advance(1000);
    expect(runs).toEqual(['fresh']);
    expect((await repo.countByState()).Initialized).toBe(1);
    await node.scheduler.stop();
  });

  it('a run cut by a crash is reclaimed once its lease expires, as attempt 2', async () => {
    const repoClock = new VirtualClock();
    const repo = new MemoryRepository({ clock: repoClock });
    const deadClock = new VirtualClock(); // the crashed process's clock: nothing fires on it again
    const gate = deferred();
    const attempts: number[] = [];
    const registry = new WorkRegistry().register(
      'w',
      async (ctx) => {
        attempts.push(ctx.attempt);
        if (ctx.attempt === 1) await gate.promise;
      },
      { maxAttempts: 3 },
    );
    const crashed = await startNode(repo, registry, deadClock, { leaseMs: 10_000 });
    const handle = await crashed.scheduler.schedule({ workId: 'w' });
    await deadClock.advance(0);
    expect((await repo.getById(handle.taskId)).state).toBe('Working');
    // The process dies (no stop()); a new one starts on the same database.
    const next = await startNode(repo, registry, repoClock, { leaseMs: 10_000, syncIntervalMs: 1000 });
    expect((await repo.getById(handle.taskId)).state).toBe('Working');
    await repoClock.advance(11_000);
    expect(attempts).toEqual([1, 2]);
    expect(await repo.getById(handle.taskId)).toMatchObject({ state: 'Done', attempt: 2 });
    await next.scheduler.stop();
  });
});

describe('semantics 10: graceful stop', () => {
  it('lets a running task finish within the deadline and records it', async () => {
    const { clock, repo } = fixture();
    const registry = new WorkRegistry().register('w', async (ctx) => {
      await new Promise<void>((resolve) => ctx.clock!.setTimer(resolve, 500));
      return 'finished';
    });
    const node = await startNode(repo, registry, clock);
    const handle = await node.scheduler.schedule({ workId: 'w' });
    await clock.advance(0);
    const stopped = node.scheduler.stop({ timeoutMs: 1000 });
    await clock.advance(500);
    await stopped;
    await node.storage.stop();
    await expect(handle.result).resolves.toBe('finished');
    expect((await repo.getById(handle.taskId)).state).toBe('Done');
  });

  it('a run aborted at the deadline goes back to Initialized (attempt refunded) and a new scheduler runs it', async () => {
    const { clock, repo } = fixture();
    const runs: number[] = [];
    const registry = new WorkRegistry().register(
      'w',
      (ctx) =>
        new Promise((resolve, reject) => {
          runs.push(ctx.attempt);
          if (ctx.attempt > 1 || runs.length > 1) return resolve('second life');
          ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason as Error));
        }),
    );
    const node = await startNode(repo, registry, clock);
    const handle = await node.scheduler.schedule({ workId: 'w', param: { keep: true } });
    await clock.advance(0);
    expect((await repo.getById(handle.taskId)).state).toBe('Working');
    const stopped = node.scheduler.stop({ timeoutMs: 1000 });
    await clock.advance(1000);
    await stopped;
    await node.storage.stop();
    const released = await repo.getById(handle.taskId);
    expect(released).toMatchObject({ state: 'Initialized', attempt: 0, lease: null, param: { keep: true } });
    await expect(handle.result).rejects.toMatchObject({ code: 'RUN_ABANDONED' });

    const successor = await startNode(repo, registry, clock);
    await clock.advance(0);
    expect(await repo.getById(handle.taskId)).toMatchObject({ state: 'Done', attempt: 1 });
    expect(runs).toHaveLength(2);
    await successor.scheduler.stop();
  });
});

describe('robustness of sync and claims', () => {
  it('a row the local chain refuses is reported as sync:error and does not stall the others', async () => {
    const { clock, repo } = fixture();
    const runs: unknown[] = [];
    const registry = new WorkRegistry().register('w', (ctx) => void runs.push(ctx.param));
    const refuse: Middleware = (next) => (ctx) => {
      if (ctx.param === 'poison') throw new InvalidInputError('this node refuses poison');
      return next(ctx);
    };
    const node = await startNode(repo, registry, clock, { before: [refuse], syncIntervalMs: 1000 });
    const other = repo.openPeer();
    await other.insert({ workId: 'w', scheduledAt: new Date(clock.now()), param: 'poison' });
    await other.insert({ workId: 'w', scheduledAt: new Date(clock.now()), param: 'fine' });
    await clock.advance(1000);
    expect(runs).toEqual(['fine']);
    const errors = node.events.filter(([name]) => name === 'sync:error');
    expect(errors).toHaveLength(1);
    expect((errors[0]![1] as { task: { param: unknown } }).task.param).toBe('poison');
  });

  it('a store whose guarded claims never match (it rounds times) still runs the task, once', async () => {
    class RoundingRepository extends MemoryRepository {
      override claim(id: string, options: Parameters<MemoryRepository['claim']>[1]): ReturnType<MemoryRepository['claim']> {
        return options.ifScheduledAt === undefined ? super.claim(id, options) : Promise.resolve(null);
      }
    }
    const clock = new VirtualClock();
    const repo = new RoundingRepository({ clock });
    let runs = 0;
    const registry = new WorkRegistry().register('w', () => ++runs);
    const node = await startNode(repo, registry, clock);
    const handle = await node.scheduler.schedule({ workId: 'w', delayMs: 10 });
    await clock.advance(10);
    await expect(handle.result).resolves.toBe(1);
    expect((await repo.getById(handle.taskId)).state).toBe('Done');
  });
});
