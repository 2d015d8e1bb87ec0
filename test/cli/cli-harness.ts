/**
 * Runs the built `horae` bin as a real child process, and opens the two databases the CLI tests run against: a
 * SQLite file in a temp dir, and a schema of its own on the test PostgreSQL (dropped after).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { SqliteRepository } from '@horae/repo-sqlite';
import { PostgresRepository } from '@horae/repo-postgres';
import type { Repository, ScheduleStore, TaskError } from '@horae/storage';
import { PG_URL, dropSchema, testSchema } from '../../packages/repo-postgres/test/pg-fixture.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The built bin. */
export const BIN = join(root, 'packages', 'cli', 'dist', 'bin.js');

/** What a run of the bin left. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `horae …` to its end (HORAE_DB and NO_COLOR cleared unless given). */
export function horae(args: readonly string[], options: { env?: Record<string, string>; cwd?: string } = {}): Promise<CliRun> {
  return new Promise((resolve) => {
    const env: Record<string, string | undefined> = { ...process.env, HORAE_DB: undefined, NO_COLOR: undefined, ...options.env };
    execFile(process.execPath, [BIN, ...args], { cwd: options.cwd ?? root, env, timeout: 30_000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Spawns `horae …` and returns the child (for `worker`). */
export function spawnHorae(args: readonly string[], cwd: string): ChildProcess {
  return spawn(process.execPath, [BIN, ...args], { cwd, env: { ...process.env, HORAE_DB: undefined }, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** One database the tests seed through its adapter and point the CLI at. */
export interface CliDatabase {
  /** The --db value. */
  url: string;
  /** The adapter, opened on it, for seeding and checking. */
  repository: Repository & ScheduleStore;
  /** Moves a task's updatedAt back by `days` (a raw write: the adapters stamp it with the database's clock). */
  age(taskId: string, days: number): Promise<void>;
  /** Closes the repository and removes the database. */
  dispose(): Promise<void>;
}

/** The two backends. */
export const BACKENDS: readonly { name: string; open: () => Promise<CliDatabase> }[] = [
  {
    name: 'SQLite',
    open: () => {
      const dir = mkdtempSync(join(tmpdir(), 'horae-cli-'));
      const file = join(dir, 'tasks.db');
      const repository = new SqliteRepository({ database: file });
      return Promise.resolve({
        url: `sqlite:${file}`,
        repository,
        age: async (taskId, days) => {
          const Database = (await import('better-sqlite3')).default;
          const db = new Database(file);
          db.pragma('busy_timeout = 5000');
          db.prepare('UPDATE horae_tasks SET updated_at = updated_at - ? WHERE id = ?').run(days * 86_400_000, taskId);
          db.close();
        },
        dispose: async () => {
          await repository.close();
          rmSync(dir, { recursive: true, force: true });
        },
      });
    },
  },
  {
    name: 'PostgreSQL',
    open: async () => {
      const schema = testSchema();
      const repository = new PostgresRepository({ connectionString: PG_URL, schema, poolSize: 2 });
      await repository.init();
      return {
        url: `${PG_URL}?schema=${schema}`,
        repository,
        age: async (taskId, days) => {
          const client = new pg.Client({ connectionString: PG_URL });
          await client.connect();
          await client.query(`UPDATE "${schema}".tasks SET updated_at = updated_at - make_interval(days => $1) WHERE id = $2`, [days, taskId]);
          await client.end();
        },
        dispose: async () => {
          await repository.close();
          await dropSchema(schema);
        },
      };
    },
  },
];

const boom = (message: string): TaskError => ({ name: 'PaymentError', message, code: 'CARD_DECLINED' });

/**
 * Seeds: `pending` (Initialized, work email), `failed` (work charge: a retry then a failure, two attempts with
 * errors), `done` (work email, Done).
 */
export async function seed(repository: Repository): Promise<{ pending: string; failed: string; done: string }> {
  const past = new Date(Date.now() - 60_000);
  await repository.insert({ id: 'pending-1', workId: 'email', param: { to: 'ada@example.com' }, scheduledAt: new Date(Date.now() + 3_600_000) });
  await repository.insert({ id: 'failed-1', workId: 'charge', param: { amount: 42 }, scheduledAt: past, maxAttempts: 2 });
  const first = await repository.claim('failed-1', { owner: 'node-a', leaseMs: 30_000 });
  await repository.release('failed-1', first!.lease!.token, { runAt: past, error: boom('card declined (first try)') });
  const second = await repository.claim('failed-1', { owner: 'node-b', leaseMs: 30_000 });
  await repository.markAsFailed('failed-1', boom('card declined for good'), second!.lease!.token);
  await repository.insert({ id: 'done-1', workId: 'email', param: { to: 'bob@example.com' }, scheduledAt: past });
  const run = await repository.claim('done-1', { owner: 'node-a', leaseMs: 30_000 });
  await repository.markAsDone('done-1', run!.lease!.token);
  return { pending: 'pending-1', failed: 'failed-1', done: 'done-1' };
}
