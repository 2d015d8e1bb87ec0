import { InvalidInputError, StalledError } from '@horae/core';
import { WorkRegistry } from '@horae/storage';
import { afterEach, describe, expect, it } from 'vitest';
import { capturingHook, horaeOn, stopAll, world } from './horae-helpers.js';
import { fixture, startNode, type TestNode } from './storage-helpers.js';
import type { Horae } from '@horae/storage';

const nodes: TestNode[] = [];
const horaes: Horae[] = [];
afterEach(async () => {
  for (const node of nodes.splice(0)) {
    const stopping = node.scheduler.stop();
    await node.clock.advance(2000);
    await stopping;
    await node.storage.stop();
  }
  await stopAll(horaes.splice(0));
});

/** Resolves after `ms` on the run's clock. */
function sleep(ms: number, clock: { setTimer(callback: () => void, delayMs: number): unknown }): Promise<void> {
  return new Promise((resolve) => void clock.setTimer(resolve, ms));
}

describe('a work’s stallTimeoutMs (storage middleware)', () => {
  it('a run whose progress stops moving is interrupted with a StalledError and retried; moving progress keeps a long run alive', async () => {
    const { clock, repo } = fixture();
    const aborts: unknown[] = [];
    const registry = new WorkRegistry().register(
      'crawl',
      async (ctx) => {
        ctx.progress({ completed: 1, total: 4 });
        if (ctx.attempt === 1) {
          // Repeating the same `completed` is no sign of life.
          for (let i = 0; i < 5 && !ctx.signal.aborted; i++) {
            await sleep(400, ctx.clock!);
            ctx.progress({ completed: 1, total: 4 });
          }
          aborts.push(ctx.signal.reason);
          return 'left behind';
        }
        // 3 × 800 ms = 2.4 s in all, more than the window, but each step moves progress (or checks in).
        await sleep(800, ctx.clock!);
        ctx.progress({ completed: 2, total: 4 });
        await sleep(800, ctx.clock!);
        ctx.checkIn('still going');
        await sleep(800, ctx.clock!);
        ctx.progress({ completed: 4, total: 4 });
        return 'crawled';
      },
      { stallTimeoutMs: 1000, maxAttempts: 2, retry: () => 100 },
    );
    const node = await startNode(repo, registry, clock, { progressThrottleMs: 0 });
    nodes.push(node);
    const handle = await node.scheduler.schedule({ workId: 'crawl' });
    const retried: unknown[] = [];
    node.storage.events.on('task:retried', ({ error }) => void retried.push(error));
    await clock.advance(999);
    expect(retried).toEqual([]);
    await clock.advance(1);
    expect(retried).toHaveLength(1);
    expect(retried[0]).toBeInstanceOf(StalledError);
    await clock.advance(5000);
    await expect(handle.result).resolves.toBe('crawled');
    expect(aborts).toHaveLength(1);
    expect(aborts[0]).toBeInstanceOf(StalledError);
    const attempts = await repo.listAttempts(handle.taskId);
    expect(attempts.map((a) => a.outcome)).toEqual(['retried', 'succeeded']);
    expect(attempts[0]!.error).toMatchObject({ code: 'STALLED' });
    expect(await repo.getById(handle.taskId)).toMatchObject({ state: 'Done', attempt: 2, progress: { completed: 4, total: 4 } });
  });

  it('with no attempts left, a stalled run fails the task with the StalledError', async () => {
    const { clock, repo } = fixture();
    const registry = new WorkRegistry().register('stuck', (ctx) => new Promise(() => void ctx), { stallTimeoutMs: 500 });
    const node = await startNode(repo, registry, clock);
    nodes.push(node);
    const handle = await node.scheduler.schedule({ workId: 'stuck' });
    await clock.advance(500);
    await expect(handle.result).rejects.toBeInstanceOf(StalledError);
    expect(await repo.getById(handle.taskId)).toMatchObject({ state: 'Failed', lastError: { code: 'STALLED' } });
  });

  it('a stallTimeoutMs that is not a number of ms in (0, 2^31-1] is refused at registration', () => {
    for (const stallTimeoutMs of [0, -1, Number.NaN, 2 ** 31, '100' as unknown as number]) {
      expect(() => new WorkRegistry().register('w', () => undefined, { stallTimeoutMs })).toThrow(InvalidInputError);
    }
    expect(() => new WorkRegistry().register('w', () => undefined, { stallTimeoutMs: 1 })).not.toThrow();
  });
});

describe('createHorae applies a registered work’s concurrency', () => {
  it('at most `concurrency` runs of the work at once on the node, the others wait Initialized', async () => {
    const { clock, repo } = world();
    let running = 0;
    let most = 0;
    const registry = new WorkRegistry().register(
      'w',
      async (ctx) => {
        running++;
        most = Math.max(most, running);
        await sleep(1000, ctx.clock!);
        running--;
      },
      { concurrency: 2 },
    );
    const horae = horaeOn(clock, repo, registry, { statusHooks: capturingHook() });
    horaes.push(horae);
    await horae.start();
    expect(horae.scheduler.workConcurrency('w')).toBe(2);
    const handles = await Promise.all(Array.from({ length: 5 }, () => horae.schedule({ workId: 'w' })));
    await clock.advance(0);
    expect(running).toBe(2);
    expect((await repo.countByState()).Working).toBe(2);
    await clock.advance(3000);
    await Promise.all(handles.map((h) => h.result));
    expect(most).toBe(2);
  });
});
