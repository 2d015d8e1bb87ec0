import { TaskCancelledError } from '@horae/core';
import { WorkRegistry } from '@horae/storage';
import { afterEach, describe, expect, it } from 'vitest';
import { Cleanups, deferred, eventWhere, startNode, tempDatabase, withTimeout } from './helpers.js';

// Cancel from anywhere, and progress / check-ins, on a real SQLite file with two Horae nodes in one process.

const cleanups = new Cleanups();
afterEach(() => cleanups.run());

describe('feature: cancel from any node (SQLite)', () => {
  it('node B cancels a task running on node A: A’s signal aborts with a TaskCancelledError and the task ends Cancelled', async () => {
    const db = tempDatabase(cleanups);
    const aborted = deferred<{ node: string; reason: unknown }>();
    const registry = (node: string): WorkRegistry =>
      new WorkRegistry().register('long', (ctx) => {
        return new Promise((_, reject) => {
          ctx.signal.addEventListener('abort', () => {
            aborted.resolve({ node, reason: ctx.signal.reason });
            reject(ctx.signal.reason as Error);
          });
        });
      });
    const a = await startNode(db, registry('a'), cleanups, { nodeId: 'a' });
    const b = await startNode(db, registry('b'), cleanups, { nodeId: 'b' });
    const startedOn = eventWhere([a.events, b.events], 'task:started', () => true, 5000);
    const handle = await a.schedule({ workId: 'long' });
    const { task } = await startedOn;
    const runner = task.lease!.owner === 'a' ? a : b;
    const other = runner === a ? b : a;
    expect(await other.getTask(handle.taskId)).toMatchObject({ state: 'Working' });

    const cancelledOnRunner = eventWhere([runner.events], 'task:cancelled', (e) => e.taskId === handle.taskId, 5000);
    expect(await other.cancel(handle.taskId, 'stop it')).toBe(true);
    // The runner's sync (every 50 ms) sees the cancel and aborts the run.
    const { node, reason } = await withTimeout(aborted.promise, 5000, 'the run’s signal to abort');
    expect(node).toBe(runner.nodeId);
    expect(reason).toBeInstanceOf(TaskCancelledError);
    await cancelledOnRunner;
    expect(await other.getTask(handle.taskId)).toMatchObject({ state: 'Cancelled', lease: null });
    await expect(handle.result).rejects.toMatchObject({ code: 'CANCELLED' });
    const attempts = await runner.listAttempts(handle.taskId);
    expect(attempts).toMatchObject([{ run: 1, node: runner.nodeId, outcome: 'cancelled' }]);
  }, 15_000);

  it('a scheduled task cancelled from another node never starts', async () => {
    const db = tempDatabase(cleanups);
    const runs: string[] = [];
    const registry = new WorkRegistry().register('w', (ctx) => void runs.push(ctx.taskId));
    const a = await startNode(db, registry, cleanups, { nodeId: 'a' });
    const b = await startNode(db, registry, cleanups, { nodeId: 'b' });
    const handle = await a.schedule({ workId: 'w', delayMs: 300 });
    // B holds it too once its sync saw it.
    await eventWhere([b.events], 'task:scheduled', (e) => e.task.id === handle.taskId, 5000);
    expect(await b.cancel(handle.taskId)).toBe(true);
    await expect(withTimeout(handle.result, 5000, 'the handle to settle')).rejects.toMatchObject({ code: 'CANCELLED' });
    // Past its due time, it still never ran anywhere.
    await eventWhere([a.events], 'sync:done', () => Date.now() > handle.runAt.getTime() + 100, 5000);
    expect(runs).toEqual([]);
    expect(await a.getTask(handle.taskId)).toMatchObject({ state: 'Cancelled', attempt: 0 });
  }, 15_000);
});

describe('feature: progress and check-ins (SQLite)', () => {
  it('are persisted while the work runs and after it ends, on the TaskInfo and in the attempt history', async () => {
    const db = tempDatabase(cleanups);
    const gate = deferred();
    const reported = deferred();
    const registry = new WorkRegistry().register('import', async (ctx) => {
      ctx.progress({ completed: 3, total: 8 });
      ctx.checkIn('read the header');
      reported.resolve();
      await gate.promise;
      ctx.checkIn('wrote 8 rows');
      ctx.progress({ completed: 8, total: 8 });
      return 'imported';
    });
    const horae = await startNode(db, registry, cleanups, { nodeId: 'n1', progressThrottleMs: 0 });
    const handle = await horae.schedule({ workId: 'import' });
    await withTimeout(reported.promise, 5000, 'the work to report');
    // While it runs: the progress lands in the repository (no event says when; poll, bounded).
    const deadline = Date.now() + 5000;
    let running = await horae.getTask(handle.taskId);
    while (running.progress?.message !== 'read the header' && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
      running = await horae.getTask(handle.taskId);
    }
    expect(running).toMatchObject({ state: 'Working', progress: { completed: 3, total: 8, message: 'read the header' } });
    gate.resolve();
    await expect(withTimeout(handle.result, 5000, 'the run to end')).resolves.toBe('imported');
    const done = await horae.getTask(handle.taskId);
    // The last report lands before the write that ends the run.
    expect(done).toMatchObject({ state: 'Done', progress: { completed: 8, total: 8, message: 'wrote 8 rows' } });
    const attempts = await horae.listAttempts(handle.taskId);
    expect(attempts).toHaveLength(1);
    expect(attempts[0]).toMatchObject({ run: 1, node: 'n1', outcome: 'succeeded' });
    expect(attempts[0]!.checkIns.map((c) => c.message)).toEqual(['read the header', 'wrote 8 rows']);
  }, 15_000);
});
