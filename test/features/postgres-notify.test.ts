import { TaskCancelledError } from '@horae/core';
import { PostgresRepository } from '@horae/repo-postgres';
import { WorkRegistry, createHorae, type Horae, type HoraeOptions } from '@horae/storage';
import { afterEach, describe, expect, it } from 'vitest';
import { PG_URL, dropSchema, testSchema } from '../../packages/repo-postgres/test/pg-fixture.js';
import { Cleanups, deferred, eventWhere, withTimeout } from './helpers.js';

// Issue 5, "Stop and cancel from anywhere": on PostgreSQL a cancel reaches the node running the task in
// milliseconds through LISTEN/NOTIFY, not at the next sync. The nodes here sync every 60 s and hold 60 s
// leases (renewed every 20 s), so within the 2 s these tests allow, only a notice can explain the reaction.

const cleanups = new Cleanups();
afterEach(() => cleanups.run());

const SLOW = { syncIntervalMs: 60_000, leaseMs: 60_000 } as const;

async function postgresNode(schema: string, registry: WorkRegistry, nodeId: string, options: Partial<HoraeOptions> = {}): Promise<{ horae: Horae; repository: PostgresRepository }> {
  const repository = new PostgresRepository({ connectionString: PG_URL, schema, poolSize: 4 });
  cleanups.add(() => repository.close());
  const horae = createHorae({ repository, registry, nodeId, ...SLOW, ...options });
  cleanups.add(() => horae.stop({ timeoutMs: 500, hookGraceMs: 0 }));
  await horae.start();
  return { horae, repository };
}

function freshSchema(): string {
  const schema = testSchema();
  cleanups.add(() => dropSchema(schema));
  return schema;
}

describe('feature: PostgreSQL notifications wake other nodes', () => {
  it('a cancel written on node B aborts the run on node A within milliseconds, long before any sync or renewal', async () => {
    const schema = freshSchema();
    const started = deferred<number>();
    const aborted = deferred<{ at: number; reason: unknown }>();
    const registryA = new WorkRegistry().register('long', (ctx) => {
      started.resolve(Date.now());
      return new Promise((_, reject) => {
        ctx.signal.addEventListener('abort', () => {
          aborted.resolve({ at: Date.now(), reason: ctx.signal.reason });
          reject(ctx.signal.reason as Error);
        });
      });
    });
    // Node B knows no work: it cannot run the task, only cancel it.
    const a = await postgresNode(schema, registryA, 'a');
    const b = await postgresNode(schema, new WorkRegistry(), 'b');

    const handle = await a.horae.schedule({ workId: 'long' });
    await withTimeout(started.promise, 5000, 'the run to start on node A');
    const cancelledAt = Date.now();
    expect(await b.horae.cancel(handle.taskId, 'the operator changed their mind')).toBe(true);

    const { at, reason } = await withTimeout(aborted.promise, 2000, 'node A to abort the run after a cancel on node B');
    expect(reason).toBeInstanceOf(TaskCancelledError);
    expect(at - cancelledAt).toBeLessThan(2000);
    expect(await b.horae.getTask(handle.taskId)).toMatchObject({ state: 'Cancelled', lease: null });
    expect(await a.horae.listAttempts(handle.taskId)).toMatchObject([{ run: 1, node: 'a', outcome: 'cancelled' }]);
  }, 20_000);

  it('a task inserted by another client and due now starts on a node in milliseconds, not at the next sync', async () => {
    const schema = freshSchema();
    const registry = new WorkRegistry().register('ping', () => 'pong');
    const node = await postgresNode(schema, registry, 'worker');
    // An operator's client (not a Horae node) inserts the task straight into the repository.
    const operator = new PostgresRepository({ connectionString: PG_URL, schema, poolSize: 1 });
    cleanups.add(() => operator.close());

    const succeeded = eventWhere([node.horae.events], 'task:succeeded', () => true, 2000);
    const insertedAt = Date.now();
    const { task } = await operator.insert({ workId: 'ping', scheduledAt: new Date(insertedAt) });
    const { task: done } = await succeeded;
    expect(done.id).toBe(task.id);
    expect(Date.now() - insertedAt).toBeLessThan(2000);
    expect(await operator.getById(task.id)).toMatchObject({ state: 'Done', attempt: 1 });
  }, 20_000);
});
