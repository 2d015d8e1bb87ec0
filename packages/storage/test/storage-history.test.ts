import { fixedBackoff, retry } from '@horae/core';
import { VirtualClock } from '@horae/core/testing';
import { MemoryRepository, WorkRegistry, type TaskAttempt } from '@horae/storage';
import { describe, expect, it } from 'vitest';
import { deferred, eventNames, fixture, startNode } from './storage-helpers.js';

/** The outcome and node of each record, oldest first. */
function summary(attempts: readonly TaskAttempt[]): Array<{ outcome: string; node: string; attempt: number }> {
  return attempts.map(({ outcome, node, attempt }) => ({ outcome, node, attempt }));
}

describe('execution history through the storage middleware', () => {
  it('a retry then a success leaves two records: retried (with the error), then succeeded', async () => {
    const { clock, repo } = fixture();
    const registry = new WorkRegistry().register(
      'flaky',
      (ctx) => {
        if (ctx.attempt === 1) throw new Error('boom 1');
        return 'ok';
      },
      { maxAttempts: 3, retry: () => 1000 },
    );
    const node = await startNode(repo, registry, clock, { nodeId: 'node-1' });
    const handle = await node.scheduler.schedule({ workId: 'flaky' });
    await clock.advance(0);
    expect(summary(await repo.listAttempts(handle.taskId))).toEqual([{ outcome: 'retried', node: 'node-1', attempt: 1 }]);
    await clock.advance(1000);
    await expect(handle.result).resolves.toBe('ok');
    const attempts = await repo.listAttempts(handle.taskId);
    expect(summary(attempts)).toEqual([
      { outcome: 'retried', node: 'node-1', attempt: 1 },
      { outcome: 'succeeded', node: 'node-1', attempt: 2 },
    ]);
    expect(attempts[0]!.error).toMatchObject({ message: 'boom 1', name: 'Error' });
    expect(attempts[0]!.error!.stack).toContain('boom 1');
    expect(attempts[1]!.error).toBeNull();
    // The records' times are the database clock's: the retry ran 1 s after the first run.
    expect(attempts[1]!.startedAt.getTime() - attempts[0]!.startedAt.getTime()).toBe(1000);
    expect(attempts[1]!.endedAt).toEqual(new Date(clock.now()));
  });

  it('a lease takeover: lease-expired on node A, succeeded on node B', async () => {
    const repoClock = new VirtualClock();
    const repo = new MemoryRepository({ clock: repoClock });
    const clockA = new VirtualClock(); // A's clock stops when A "dies": its lease is never renewed
    const gateA = deferred<string>();
    const registry = (name: string): WorkRegistry =>
      new WorkRegistry().register('w', async (ctx) => (name === 'A' ? gateA.promise : `B ran attempt ${ctx.attempt}`), { maxAttempts: 3 });
    const leaseMs = 9_000;
    const a = await startNode(repo, registry('A'), clockA, { multi: true, nodeId: 'node-a', leaseMs, syncIntervalMs: 1000 });
    const b = await startNode(repo.openPeer(), registry('B'), repoClock, { multi: true, nodeId: 'node-b', leaseMs, syncIntervalMs: 1000 });
    const handle = await a.scheduler.schedule({ workId: 'w' });
    await clockA.advance(0);
    expect(summary(await repo.listAttempts(handle.taskId))).toEqual([{ outcome: 'running', node: 'node-a', attempt: 1 }]);
    await repoClock.advance(leaseMs + 1000);
    expect(await repo.getById(handle.taskId)).toMatchObject({ state: 'Done', attempt: 2 });
    const attempts = await repo.listAttempts(handle.taskId);
    expect(summary(attempts)).toEqual([
      { outcome: 'lease-expired', node: 'node-a', attempt: 1 },
      { outcome: 'succeeded', node: 'node-b', attempt: 2 },
    ]);
    expect(attempts[0]!.error).toEqual({ message: 'lease expired', code: 'LEASE_EXPIRED' });
    // The zombie finishes late: its write is refused and the history does not change.
    gateA.resolve('A too');
    await clockA.flush();
    await repoClock.flush();
    expect(await repo.listAttempts(handle.taskId)).toEqual(attempts);
    expect(eventNames(a)).not.toContain('task:succeeded');
    await b.scheduler.stop();
  });

  it('check-ins are persisted: in the attempt record and on TaskInfo.progress.message', async () => {
    const { clock, repo } = fixture();
    const gate = deferred();
    const registry = new WorkRegistry().register('report', async (ctx) => {
      // A check-in before any progress report is written too (as progress 0 of 0).
      ctx.checkIn('connecting');
      await gate.promise;
      ctx.progress({ completed: 1, total: 2 });
      ctx.checkIn('downloading');
    });
    const node = await startNode(repo, registry, clock, { progressThrottleMs: 500 });
    const handle = await node.scheduler.schedule({ workId: 'report' });
    await clock.advance(0);
    expect((await repo.getById(handle.taskId)).progress).toMatchObject({ completed: 0, total: 0, message: 'connecting' });
    expect((await repo.listAttempts(handle.taskId))[0]!.checkIns.map((c) => c.message)).toEqual(['connecting']);
    await clock.advance(1000);
    gate.resolve();
    await clock.advance(0);
    await handle.result;
    const task = await repo.getById(handle.taskId);
    expect(task.state).toBe('Done');
    expect(task.progress).toMatchObject({ completed: 1, total: 2, message: 'downloading' });
    const [attempt] = await repo.listAttempts(handle.taskId);
    expect(attempt!.outcome).toBe('succeeded');
    expect(attempt!.checkIns.map((c) => c.message)).toEqual(['connecting', 'downloading']);
    expect(attempt!.checkIns[0]!.at.getTime()).toBeLessThan(attempt!.checkIns[1]!.at.getTime());
  });

  it('the last progress before the run ends is written before Done (8/8, not 7/8)', async () => {
    const { clock, repo } = fixture();
    const registry = new WorkRegistry().register('count', (ctx) => {
      for (let i = 1; i <= 8; i++) ctx.progress({ completed: i, total: 8 });
      ctx.checkIn('all 8 done');
    });
    const node = await startNode(repo, registry, clock, { progressThrottleMs: 60_000 });
    const handle = await node.scheduler.schedule({ workId: 'count' });
    await clock.advance(0);
    await handle.result;
    const task = await repo.getById(handle.taskId);
    expect(task).toMatchObject({ state: 'Done', progress: { completed: 8, total: 8, message: 'all 8 done' } });
    expect((await repo.listAttempts(handle.taskId))[0]!.checkIns.map((c) => c.message)).toEqual(['all 8 done']);
  });

  it('the last check-in of a failed run is flushed before the release, into the retried record', async () => {
    const { clock, repo } = fixture();
    const registry = new WorkRegistry().register(
      'step',
      (ctx) => {
        ctx.checkIn('started');
        ctx.checkIn(`giving up on attempt ${ctx.attempt}`);
        if (ctx.attempt === 1) throw new Error('nope');
      },
      { maxAttempts: 2, retry: () => 5000 },
    );
    const node = await startNode(repo, registry, clock, { progressThrottleMs: 60_000 });
    const handle = await node.scheduler.schedule({ workId: 'step' });
    await clock.advance(5000);
    await handle.result;
    const attempts = await repo.listAttempts(handle.taskId);
    expect(attempts.map((a) => a.outcome)).toEqual(['retried', 'succeeded']);
    // Throttled: the first check-in is written at once, the second (last of the window) when the run ends.
    expect(attempts.map((a) => a.checkIns.map((c) => c.message))).toEqual([
      ['started', 'giving up on attempt 1'],
      ['started', 'giving up on attempt 2'],
    ]);
  });

  it('a run cut by a graceful stop is recorded as released, and the next start opens run 2 with the same attempt', async () => {
    const { clock, repo } = fixture();
    const registry = new WorkRegistry().register('slow', (ctx) => new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason as Error))));
    const node = await startNode(repo, registry, clock, { nodeId: 'first' });
    const handle = await node.scheduler.schedule({ workId: 'slow' });
    await clock.advance(0);
    const stopping = node.scheduler.stop({ timeoutMs: 1000 });
    await clock.advance(1000);
    await stopping;
    await node.storage.stop();
    expect(summary(await repo.listAttempts(handle.taskId))).toEqual([{ outcome: 'released', node: 'first', attempt: 1 }]);
    expect((await repo.getById(handle.taskId)).attempt).toBe(0);
    const done = new WorkRegistry().register('slow', () => 'done');
    const successor = await startNode(repo.openPeer(), done, clock, { nodeId: 'second' });
    await clock.advance(0);
    expect(await repo.getById(handle.taskId)).toMatchObject({ state: 'Done', attempt: 1 });
    expect(summary(await repo.listAttempts(handle.taskId))).toEqual([
      { outcome: 'released', node: 'first', attempt: 1 },
      { outcome: 'succeeded', node: 'second', attempt: 1 },
    ]);
    await successor.scheduler.stop();
  });
});

