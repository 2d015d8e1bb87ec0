/**
 * The SQLite hook outbox beyond the shared rules: the version 6 → 7 → 8 migrations, and durable status hooks across a
 * restart on one database file (deliveries pending when a node stops are delivered by the next one).
 */
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { Webhook } from 'standardwebhooks';
import { VirtualClock } from '@horae/core/testing';
import { WorkRegistry, createHorae, generateStatusHookSecret, type Horae } from '@horae/storage';
import { MIGRATIONS, SCHEMA_VERSION, SqliteRepository, migrate, readSchemaVersion, type SqliteHookOutbox } from '@horae/repo-sqlite';
import { tempDir, type TempDir } from './temp-database.js';
import { Receiver } from '../../storage/test/hook-receiver.js';
import { waitUntil } from '../../../test/support/wait-until.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function dir(): TempDir {
  const created = tempDir();
  cleanups.push(() => created.remove());
  return created;
}

describe('SQLite hook outbox: schema', () => {
  it('versions 7 and 8 add the outbox and the hook triggers to a version 6 file, keep its tasks, and its tasks write deliveries', async () => {
    const path6 = dir().file();
    const db6 = new Database(path6);
    migrate(db6, MIGRATIONS.slice(0, 6));
    expect(readSchemaVersion(db6)).toBe(6);
    db6.close();
    const seeded = new Database(path6);
    seeded
      .prepare(
        `INSERT INTO horae_tasks (id, work_id, param, scheduled_at, state, priority, attempt, max_attempts, created_at, updated_at, change_seq)
         VALUES ('kept', 'w', '{}', 1000, 'Initialized', 0, 0, 1, 500, 500, 1)`,
      )
      .run();
    seeded.close();
    const repo6 = new SqliteRepository({ database: path6 });
    expect(SCHEMA_VERSION).toBe(8);
    const task = await repo6.getById('kept');
    expect(task).toMatchObject({ state: 'Initialized', workId: 'w' });
    await repo6.hookOutbox().enqueueHookDeliveries([{ id: 'd1', hook: 'default', taskId: task.id, body: '{}' }]);
    expect((await repo6.hookOutbox().listHookDeliveries()).map((d) => d.id)).toEqual(['d1']);
    // A task stored before the triggers existed writes its deliveries like any other.
    await (repo6.hookOutbox() as SqliteHookOutbox).subscribeHooks(['audit']);
    const { task: cancelled } = await repo6.markAsCancelled('kept');
    const [row] = await repo6.hookOutbox().listHookDeliveries({ hook: 'audit' });
    expect(JSON.parse(row!.body)).toEqual({ taskId: 'kept', workId: 'w', from: 'Initialized', to: 'Cancelled', attempt: 0, time: cancelled.updatedAt.toISOString() });
    await repo6.close();
    const check = new Database(path6);
    expect(readSchemaVersion(check)).toBe(8);
    expect(check.prepare(`SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'horae_hook_outbox' AND name LIKE 'horae_%' ORDER BY name`).all()).toEqual([
      { name: 'horae_hook_outbox_pending' },
      { name: 'horae_hook_outbox_state' },
      { name: 'horae_hook_outbox_task' },
    ]);
    check.close();
  });

  it('a claim walks the pending index in seq order, not the table, even past thousands of dead letters', async () => {
    const path = dir().file();
    const repository = new SqliteRepository({ database: path });
    const outbox = repository.hookOutbox();
    await outbox.enqueueHookDeliveries(Array.from({ length: 3000 }, (_, i) => ({ id: `old${i}`, hook: 'default', taskId: `o${i}`, body: '{}' })));
    for (let claimed = await outbox.claimHookDeliveries({ hooks: ['default'], limit: 1000, leaseMs: 60_000 }); claimed.length > 0; claimed = await outbox.claimHookDeliveries({ hooks: ['default'], limit: 1000, leaseMs: 60_000 })) {
      for (const c of claimed) await outbox.settleHookDelivery(c.id, c.token, { outcome: 'dead', error: 'gone' });
    }
    await outbox.enqueueHookDeliveries([{ id: 'live', hook: 'default', taskId: 't', body: '{}' }]);
    await repository.close();
    const db = new Database(path);
    db.exec('ANALYZE');
    const plan = db
      .prepare(
        `EXPLAIN QUERY PLAN SELECT o.seq FROM horae_hook_outbox o INDEXED BY horae_hook_outbox_pending WHERE o.state = 'pending' AND o.hook IN (SELECT value FROM json_each('["default"]'))
         AND o.next_attempt_at <= 0 AND NOT EXISTS (SELECT 1 FROM horae_hook_outbox p WHERE p.state = 'pending' AND p.hook = o.hook AND p.task_id = o.task_id AND p.seq < o.seq)
         ORDER BY o.seq LIMIT 10`,
      )
      .all() as Array<{ detail: string }>;
    const details = plan.map((p) => p.detail).join('\n');
    expect(details).toMatch(/SEARCH o USING INDEX horae_hook_outbox_pending/);
    db.close();
    const reopened = new SqliteRepository({ database: path });
    cleanups.push(() => reopened.close());
    expect((await reopened.hookOutbox().claimHookDeliveries({ hooks: ['default'], limit: 10, leaseMs: 60_000 })).map((c) => c.id)).toEqual(['live']);
  });
});

