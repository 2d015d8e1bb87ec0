/**
 * Throughput of claimDue + markAsStarted + markAsDone (claimDue claims ahead; markAsStarted starts the run and opens
 * its attempt record, markAsDone closes it).
 * Run: npx vitest bench --run packages/repo-postgres/test/claim-done.bench.ts
 * Env: HORAE_BENCH_TASKS (default 5000), HORAE_BENCH_WORKERS (default 32). Each configuration prints one JSON line
 * with its ops/s (tasks claimed, started and done per second, inserts excluded); tinybench's own figures include the
 * inserts and the schema set-up.
 */
import { bench, describe } from 'vitest';
import { PostgresRepository, type PostgresRepositoryCommonOptions } from '@horae/repo-postgres';
import { PG_URL, dropSchema, testSchema } from './pg-fixture.js';

const TASKS = Number(process.env.HORAE_BENCH_TASKS ?? 5_000);
const WORKERS = Number(process.env.HORAE_BENCH_WORKERS ?? 32);

async function drainOnce(label: string, options: PostgresRepositoryCommonOptions & { synchronousCommit?: boolean }): Promise<void> {
  const schema = testSchema();
  const repo = new PostgresRepository({ connectionString: PG_URL, schema, poolSize: 10, ...options });
  try {
    await repo.init();
    const past = new Date(Date.now() - 60_000);
    for (let i = 0; i < TASKS; i += 1_000) {
      await repo.insertMany(Array.from({ length: Math.min(1_000, TASKS - i) }, () => ({ workId: 'w', scheduledAt: past })));
    }
    let done = 0;
    const start = performance.now();
    await Promise.all(
      Array.from({ length: WORKERS }, async () => {
        for (;;) {
          const [task] = await repo.claimDue({ owner: 'bench', leaseMs: 60_000, limit: 1 });
          if (task?.lease == null) return;
          await repo.markAsStarted(task.id, task.lease.token);
          await repo.markAsDone(task.id, task.lease.token);
          done++;
        }
      }),
    );
    const ms = performance.now() - start;
    console.log(JSON.stringify({ label, tasks: TASKS, workers: WORKERS, done, ms: Math.round(ms), opsPerSec: Math.round((done / ms) * 1000) }));
  } finally {
    await repo.close();
    await dropSchema(schema);
  }
}

const once = { iterations: 1, warmupIterations: 0, time: 0, warmupTime: 0 };

describe('PostgresRepository: claimDue + markAsStarted + markAsDone with execution history', () => {
  bench('group commit', () => drainOnce('group commit', {}), once);
  bench('group commit, synchronous_commit off', () => drainOnce('group commit, synchronous_commit off', { synchronousCommit: false }), once);
  bench('no group commit', () => drainOnce('no group commit', { groupCommit: false }), once);
});