describe('task kinds through the storage middleware', () => {
  it('a task due now is immediate; one due later is scheduled; neither has a scheduleName', async () => {
    const { clock, repo } = fixture();
    const registry = new WorkRegistry().register('w', () => 'ok');
    const node = await startNode(repo, registry, clock);
    const now = await node.scheduler.schedule({ workId: 'w' });
    const past = await node.scheduler.schedule({ workId: 'w', runAt: new Date(clock.now() - 60_000) });
    const later = await node.scheduler.schedule({ workId: 'w', delayMs: 1 });
    const tomorrow = await node.scheduler.schedule({ workId: 'w', runAt: new Date(clock.now() + 86_400_000) });
    const kinds = async (id: string): Promise<[string, string | null]> => {
      const task = await repo.getById(id);
      return [task.kind, task.scheduleName];
    };
    expect(await kinds(now.taskId)).toEqual(['immediate', null]);
    expect(await kinds(past.taskId)).toEqual(['immediate', null]);
    expect(await kinds(later.taskId)).toEqual(['scheduled', null]);
    expect(await kinds(tomorrow.taskId)).toEqual(['scheduled', null]);
    // The kind stays what it was at schedule time through the run.
    await clock.advance(1);
    expect(await kinds(later.taskId)).toEqual(['scheduled', null]);
    expect((await repo.getById(later.taskId)).state).toBe('Done');
  });
});