describe('SQLite durable status hooks across a restart', () => {
  it('deliveries pending when a node stops are delivered after a new node starts on the same file', async () => {
    const path = dir().file();
    const clock = new VirtualClock({ now: Date.now() });
    let status = 503;
    const receiver = new Receiver();
    receiver.respond = () => status;
    const url = await receiver.listen();
    cleanups.push(() => receiver.close());
    const received = receiver.received;
    const secret = generateStatusHookSecret();
    const registry = (): WorkRegistry => new WorkRegistry().register('w', () => 'ok');
    const start = async (): Promise<{ horae: Horae; repository: SqliteRepository }> => {
      const repository = new SqliteRepository({ database: path, clock });
      const horae = createHorae({ repository, registry: registry(), clock, statusHooks: { url, secret, backoff: () => 60_000 }, schedulerOptions: { wallClockCheckMs: 3_600_000 } });
      await horae.start();
      return { horae, repository };
    };

    const first = await start();
    const handle = await first.horae.schedule({ workId: 'w' });
    await clock.advance(0);
    await handle.result;
    await receiver.requests(1);
    await first.horae.durableHooks!.flush();
    await first.horae.stop({ hookGraceMs: 0, timeoutMs: 0 });
    await first.repository.close();

    const reopened = new SqliteRepository({ database: path, clock });
    expect((await reopened.hookOutbox().listHookDeliveries({ state: 'pending' })).map((d) => [(JSON.parse(d.body) as { to: string }).to, d.attempts])).toEqual([
      ['Initialized', 1],
      ['Working', 0],
      ['Done', 0],
    ]);
    await reopened.close();

    status = 204;
    const second = await start();
    cleanups.push(async () => {
      await second.horae.stop({ hookGraceMs: 0, timeoutMs: 0 });
      await second.repository.close();
    });
    // The first change waits out its stored backoff (a minute on the database clock), then the rest follow in order.
    await clock.advance(59_000);
    expect(received).toHaveLength(1);
    await clock.advance(1_000);
    await waitUntil(async () => (await second.repository.hookOutbox().listHookDeliveries()).length === 0, 'the outbox to empty');
    const delivered = received.slice(1);
    expect(delivered.map((r) => r.json.to)).toEqual(['Initialized', 'Working', 'Done']);
    for (const r of delivered) expect(new Webhook(secret).verify(r.raw.toString('utf8'), r.headers as Record<string, string>)).toBeTruthy();
    expect(delivered[0]!.headers['webhook-id']).toBe(received[0]!.headers['webhook-id']);
  });
});
