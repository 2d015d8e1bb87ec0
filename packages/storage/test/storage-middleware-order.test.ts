import { fixedBackoff, logging, retry, timeout, type Logger, type Middleware } from '@horae/core';
import { WorkRegistry } from '@horae/storage';
import { describe, expect, it } from 'vitest';
import { fixture, startNode } from './storage-helpers.js';

// Semantics 9: storage marks the outcome of whatever its inner chain runs, and a built-in middleware behaves as
// documented whether it sits before or after storage in `use()` order. Remember how wrappers nest: a middleware
// registered before storage wraps the work first, so at run time its wrapper runs INSIDE storage's (storage
// records what it made of the run); one registered after storage wraps storage's wrapper and sees storage's
// outcome (a durable retry as RunDeferred, a final failure as UnrecoverableError).
type Position = 'before' | 'after';

function place(position: Position, registry: WorkRegistry, middleware: Middleware): { before: Middleware[]; after: Middleware[] } {
  // registry.middleware() first, so that the middlewares outside storage see the registered work.
  return position === 'before' ? { before: [registry.middleware(), middleware], after: [] } : { before: [registry.middleware()], after: [middleware] };
}

function capture(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const push = (_: object, msg?: string): void => void lines.push(msg ?? '');
  return { logger: { debug: push, info: push, warn: push, error: push }, lines };
}

describe.each<Position>(['before', 'after'])('middleware order: built-in middleware %s storage', (position) => {
  it('logging logs the run and storage records it', async () => {
    const { clock, repo } = fixture();
    const registry = new WorkRegistry().register('ok', () => 'fine').register('ko', () => Promise.reject(new Error('nope')));
    const { logger, lines } = capture();
    const node = await startNode(repo, registry, clock, place(position, registry, logging({ logger, level: 'debug' })));
    const ok = await node.scheduler.schedule({ workId: 'ok' });
    const ko = await node.scheduler.schedule({ workId: 'ko' });
    await clock.advance(0);
    await expect(ok.result).resolves.toBe('fine');
    await expect(ko.result).rejects.toThrow('nope');
    expect(lines).toEqual(expect.arrayContaining(['task scheduled', 'task started', 'task succeeded', 'task failed']));
    expect((await repo.getById(ok.taskId)).state).toBe('Done');
    expect(await repo.getById(ko.taskId)).toMatchObject({ state: 'Failed', lastError: { message: 'nope' } });
  });

  it('timeout aborts the run and storage records the TimeoutError', async () => {
    const { clock, repo } = fixture();
    const registry = new WorkRegistry().register(
      'hang',
      (ctx) => new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason as Error))),
    );
    const node = await startNode(repo, registry, clock, place(position, registry, timeout(1000)));
    const handle = await node.scheduler.schedule({ workId: 'hang' });
    await clock.advance(999);
    expect((await repo.getById(handle.taskId)).state).toBe('Working');
    await clock.advance(1);
    await expect(handle.result).rejects.toMatchObject({ code: 'TIMEOUT' });
    expect(await repo.getById(handle.taskId)).toMatchObject({ state: 'Failed', lastError: { code: 'TIMEOUT' } });
  });

  it('retry: the task is retried durably, each attempt counted in the repository, and ends Done', async () => {
    const { clock, repo } = fixture();
    const attempts: number[] = [];
    const registry = new WorkRegistry().register(
      'flaky',
      (ctx) => {
        attempts.push(ctx.attempt);
        if (ctx.attempt < 3) throw new Error(`fail ${ctx.attempt}`);
        return 'third time';
      },
      // Registered after storage (wrapping it), the retry middleware never sees a retryable failure: storage's
      // durable retries decide. Registered before (run-time inside), it defers runs and storage releases each.
      { maxAttempts: 3, retry: () => 100 },
    );
    const node = await startNode(repo, registry, clock, place(position, registry, retry({ maxAttempts: 3, backoff: fixedBackoff(100) })));
    const handle = await node.scheduler.schedule({ workId: 'flaky' });
    await clock.advance(0);
    expect(await repo.getById(handle.taskId)).toMatchObject({ state: 'Initialized', attempt: 1, lastError: { message: 'fail 1' } });
    await clock.advance(100);
    await clock.advance(100);
    await expect(handle.result).resolves.toBe('third time');
    expect(attempts).toEqual([1, 2, 3]);
    expect(await repo.getById(handle.taskId)).toMatchObject({ state: 'Done', attempt: 3 });
  });

  it('retry: a failure with no attempts left is final in the repository and nothing runs it again', async () => {
    const { clock, repo } = fixture();
    let runs = 0;
    const registry = new WorkRegistry().register('bad', () => {
      runs++;
      throw new Error('always');
    });
    const node = await startNode(repo, registry, clock, place(position, registry, retry({ maxAttempts: 2, backoff: fixedBackoff(100) })));
    const handle = await node.scheduler.schedule({ workId: 'bad' });
    await clock.advance(1000);
    await expect(handle.result).rejects.toThrow('always');
    // Run-time inside storage (registered before) the retry middleware runs its two attempts; wrapping
    // storage (registered after) it sees a final UnrecoverableError and storage's maxAttempts (1) rules.
    expect(runs).toBe(position === 'before' ? 2 : 1);
    expect((await repo.getById(handle.taskId)).state).toBe('Failed');
  });
});

describe('a middleware that restores a task sees the registered work (sync restores through the whole chain)', () => {
  it('logging before storage logs a task restored after a restart', async () => {
    const { clock, repo } = fixture();
    await repo.insert({ workId: 'w', scheduledAt: new Date(clock.now()) });
    const registry = new WorkRegistry().register('w', () => 'restored');
    const { logger, lines } = capture();
    await startNode(repo, registry, clock, { before: [logging({ logger, level: 'debug' })] });
    await clock.advance(0);
    expect(lines).toEqual(expect.arrayContaining(['task scheduled', 'task started', 'task succeeded']));
    expect((await repo.countByState()).Done).toBe(1);
  });
});