describe('param re-validation before the run', () => {
  it('a task whose stored param no longer validates fails at once, without retry, with INVALID_INPUT', async () => {
    const { clock, repo } = fixture();
    let runs = 0;
    const registry = new WorkRegistry().register(
      'mail',
      () => {
        runs++;
        return 'sent';
      },
      {
        maxAttempts: 3,
        retry: () => 10,
        validate: (param) => {
          if (typeof (param as { to?: unknown } | null)?.to !== 'string') throw new TypeError('to must be a string');
          return param;
        },
      },
    );
    const node = await startNode(repo, registry, clock, { nodeId: 'n' });
    const handle = await node.scheduler.schedule({ workId: 'mail', param: { to: 'a@b.c' }, delayMs: 1000 });
    // The stored row changed under the timer (an operator, a migration): it no longer passes the validator.
    await repo.update(handle.taskId, { param: { to: 42 } });
    await clock.advance(1000);
    const error: unknown = await handle.result.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ code: 'INVALID_INPUT' });
    expect(handle.state).toBe('failed');
    await clock.advance(1000);
    expect(runs).toBe(0);
    const task = await repo.getById(handle.taskId);
    expect(task).toMatchObject({ state: 'Failed', attempt: 1, lastError: { code: 'INVALID_INPUT', name: 'ParamValidationError' } });
    expect(task.lastError!.message).toMatch(/to must be a string/);
    const attempts = await repo.listAttempts(handle.taskId);
    expect(summary(attempts)).toEqual([{ outcome: 'failed', node: 'n', attempt: 1 }]);
    expect(attempts[0]!.error).toMatchObject({ code: 'INVALID_INPUT' });
    expect(eventNames(node).filter((n) => n === 'task:retried')).toEqual([]);
    expect(eventNames(node)).toContain('task:failed');
  });

  it('a valid stored param runs as before', async () => {
    const { clock, repo } = fixture();
    const registry = new WorkRegistry().register('mail', (ctx) => `sent to ${(ctx.param as { to: string }).to}`, {
      validate: (param) => {
        if (typeof (param as { to?: unknown } | null)?.to !== 'string') throw new TypeError('to must be a string');
        return param;
      },
    });
    const node = await startNode(repo, registry, clock);
    const handle = await node.scheduler.schedule({ workId: 'mail', param: { to: 'a@b.c' } });
    await clock.advance(0);
    await expect(handle.result).resolves.toBe('sent to a@b.c');
  });

  it('a retry middleware outside storage does not run it again', async () => {
    const { clock, repo } = fixture();
    let valid = true;
    let runs = 0;
    const registry = new WorkRegistry().register(
      'w',
      () => {
        runs++;
        return 'ran';
      },
      {
        validate: (param) => {
          if (!valid) throw new TypeError('validator changed');
          return param;
        },
      },
    );
    const node = await startNode(repo, registry, clock, { before: [registry.middleware()], after: [retry({ maxAttempts: 3, backoff: fixedBackoff(100) })] });
    const handle = await node.scheduler.schedule({ workId: 'w', param: 1, delayMs: 10 });
    // The work's validation changed (a new release) after the task was stored.
    valid = false;
    await clock.advance(10);
    await expect(handle.result).rejects.toMatchObject({ code: 'INVALID_INPUT' });
    await clock.advance(1000);
    expect(runs).toBe(0);
    expect(await repo.getById(handle.taskId)).toMatchObject({ state: 'Failed', attempt: 1, lastError: { code: 'INVALID_INPUT' } });
    expect(await repo.listAttempts(handle.taskId)).toHaveLength(1);
  });
});
