/**
 * Errors that no retry can cure are answers, not outages (issue 10, defect 1): PostgreSQL's refusal of a value it
 * can never store (SQLSTATE class 54 "index row size exceeds btree maximum", class 22, class 23) reaches the caller
 * as a ValueRefusedError at once, where it used to be a RepositoryError retried forever (`schedule()` never settled
 * and `stop()` never finished). Each test provokes the real server error.
 */
import { randomBytes } from 'node:crypto';
import { InvalidInputError } from '@horae/core';
import { VirtualClock } from '@horae/core/testing';
import { DurableWriter, RepositoryError, ValueRefusedError, WorkRegistry, createHorae, type Repository, type TaskInfo } from '@horae/storage';
import { afterEach, describe, expect, it } from 'vitest';
import type { PostgresRepository } from '@horae/repo-postgres';
import { translateError } from '../src/translate-error.js';
import { createPgFixture, rawClient } from './pg-fixture.js';

/**
 * Text that pglz cannot shrink (random base64), longer than the ~2,700 bytes a btree index row may take: an index
 * stores short values inline, compressed when it can, so a long but repetitive key would fit.
 */
function incompressible(length: number): string {
  return randomBytes(length).toString('base64').slice(0, length);
}

type Fixture = Awaited<ReturnType<typeof createPgFixture>>;
let fixture: Fixture | undefined;

afterEach(async () => {
  await fixture?.dispose();
  fixture = undefined;
});

/**
 * Settles with what `call` settles with, or rejects with "retried" as soon as the writer reports a retry: the writer
 * waits on a virtual clock that never advances, so before the fix the call would hang rather than fail.
 */
function runOnce<T>(call: () => Promise<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const writer = new DurableWriter({
      clock: new VirtualClock(),
      onError: (report) => reject(new Error(`retried as an outage: ${report.error.message}`)),
    });
    writer.run('write', undefined, call).then(resolve, reject);
  });
}

/**
 * Two due tasks: first in claim order (priority 1) one whose workId is given a legacy length of 4,000 characters
 * behind the repository's back (while Initialized no index holds a workId, so a version without limits stored it),
 * then a plain one behind it.
 */
async function insertLegacyBlocker(fixture: Fixture): Promise<{ legacy: TaskInfo; behind: TaskInfo }> {
  const past = new Date(Date.now() - 600_000);
  const { task: legacy } = await fixture.repository.insert({ workId: 'placeholder', scheduledAt: past, priority: 1 });
  const { task: behind } = await fixture.repository.insert({ workId: 'w', scheduledAt: past });
  const client = await rawClient();
  try {
    await client.query(`UPDATE "${fixture.schema}".tasks SET work_id = $1 WHERE id = $2`, [incompressible(4_000), legacy.id]);
  } finally {
    await client.end();
  }
  return { legacy, behind };
}

