import { StalledError } from '@horae/core';
import { WorkRegistry } from '@horae/storage';
import { afterEach, describe, expect, it } from 'vitest';
import { Cleanups, eventWhere, startNode, tempDatabase, withTimeout } from './helpers.js';

const cleanups = new Cleanups();
afterEach(() => cleanups.run());

describe('feature: event triggers (SQLite)', () => {
  it('emit on node A: the task is durable at once and runs exactly once, on either node', async () => {
    const db = tempDatabase(cleanups);
    const runs: Array<{ node: string; taskId: string; param: unknown }> = [];
    const registry = (node: string): WorkRegistry =>
      new WorkRegistry().register('provision', (ctx) => {
        runs.push({ node, taskId: ctx.taskId, param: ctx.param });
        return 'provisioned';
      });
    const a = await startNode(db, registry('a'), cleanups, { nodeId: 'a' });
    const b = await startNode(db, registry('b'), cleanups, { nodeId: 'b' });
    // Registrations live in memory: every node makes them at start.
    for (const node of [a, b]) {
      node.onEvent<{ vm: string }>('vm.requested', { workId: 'provision', param: (payload) => ({ vm: payload.vm }), delayMs: 150 });
    }
    const [handle] = await a.emit('vm.requested', { vm: 'vm-1' });
    const observer = db.open();
    expect(await observer.getById(handle!.taskId)).toMatchObject({ state: 'Initialized', workId: 'provision', param: { vm: 'vm-1' } });
    const done = await eventWhere([a.events, b.events], 'task:succeeded', (e) => e.task.id === handle!.taskId, 5000);
    expect(done.task).toMatchObject({ state: 'Done', attempt: 1 });
    // Let the other node's sync see the end before counting runs.
    await eventWhere([a.events, b.events], 'sync:done', () => true, 5000);
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({ taskId: handle!.taskId, param: { vm: 'vm-1' } });
    expect(await observer.listAttempts(handle!.taskId)).toMatchObject([{ run: 1, node: runs[0]!.node, outcome: 'succeeded' }]);
  }, 15_000);
});

describe('feature: stalled runs (SQLite)', () => {
  it('a run whose progress stops moving is interrupted with a StalledError and retried', async () => {
    const db = tempDatabase(cleanups);
    const aborts: unknown[] = [];
    const registry = new WorkRegistry().register('crawl', async (ctx) => {
      ctx.progress({ completed: 1, total: 10 });
      if (ctx.attempt === 1) {
        // Stuck: no more progress until the signal aborts.
        await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve()));
        aborts.push(ctx.signal.reason);
        return 'ignored';
      }
      ctx.progress({ completed: 10, total: 10 });
      return 'crawled';
    }, { maxAttempts: 2, retry: () => 50 });
    const horae = await startNode(db, registry, cleanups, { nodeId: 'n1', stallTimeoutMs: 300, progressThrottleMs: 0 });
    const retried = eventWhere([horae.events], 'task:retried', () => true, 5000);
    const handle = await horae.schedule({ workId: 'crawl' });
    const { error } = await retried;
    expect(error).toBeInstanceOf(StalledError);
    await expect(withTimeout(handle.result, 5000, 'the retry to succeed')).resolves.toBe('crawled');
    expect(aborts).toHaveLength(1);
    expect(aborts[0]).toBeInstanceOf(StalledError);
    const attempts = await horae.listAttempts(handle.taskId);
    expect(attempts.map((a) => a.outcome)).toEqual(['retried', 'succeeded']);
    expect(attempts[0]!.error).toMatchObject({ code: 'STALLED' });
    expect(await horae.getTask(handle.taskId)).toMatchObject({ state: 'Done', attempt: 2, progress: { completed: 10, total: 10 } });
  }, 15_000);
});
