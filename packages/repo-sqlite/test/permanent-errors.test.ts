/**
 * Errors that no retry can cure are answers, not outages (issue 10, defect 1): SQLite's refusal of a value
 * (`SQLITE_MISMATCH`, `SQLITE_TOOBIG`, a constraint) reaches the caller as a ValueRefusedError at once; a
 * `SQLITE_MISMATCH` used to be a RepositoryError, retried forever by the durable writer.
 */
import Database from 'better-sqlite3';
import { VirtualClock } from '@horae/core/testing';
import { RepositoryError, ValueRefusedError, WorkRegistry, createHorae } from '@horae/storage';
import { SqliteRepository } from '@horae/repo-sqlite';
import { afterEach, describe, expect, it } from 'vitest';
import { translateError } from '../src/translate-error.js';

const opened: Database.Database[] = [];
afterEach(() => {
  for (const db of opened.splice(0)) db.close();
});

/**
 * A repository whose database refuses, with a real `SQLITE_MISMATCH` ("datatype mismatch"), every task of the work
 * `refused`: a trigger an operator added writes the workId into an INTEGER PRIMARY KEY. Horae's checks let it through;
 * only the database knows.
 */
function refusingRepository(options: { groupCommit?: boolean } = {}): SqliteRepository {
  const db = new Database(':memory:');
  opened.push(db);
  const repository = new SqliteRepository({ database: db, ...options });
  db.exec(`
    CREATE TABLE refusal_probe (n INTEGER PRIMARY KEY);
    CREATE TRIGGER refuse_work BEFORE INSERT ON horae_tasks WHEN NEW.work_id = 'refused'
    BEGIN INSERT INTO refusal_probe (n) VALUES (NEW.work_id); END;
  `);
  return repository;
}

const later = (): Date => new Date(Date.now() + 3_600_000);

describe('SQLite refusals that no retry can cure', () => {
  it('a real SQLITE_MISMATCH is a ValueRefusedError naming its code; nothing is written', async () => {
    const repository = refusingRepository();
    const error = await repository.insert({ workId: 'refused', scheduledAt: later() }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValueRefusedError);
    expect(error).not.toBeInstanceOf(RepositoryError);
    expect((error as ValueRefusedError).driverCode).toBe('SQLITE_MISMATCH');
    expect((await repository.countByState()).Initialized).toBe(0);
  });

  it('in a group commit only the refused write fails; the others of its batch land', async () => {
    const repository = refusingRepository({ groupCommit: true });
    const [refused, accepted] = await Promise.allSettled([
      repository.insert({ workId: 'refused', scheduledAt: later() }),
      repository.insert({ workId: 'fine', scheduledAt: later() }),
    ]);
    expect(refused.status === 'rejected' && refused.reason instanceof ValueRefusedError).toBe(true);
    expect(accepted.status).toBe('fulfilled');
    expect((await repository.countByState()).Initialized).toBe(1);
  });

  it('schedule() settles with the ValueRefusedError instead of being retried as an outage, and stop() finishes', async () => {
    const repository = refusingRepository();
    const registry = new WorkRegistry().register('refused', () => Promise.resolve()).register('fine', () => Promise.resolve());
    const horae = createHorae({ repository, registry, clock: new VirtualClock({ now: Date.now() }), scheduleTickMs: 0, syncIntervalMs: 0 });
    await horae.start();
    try {
      const retried = new Promise<never>((_, reject) => {
        horae.events.on('repository:error', (event) => reject(new Error(`retried as an outage: ${event.error.message}`)));
      });
      const outcome = await Promise.race([horae.schedule({ workId: 'refused', delayMs: 3_600_000 }), retried]).catch((e: unknown) => e);
      expect(outcome).toBeInstanceOf(ValueRefusedError);
      const handle = await horae.schedule({ workId: 'fine', delayMs: 3_600_000 });
      expect((await repository.getById(handle.taskId)).state).toBe('Initialized');
    } finally {
      await horae.stop({ timeoutMs: 0, hookGraceMs: 0 });
    }
  });

  it('a locked or full database stays an outage (retried); messages quote at most 200 characters of the driver', () => {
    const busy = Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' });
    const full = Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
    const ioerr = Object.assign(new Error('disk I/O error'), { code: 'SQLITE_IOERR_WRITE' });
    for (const outage of [busy, full, ioerr]) expect(translateError(outage, 'insert')).toBeInstanceOf(RepositoryError);
    const tooBig = Object.assign(new Error(`string or blob too big: ${'x'.repeat(1_000_000)}`), { code: 'SQLITE_TOOBIG' });
    const refused = translateError(tooBig, 'insert');
    expect(refused).toBeInstanceOf(ValueRefusedError);
    expect(refused.message.length).toBeLessThan(400);
  });
});