describe('PostgreSQL refusals that no retry can cure', () => {
  it('a key over the btree row limit (SQLSTATE 54000) is a ValueRefusedError, and the durable writer does not retry it', async () => {
    fixture = await createPgFixture();
    const { task } = await fixture.repository.insert({ workId: 'w', scheduledAt: new Date(Date.now() + 3_600_000), uniqueKey: 'short' });
    const client = await rawClient();
    try {
      // The repository refuses such a key before writing (MAX_UNIQUE_KEY_LENGTH); here the check is bypassed, so the
      // server itself refuses it, as it would a key that only an operator's index makes too large.
      const write = (): Promise<unknown> =>
        client.query(`UPDATE "${fixture!.schema}".tasks SET unique_key = $1 WHERE id = $2`, [incompressible(4_000), task.id]).catch((error: unknown) => {
          throw translateError(error, 'set a uniqueKey');
        });
      const error = await runOnce(write).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ValueRefusedError);
      expect(error).toBeInstanceOf(InvalidInputError);
      expect(error).not.toBeInstanceOf(RepositoryError);
      expect((error as ValueRefusedError).driverCode).toBe('54000');
      expect((error as ValueRefusedError).message).toMatch(/index row size/);
    } finally {
      await client.end();
    }
    // Nothing was written.
    expect((await fixture.repository.getById(task.id)).uniqueKey).toBe('short');
  });

  it('a data exception (class 22: a NUL character in text) and a constraint (class 23) are ValueRefusedErrors; a dropped connection stays an outage', () => {
    const nul = Object.assign(new Error('invalid byte sequence for encoding "UTF8": 0x00'), { code: '22021' });
    const check = Object.assign(new Error('new row violates check constraint'), { code: '23514' });
    const refused = Object.assign(new Error('connection refused'), { code: 'ECONNREFUSED' });
    const shutdown = Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' });
    const diskFull = Object.assign(new Error('could not extend file: No space left on device'), { code: '53100' });
    expect(translateError(nul, 'insert a task')).toBeInstanceOf(ValueRefusedError);
    expect(translateError(check, 'insert a task')).toBeInstanceOf(ValueRefusedError);
    for (const outage of [refused, shutdown, diskFull]) expect(translateError(outage, 'insert a task')).toBeInstanceOf(RepositoryError);
  });

  it('quotes at most 200 characters of the server message, which for a data exception repeats the value', () => {
    const value = 'v'.repeat(1_000_000);
    const error = translateError(Object.assign(new Error(`invalid input syntax for type integer: "${value}"`), { code: '22P02' }), 'read a task');
    expect(error.message.length).toBeLessThan(400);
  });

  it('a task stored before the limits with a workId no Working row can index does not block the claim order: it is failed, the tasks behind it are claimed', async () => {
    fixture = await createPgFixture();
    const { legacy, behind } = await insertLegacyBlocker(fixture);
    const claimed = await fixture.repository.claimDue({ owner: 'node-a', leaseMs: 60_000, limit: 10 });
    expect(claimed.map((t) => t.id)).toEqual([behind.id]);
    const failed = await fixture.repository.getById(legacy.id);
    expect(failed.state).toBe('Failed');
    expect(failed.lastError).toMatchObject({ name: 'ValueRefusedError', code: 'INVALID_INPUT' });
    expect(failed.lastError?.message).toMatch(/4000 characters long, over the limit of 255/);
  });

  it('claimDueWithinLimits gets past such a row too', async () => {
    fixture = await createPgFixture();
    const { legacy, behind } = await insertLegacyBlocker(fixture);
    const repository = fixture.repository as PostgresRepository;
    const claimed = await repository.claimDueWithinLimits({ owner: 'node-a', leaseMs: 60_000, limit: 10, workLimits: { w: 5 } });
    expect(claimed.map((t) => t.id)).toEqual([behind.id]);
    expect((await repository.getById(legacy.id)).state).toBe('Failed');
  });

  it('schedule() settles with the ValueRefusedError on the real server, and stop() finishes', async () => {
    fixture = await createPgFixture();
    const repository: Repository = fixture.repository;
    // An index an operator added: a param whose text is over the btree row limit can never be stored. Horae's own
    // bounds (1 MiB of param) let it through; only the database knows.
    const client = await rawClient();
    try {
      await client.query(`CREATE INDEX tasks_param_text ON "${fixture.schema}".tasks ((param::text))`);
    } finally {
      await client.end();
    }
    const clock = new VirtualClock({ now: Date.now() });
    const registry = new WorkRegistry().register('w', () => Promise.resolve());
    const horae = createHorae({ repository, registry, clock, scheduleTickMs: 0, syncIntervalMs: 0 });
    await horae.start();
    try {
      const retried = new Promise<never>((_, reject) => {
        horae.events.on('repository:error', (event) => reject(new Error(`retried as an outage: ${event.error.message}`)));
      });
      const outcome = await Promise.race([horae.schedule({ workId: 'w', param: { blob: incompressible(4_000) }, delayMs: 3_600_000 }), retried]).catch((e: unknown) => e);
      expect(outcome).toBeInstanceOf(ValueRefusedError);
      expect((outcome as ValueRefusedError).driverCode).toBe('54000');
      expect((await repository.countByState()).Initialized).toBe(0);
      // A task with a storable param goes through.
      const handle = await horae.schedule({ workId: 'w', param: { blob: 'small' }, delayMs: 3_600_000 });
      expect((await repository.getById(handle.taskId)).state).toBe('Initialized');
    } finally {
      await horae.stop({ timeoutMs: 0, hookGraceMs: 0 });
    }
    expect(horae.started).toBe(false);
  });
});
