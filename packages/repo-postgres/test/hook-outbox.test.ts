/**
 * The PostgreSQL hook outbox beyond the shared rules: the version 6 → 7 → 8 migrations, claims racing on four
 * connections, and durable status hooks across a restart on one schema (what a stopped node left pending is
 * delivered by a node started later).
 */
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { Webhook } from 'standardwebhooks';
import { realClock } from '@horae/core';
import { WorkRegistry, createHorae, generateStatusHookSecret } from '@horae/storage';
import { MIGRATIONS, PostgresRepository, SCHEMA_VERSION, migrate, type PostgresHookOutbox } from '@horae/repo-postgres';
import { PG_URL, dropSchema, rawClient, testSchema } from './pg-fixture.js';
import { Receiver } from '../../storage/test/hook-receiver.js';
import { waitUntil } from '../../../test/support/wait-until.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function schema(): string {
  const name = testSchema();
  cleanups.push(() => dropSchema(name));
  return name;
}

function open(name: string): PostgresRepository {
  const repository = new PostgresRepository({ connectionString: PG_URL, schema: name, poolSize: 4 });
  cleanups.push(() => repository.close().catch(() => undefined));
  return repository;
}

describe('PostgreSQL hook outbox', () => {
  it('versions 7 and 8 add the outbox and the hook triggers to a version 6 schema, keep its tasks, and its tasks write deliveries', async () => {
    const name = schema();
    const pool = new pg.Pool({ connectionString: PG_URL, max: 1 });
    cleanups.push(() => pool.end());
    await migrate(pool, name, MIGRATIONS.slice(0, 6));
    const client = await rawClient();
    try {
      await client.query(
        `INSERT INTO "${name}".tasks (id, work_id, param, scheduled_at, state, priority, attempt, max_attempts, created_at, updated_at)
         VALUES ('kept', 'w', '{}', now() + interval '1 hour', 'Initialized', 0, 0, 1, now(), now())`,
      );
    } finally {
      await client.end();
    }
    const repository = open(name);
    expect(await repository.getById('kept')).toMatchObject({ state: 'Initialized', workId: 'w' });
    expect(SCHEMA_VERSION).toBe(8);
    await repository.hookOutbox().enqueueHookDeliveries([{ id: 'd1', hook: 'default', taskId: 'kept', body: '{"a":"ü"}' }]);
    expect(await repository.hookOutbox().listHookDeliveries()).toMatchObject([{ id: 'd1', body: '{"a":"ü"}', state: 'pending', attempts: 0 }]);
    // A task stored before the triggers existed writes its deliveries like any other.
    await (repository.hookOutbox() as PostgresHookOutbox).subscribeHooks(['audit']);
    const { task } = await repository.markAsCancelled('kept');
    const [row] = await repository.hookOutbox().listHookDeliveries({ hook: 'audit' });
    expect(JSON.parse(row!.body)).toEqual({ taskId: 'kept', workId: 'w', from: 'Initialized', to: 'Cancelled', attempt: 0, time: task.updatedAt.toISOString() });
    const check = await rawClient();
    try {
      const versions = await check.query<{ v: number }>(`SELECT max(version) AS v FROM "${name}".horae_migrations`);
      expect(Number(versions.rows[0]!.v)).toBe(8);
    } finally {
      await check.end();
    }
  });

  it('four connections claiming at once take disjoint rows, and together take them all', async () => {
    const name = schema();
    const repositories = [open(name), open(name), open(name), open(name)];
    const rows = Array.from({ length: 200 }, (_, i) => ({ id: `d${i}`, hook: 'default', taskId: `t${i}`, body: '{}' }));
    await repositories[0]!.hookOutbox().enqueueHookDeliveries(rows);
    const claimed: string[] = [];
    await Promise.all(
      repositories.map(async (repository) => {
        for (;;) {
          const batch = await repository.hookOutbox().claimHookDeliveries({ hooks: ['default'], limit: 7, leaseMs: 600_000 });
          if (batch.length === 0) return;
          claimed.push(...batch.map((b) => b.id));
        }
      }),
    );
    expect(new Set(claimed).size).toBe(claimed.length);
    expect(claimed.length).toBe(200);
  });

  it('a claim walks the pending index of its hook, not the primary key past the dead letters', async () => {
    const name = schema();
    const outbox = open(name).hookOutbox();
    await outbox.enqueueHookDeliveries(Array.from({ length: 3000 }, (_, i) => ({ id: `d${i}`, hook: 'default', taskId: `t${i % 1000}`, body: '{}' })));
    for (let k = 0; k < 2; k++) {
      const claimed = await outbox.claimHookDeliveries({ hooks: ['default'], limit: 1000, leaseMs: 60_000 });
      for (const c of claimed) await outbox.settleHookDelivery(c.id, c.token, { outcome: 'dead', error: 'gone' });
    }
    const client = await rawClient();
    try {
      await client.query(`ANALYZE "${name}".hook_outbox`);
      // The claim's walk, as hook-outbox.ts writes it.
      const plan = await client.query<{ 'QUERY PLAN': string }>(
        `EXPLAIN SELECT o.seq FROM "${name}".hook_outbox o
         WHERE o.state = 'pending' AND o.hook = $1 AND o.next_attempt_at <= statement_timestamp() AND (o.lease_until IS NULL OR o.lease_until <= statement_timestamp())
           AND NOT EXISTS (SELECT 1 FROM "${name}".hook_outbox p WHERE p.state = 'pending' AND p.hook = o.hook AND p.task_id = o.task_id AND p.seq < o.seq)
         ORDER BY o.seq LIMIT $2 FOR UPDATE SKIP LOCKED`,
        ['default', 4],
      );
      expect(plan.rows.map((r) => r['QUERY PLAN']).join('\n')).toMatch(/Index Scan using hook_outbox_pending on hook_outbox o/);
    } finally {
      await client.end();
    }
    const [next] = await outbox.claimHookDeliveries({ hooks: ['default', 'unknown'], limit: 1, leaseMs: 60_000 });
    expect(next).toMatchObject({ id: 'd2000', attempts: 1 });
  });

  it('deliveries pending when a node stops are delivered after a new node starts on the same schema', async () => {
    const name = schema();
    let status = 503;
    const receiver = new Receiver();
    receiver.respond = () => status;
    const url = await receiver.listen();
    cleanups.push(() => receiver.close());
    const received = receiver.received;
    const secret = generateStatusHookSecret();
    const start = (repository: PostgresRepository) =>
      createHorae({
        repository,
        registry: new WorkRegistry().register('w', () => 'ok'),
        clock: realClock,
        statusHooks: { url, secret, backoff: () => 300, pollIntervalMs: 50 },
      });

    const firstRepository = open(name);
    const first = start(firstRepository);
    await first.start();
    const handle = await first.schedule({ workId: 'w' });
    await handle.result;
    await receiver.requests(1);
    await first.durableHooks!.flush();
    await first.stop({ hookGraceMs: 0, timeoutMs: 0 });
    await firstRepository.close();

    const pending = await open(name).hookOutbox().listHookDeliveries({ state: 'pending' });
    expect(pending.map((d) => (JSON.parse(d.body) as { to: string }).to)).toEqual(['Initialized', 'Working', 'Done']);
    expect(pending[0]!.attempts).toBeGreaterThanOrEqual(1);
    expect(pending[0]!.lastError).toContain('503');

    status = 204;
    const before = received.length;
    const secondRepository = open(name);
    const second = start(secondRepository);
    cleanups.push(() => second.stop({ hookGraceMs: 0, timeoutMs: 0 }));
    await second.start();
    await waitUntil(async () => (await secondRepository.hookOutbox().listHookDeliveries()).length === 0, 'the outbox to empty');
    const delivered = received.slice(before);
    expect(delivered.map((r) => r.json.to)).toEqual(['Initialized', 'Working', 'Done']);
    for (const r of delivered) expect(new Webhook(secret).verify(r.raw.toString('utf8'), r.headers as Record<string, string>)).toBeTruthy();
  });
});
