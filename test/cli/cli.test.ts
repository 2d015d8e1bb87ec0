/**
 * The `horae` command as operators run it: the built bin in a child process, against a real SQLite file and the
 * real PostgreSQL, on tasks seeded through the adapters.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TaskState, isHookOutboxProvider, type TaskAttempt, type TaskInfo } from '@horae/storage';
import { SCHEMA_VERSION as SQLITE_SCHEMA_VERSION } from '@horae/repo-sqlite';
import { SCHEMA_VERSION as PG_SCHEMA_VERSION } from '@horae/repo-postgres';
import { buildPackagesForChildren, builtPackageUrl } from '../support/built-packages.js';
import { waitUntil } from '../support/wait-until.js';
import { PG_URL, dropSchema, rawClient, testSchema } from '../../packages/repo-postgres/test/pg-fixture.js';
import { BACKENDS, horae, seed, spawnHorae, type CliDatabase } from './cli-harness.js';

beforeAll(() => buildPackagesForChildren(['core', 'storage', 'repo-sqlite', 'repo-postgres', 'repo-mongo', 'horae', 'cli']), 120_000);

const json = <T>(text: string): T => JSON.parse(text) as T;

describe.each(BACKENDS)('horae on $name', ({ name, open }) => {
  let db: CliDatabase;
  afterEach(async () => {
    await db?.dispose();
  });

  it('tasks ls: a table, filters by state and work, several states, and --json', async () => {
    db = await open();
    await seed(db.repository);
    const table = await horae(['tasks', 'ls', '--db', db.url]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^ID\s+WORK\s+STATE/);
    expect(table.stdout).toMatch(/failed-1\s+charge\s+Failed\s+2\/2/);
    expect(table.stdout).toContain('card declined for good');

    const failed = await horae(['tasks', 'ls', '--db', db.url, '--state', 'Failed', '--json']);
    expect(failed.code).toBe(0);
    expect(json<{ tasks: TaskInfo[] }>(failed.stdout).tasks.map((t) => t.id)).toEqual(['failed-1']);

    const emails = await horae(['tasks', 'ls', '--db', db.url, '--work', 'email', '--json']);
    expect(json<{ tasks: TaskInfo[] }>(emails.stdout).tasks.map((t) => t.id).sort()).toEqual(['done-1', 'pending-1']);

    // Two states, one task a page: the merged cursor walks both, each task once.
    const seen: string[] = [];
    let after: string | null = null;
    do {
      const page = await horae(['tasks', 'ls', '--db', db.url, '--state', 'Done', '--state', 'Initialized', '--limit', '1', '--json', ...(after === null ? [] : ['--after', after])]);
      expect(page.code).toBe(0);
      const parsed = json<{ tasks: TaskInfo[]; next: string | null }>(page.stdout);
      seen.push(...parsed.tasks.map((t) => t.id));
      after = parsed.next;
    } while (after !== null && seen.length < 5);
    expect(seen).toEqual(['pending-1', 'done-1']);
  });

  it('tasks ls searches: a failed task found by a field of its param, by id prefix, by time; bad filters exit 2', async () => {
    db = await open();
    await seed(db.repository);
    const byParam = await horae(['tasks', 'ls', '--db', db.url, '--state', 'Failed', '--param', 'amount=42', '--json']);
    expect(byParam.code).toBe(0);
    expect(json<{ tasks: TaskInfo[] }>(byParam.stdout).tasks.map((t) => t.id)).toEqual(['failed-1']);
    // A string value needs no quotes; "42" (quoted) is a string and does not match the number 42.
    const byEmail = await horae(['tasks', 'ls', '--db', db.url, '--param', 'to=bob@example.com', '--json']);
    expect(json<{ tasks: TaskInfo[] }>(byEmail.stdout).tasks.map((t) => t.id)).toEqual(['done-1']);
    const asString = await horae(['tasks', 'ls', '--db', db.url, '--param', 'amount="42"', '--json']);
    expect(json<{ tasks: TaskInfo[] }>(asString.stdout).tasks).toEqual([]);
    const byPrefix = await horae(['tasks', 'ls', '--db', db.url, '--id-prefix', 'pend']);
    expect(byPrefix.code).toBe(0);
    expect(byPrefix.stdout).toMatch(/pending-1\s+email\s+Initialized/);
    expect(byPrefix.stdout).not.toContain('failed-1');
    const ended = await horae(['tasks', 'ls', '--db', db.url, '--ended-from', '1h', '--json']);
    expect(json<{ tasks: TaskInfo[] }>(ended.stdout).tasks.map((t) => t.id).sort()).toEqual(['done-1', 'failed-1']);
    const noEquals = await horae(['tasks', 'ls', '--db', db.url, '--param', 'amount']);
    expect(noEquals.code).toBe(2);
    expect(noEquals.stderr).toContain('--param must be path=value');
    const badTime = await horae(['tasks', 'ls', '--db', db.url, '--created-from', 'yesterday']);
    expect(badTime.code).toBe(2);
    const tooDeep = await horae(['tasks', 'ls', '--db', db.url, '--param', `${Array.from({ length: 40 }, () => 'a').join('.')}=1`]);
    expect(tooDeep.code).toBe(2);
  });

  it('tasks show: the task, its last error, and every attempt with outcome, node and error', async () => {
    db = await open();
    await seed(db.repository);
    const shown = await horae(['tasks', 'show', 'failed-1', '--db', db.url]);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(/state\s+Failed/);
    expect(shown.stdout).toMatch(/last error\s+PaymentError \[CARD_DECLINED\]: card declined for good/);
    expect(shown.stdout).toContain('Attempts (2)');
    expect(shown.stdout).toMatch(/1\s+1\s+retried\s+node-a\s+\S+\s+\S+\s+PaymentError \[CARD_DECLINED\]: card declined \(first try\)/);
    expect(shown.stdout).toMatch(/2\s+2\s+failed\s+node-b/);

    const asJson = await horae(['tasks', 'show', 'failed-1', '--db', db.url, '--json']);
    const doc = json<{ task: TaskInfo; attempts: TaskAttempt[] }>(asJson.stdout);
    expect(doc.task.lastError?.message).toBe('card declined for good');
    expect(doc.attempts.map((a) => [a.outcome, a.node, a.error?.message])).toEqual([
      ['retried', 'node-a', 'card declined (first try)'],
      ['failed', 'node-b', 'card declined for good'],
    ]);

    const missing = await horae(['tasks', 'show', 'nope', '--db', db.url]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('no task has the id "nope"');
  });

  it('tasks cancel: the task is Cancelled; a second cancel says it had already ended (exit 1)', async () => {
    db = await open();
    await seed(db.repository);
    const first = await horae(['tasks', 'cancel', 'pending-1', '--reason', 'customer left', '--db', db.url]);
    expect(first.code).toBe(0);
    expect(first.stdout).toContain('cancelled task pending-1');
    expect((await db.repository.getById('pending-1')).state).toBe(TaskState.Cancelled);

    const second = await horae(['tasks', 'cancel', 'pending-1', '--db', db.url, '--json']);
    expect(second.code).toBe(1);
    expect(second.stderr).toContain('had already ended (Cancelled)');
    expect(json<{ cancelled: boolean }>(second.stdout).cancelled).toBe(false);
  });

  it('stats: counts per state, and per work with --by-work', async () => {
    db = await open();
    await seed(db.repository);
    const result = await horae(['stats', '--by-work', '--db', db.url, '--json']);
    expect(result.code).toBe(0);
    const doc = json<{ total: number; byState: Record<string, number>; byWork: { works: Record<string, Record<string, number>>; complete: boolean } }>(result.stdout);
    expect(doc.total).toBe(3);
    expect(doc.byState).toEqual({ Initialized: 1, Working: 0, Done: 1, Cancelled: 0, Failed: 1 });
    expect(doc.byWork.works).toEqual({ email: { Initialized: 1, Done: 1 }, charge: { Failed: 1 } });
    expect(doc.byWork.complete).toBe(true);

    const table = await horae(['stats', '--by-work', '--db', db.url]);
    expect(table.stdout).toMatch(/total\s+3/);
    expect(table.stdout).toMatch(/email\s+1\s+0\s+1\s+0\s+0/);
    expect(table.stderr).toBe('');
  });

  it('purge: only terminal tasks older than the duration go', async () => {
    db = await open();
    await seed(db.repository);
    await db.repository.insert({ id: 'old-done', workId: 'email', param: null, scheduledAt: new Date(Date.now() - 60_000) });
    const run = await db.repository.claim('old-done', { owner: 'n', leaseMs: 30_000 });
    await db.repository.markAsDone('old-done', run!.lease!.token);
    await db.age('old-done', 10);
    await db.age('failed-1', 10);
    await db.age('pending-1', 10); // old, but not terminal: it stays

    const result = await horae(['purge', '--older-than', '7d', '--db', db.url, '--json']);
    expect(result.code).toBe(0);
    expect(json<{ deleted: number }>(result.stdout).deleted).toBe(2);
    const left = (await db.repository.list({ limit: 100 })).tasks.map((t) => t.id).sort();
    expect(left).toEqual(['done-1', 'pending-1']);

    const nonsense = await horae(['purge', '--older-than', '-3d', '--db', db.url]);
    expect(nonsense.code).toBe(2);
    expect(nonsense.stderr).toContain('--older-than must be a whole number followed by a unit');
  });

  it('schedules pause and resume', async () => {
    db = await open();
    await db.repository.upsertSchedule({ name: 'nightly', spec: { cron: '30 2 * * *' }, workId: 'report' });
    const paused = await horae(['schedules', 'pause', 'nightly', '--db', db.url]);
    expect(paused.code).toBe(0);
    expect((await db.repository.getSchedule('nightly')).paused).toBe(true);
    const listed = await horae(['schedules', 'ls', '--db', db.url]);
    expect(listed.stdout).toMatch(/nightly\s+report\s+cron 30 2 \* \* \* \(UTC\)\s+paused/);
    const resumed = await horae(['schedules', 'resume', 'nightly', '--db', db.url, '--json']);
    expect(resumed.code).toBe(0);
    expect(json<{ schedule: { paused: boolean } }>(resumed.stdout).schedule.paused).toBe(false);
    expect((await db.repository.getSchedule('nightly')).paused).toBe(false);
    const unknown = await horae(['schedules', 'pause', 'nope', '--db', db.url]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('no schedule is named "nope"');
  });

  it('schedules trigger and remove: the schedule is due now, then gone; an unknown name exits 1', async () => {
    db = await open();
    await db.repository.upsertSchedule({ name: 'hourly', spec: { cron: '0 * * * *' }, workId: 'report' });
    const before = (await db.repository.getSchedule('hourly')).nextRunAt!.getTime();
    const triggered = await horae(['schedules', 'trigger', 'hourly', '--db', db.url, '--json']);
    expect(triggered.code).toBe(0);
    const due = (await db.repository.getSchedule('hourly')).nextRunAt!.getTime();
    expect(due).toBeLessThanOrEqual(Date.now());
    expect(due).toBeLessThan(before);
    const removed = await horae(['schedules', 'remove', 'hourly', '--db', db.url]);
    expect(removed.code).toBe(0);
    expect(removed.stdout).toContain('removed schedule hourly');
    await expect(db.repository.getSchedule('hourly')).rejects.toThrow();
    const again = await horae(['schedules', 'remove', 'hourly', '--db', db.url]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('no schedule is named "hourly"');
  });

  it('hooks dead lists the dead letters; redrive makes one pending again; a redrive of an unknown id exits 1', async () => {
    db = await open();
    const repository = db.repository;
    if (!isHookOutboxProvider(repository)) throw new Error(`${name}'s repository has no hook outbox`);
    const outbox = repository.hookOutbox();
    await outbox.enqueueHookDeliveries([{ id: 'del-1', hook: 'billing', taskId: 'failed-1', body: '{"to":"Failed"}' }]);
    const [claimed] = await outbox.claimHookDeliveries({ hooks: ['billing'], limit: 1, leaseMs: 60_000 });
    await outbox.settleHookDelivery(claimed!.id, claimed!.token, { outcome: 'dead', error: 'HTTP 410 Gone' });
    const dead = await horae(['hooks', 'dead', '--db', db.url, '--json']);
    expect(dead.code).toBe(0);
    expect(json<{ deliveries: { id: string; hook: string; lastError: string }[] }>(dead.stdout).deliveries).toMatchObject([{ id: 'del-1', hook: 'billing', lastError: 'HTTP 410 Gone' }]);
    const table = await horae(['hooks', 'dead', '--hook', 'billing', '--db', db.url]);
    expect(table.stdout).toContain('HTTP 410 Gone');
    const redriven = await horae(['hooks', 'redrive', 'del-1', '--db', db.url]);
    expect(redriven.code).toBe(0);
    expect(await outbox.listHookDeliveries({ state: 'pending' })).toMatchObject([{ id: 'del-1', attempts: 0 }]);
    const unknown = await horae(['hooks', 'redrive', 'del-1', '--db', db.url]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('no dead delivery has the id "del-1"');
  });

  it('doctor: connection, schema version and clock', async () => {
    db = await open();
    const result = await horae(['doctor', '--db', db.url, '--json']);
    expect(result.code).toBe(0);
    const doc = json<{ ok: boolean; schema: { stored: number; supported: number }; clockSkewMs: number | null }>(result.stdout);
    expect(doc.ok).toBe(true);
    expect(doc.schema.stored).toBe(doc.schema.supported);
    if (name === 'PostgreSQL') expect(typeof doc.clockSkewMs).toBe('number');
    else expect(doc.clockSkewMs).toBeNull();
    const human = await horae(['doctor', '--db', db.url]);
    expect(human.stdout).toMatch(/schema\s+ok\s+version \d+ of \d+/);
  });

  it('worker: runs a module\'s works on the database until SIGTERM, then exits 0', async () => {
    db = await open();
    const dir = mkdtempSync(join(tmpdir(), 'horae-worker-'));
    try {
      writeFileSync(
        join(dir, 'works.mjs'),
        `import { defineWork } from ${JSON.stringify(builtPackageUrl('horae'))};
         export const works = [defineWork('greet', { run: async (ctx) => ({ hello: ctx.param.name }) })];`,
      );
      await db.repository.insert({ id: 'greet-1', workId: 'greet', param: { name: 'Ada' }, scheduledAt: new Date() });
      const child = spawnHorae(['worker', './works.mjs', '--db', db.url, '--node-id', 'cli-worker', '--stop-timeout', '5s'], dir);
      let stderr = '';
      child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      await waitUntil(async () => (await db.repository.getById('greet-1')).state === TaskState.Done, 'the worker ran greet-1', { timeoutMs: 20_000 });
      await waitUntil(() => stderr.includes('task:succeeded greet-1'), 'the worker logged the success', { timeoutMs: 5_000 });
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(stderr).toContain('worker:stopped node=cli-worker');
      expect((await db.repository.listAttempts('greet-1'))[0]?.node).toBe('cli-worker');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('horae migrate --dry-run on an empty database writes nothing', () => {
  it('SQLite: a file that does not exist reports version 0 and is not created', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'horae-cli-'));
    try {
      const file = join(dir, 'new.db');
      const result = await horae(['migrate', '--dry-run', '--db', `sqlite:${file}`, '--json']);
      expect(result.code).toBe(0);
      expect(json<{ storedVersion: number; supportedVersion: number; pending: number[] }>(result.stdout)).toMatchObject({ storedVersion: 0, supportedVersion: SQLITE_SCHEMA_VERSION });
      expect(existsSync(file)).toBe(false);
      const applied = await horae(['migrate', '--db', `sqlite:${file}`]);
      expect(applied.code).toBe(0);
      expect(applied.stdout).toContain(`from schema version 0 to ${SQLITE_SCHEMA_VERSION}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('PostgreSQL: an empty schema reports version 0 and stays empty', async () => {
    const schema = testSchema();
    try {
      const result = await horae(['migrate', '--dry-run', '--db', `${PG_URL}?schema=${schema}`]);
      expect(result.code).toBe(0);
      expect(result.stdout).toMatch(/stored schema\s+0 \(no Horae schema yet\)/);
      expect(result.stdout).toMatch(new RegExp(`adapter schema\\s+${PG_SCHEMA_VERSION}`));
      expect(result.stdout).toContain('nothing was written');
      const client = await rawClient();
      const found = await client.query('SELECT 1 FROM information_schema.schemata WHERE schema_name = $1', [schema]);
      await client.end();
      expect(found.rowCount).toBe(0);
    } finally {
      await dropSchema(schema);
    }
  });
});

describe('horae usage and connection errors', () => {
  it('usage errors exit 2', async () => {
    for (const args of [['bogus'], ['tasks', 'show'], ['tasks', 'ls', '--state', 'Sleeping', '--db', 'x.db'], ['tasks', 'ls', '--limit', '0', '--db', 'x.db'], ['purge', '--db', 'x.db'], ['purge', '--older-than', '7 days', '--db', 'x.db']]) {
      const result = await horae(args);
      expect({ args, code: result.code }).toEqual({ args, code: 2 });
    }
  });

  it('no --db, an unknown scheme, or an unreachable server exit 3, with the password masked', async () => {
    const none = await horae(['stats']);
    expect(none.code).toBe(3);
    expect(none.stderr).toContain('no database: pass --db <url> or set HORAE_DB');
    const scheme = await horae(['stats', '--db', 'mysql://root:hunter22@localhost/db']);
    expect(scheme.code).toBe(3);
    expect(scheme.stderr).toContain('unknown database scheme "mysql:"');
    const down = await horae(['stats', '--db', 'postgres://ops:s3cr3t-pw@127.0.0.1:1/test', '--json']);
    expect(down.code).toBe(3);
    expect(down.stderr).toContain('cannot connect to postgres://ops:***@127.0.0.1:1/test');
    expect(down.stderr + down.stdout).not.toContain('s3cr3t-pw');
    expect(json<{ error: { exitCode: number } }>(down.stdout).error.exitCode).toBe(3);
    const missing = await horae(['tasks', 'ls'], { env: { HORAE_DB: join(tmpdir(), 'no-such-dir-horae', 'x.db') } });
    expect(missing.code).toBe(3);
    expect(missing.stderr).toContain('no SQLite database at');
  });
});
