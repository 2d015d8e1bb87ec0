/**
 * Throughput of the starts and ends of runs, the adapter alone: N tasks claimed ahead (not timed), then
 *  - "all at once": Promise.all of their markAsStarted, then Promise.all of their markAsDone (tasks per second of each);
 *  - "as slots free": W workers, each starting then ending one task after another (tasks per second, start + Done).
 * Run: npx vitest bench --run packages/repo-postgres/test/start-done.bench.ts
 * Env: HORAE_BENCH_TASKS (default 5000), HORAE_BENCH_WORKERS (default 32), HORAE_BENCH_ROUNDS (default 3), and
 * HORAE_BENCH_BASELINE: the path of another version's `src/index.ts` (e.g. a commit's src exported with `git archive`
 * into a folder of this package) to measure against, interleaved round by round, the order alternating, since the
 * machine is shared and noisy. Each measurement prints one JSON line; the medians come last.
 */
import { bench, describe } from 'vitest';
import { PostgresRepository } from '@horae/repo-postgres';
import { PG_URL, dropSchema, testSchema } from './pg-fixture.js';

const TASKS = Number(process.env.HORAE_BENCH_TASKS ?? 5_000);
const WORKERS = Number(process.env.HORAE_BENCH_WORKERS ?? 32);
const ROUNDS = Number(process.env.HORAE_BENCH_ROUNDS ?? 3);
const BASELINE = process.env.HORAE_BENCH_BASELINE;

type Opened = Pick<PostgresRepository, 'init' | 'insertMany' | 'claimDue' | 'markAsStarted' | 'markAsDone' | 'close'>;
type Open = (schema: string) => Opened;

interface Claimed {
  id: string;
  token: string;
}

/** A fresh schema with TASKS tasks claimed ahead by one node. */
async function prepare(open: Open): Promise<{ repo: Opened; schema: string; claimed: Claimed[] }> {
  const schema = testSchema();
  const repo = open(schema);
  await repo.init();
  const past = new Date(Date.now() - 60_000);
  for (let i = 0; i < TASKS; i += 1_000) {
    await repo.insertMany(Array.from({ length: Math.min(1_000, TASKS - i) }, () => ({ workId: 'w', scheduledAt: past })));
  }
  const claimed: Claimed[] = [];
  while (claimed.length < TASKS) {
    const batch = await repo.claimDue({ owner: 'bench', leaseMs: 600_000, limit: 499 });
    if (batch.length === 0) break;
    for (const task of batch) claimed.push({ id: task.id, token: task.lease!.token });
  }
  return { repo, schema, claimed };
}

const perSecond = (n: number, ms: number): number => Math.round((n / ms) * 1_000);

async function allAtOnce(open: Open): Promise<{ starts: number; dones: number }> {
  const { repo, schema, claimed } = await prepare(open);
  try {
    const t0 = performance.now();
    await Promise.all(claimed.map((task) => repo.markAsStarted(task.id, task.token)));
    const t1 = performance.now();
    await Promise.all(claimed.map((task) => repo.markAsDone(task.id, task.token)));
    const t2 = performance.now();
    return { starts: perSecond(claimed.length, t1 - t0), dones: perSecond(claimed.length, t2 - t1) };
  } finally {
    await repo.close();
    await dropSchema(schema);
  }
}

async function asSlotsFree(open: Open): Promise<{ tasks: number }> {
  const { repo, schema, claimed } = await prepare(open);
  try {
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: WORKERS }, async () => {
        for (let i = next++; i < claimed.length; i = next++) {
          const task = claimed[i]!;
          await repo.markAsStarted(task.id, task.token);
          await repo.markAsDone(task.id, task.token);
        }
      }),
    );
    return { tasks: perSecond(claimed.length, performance.now() - t0) };
  } finally {
    await repo.close();
    await dropSchema(schema);
  }
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function compare(): Promise<void> {
  const versions: [string, Open][] = [['current', (schema) => new PostgresRepository({ connectionString: PG_URL, schema, poolSize: 10 })]];
  if (BASELINE !== undefined) {
    const baseline = (await import(BASELINE)) as { PostgresRepository: new (options: { connectionString: string; schema: string; poolSize: number }) => Opened };
    versions.unshift(['baseline', (schema) => new baseline.PostgresRepository({ connectionString: PG_URL, schema, poolSize: 10 })]);
  }
  const figures = new Map<string, number[]>();
  const record = (key: string, value: number): void => {
    figures.set(key, [...(figures.get(key) ?? []), value]);
  };
  for (let round = 0; round < ROUNDS; round++) {
    // Alternate which version goes first, so that neither always meets a warmer (or busier) server.
    const order = round % 2 === 0 ? versions : [...versions].reverse();
    for (const [label, open] of order) {
      const once = await allAtOnce(open);
      console.log(JSON.stringify({ round, label, shape: 'all at once', tasks: TASKS, ...once }));
      record(`${label} starts/s (all at once)`, once.starts);
      record(`${label} dones/s (all at once)`, once.dones);
    }
    for (const [label, open] of order) {
      const free = await asSlotsFree(open);
      console.log(JSON.stringify({ round, label, shape: 'as slots free', workers: WORKERS, ...free }));
      record(`${label} start+done/s (${WORKERS} workers)`, free.tasks);
    }
  }
  for (const [key, values] of figures) console.log(JSON.stringify({ median: key, value: median(values), of: values }));
}

describe('PostgresRepository: markAsStarted and markAsDone of tasks claimed ahead', () => {
  bench('interleaved rounds', compare, { iterations: 1, warmupIterations: 0, time: 0, warmupTime: 0 });
});
