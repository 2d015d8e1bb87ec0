import { describe, expect, it } from 'vitest';
import { LeaseLostError, RepositoryError, type TaskInfo } from '@horae/storage';
import type { RepositoryFixture } from '@horae/storage/testing';
import type { PostgresRepository } from '@horae/repo-postgres';
import { rawClient } from './pg-fixture.js';

const MINUTE = 60_000;
const past = (): Date => new Date(Date.now() - 10 * MINUTE);

type Claimed = TaskInfo & { lease: NonNullable<TaskInfo['lease']> };

async function insertClaimed(repo: PostgresRepository, owner = 'node-a'): Promise<Claimed> {
  const { task } = await repo.insert({ workId: 'w', scheduledAt: past(), maxAttempts: 3 });
  const claimed = await repo.claim(task.id, { owner, leaseMs: MINUTE });
  expect(claimed?.lease).not.toBeNull();
  return claimed as Claimed;
}

/** Runs `body` while a trigger makes every `op` on task_attempts fail, then removes the trigger. */
async function withFailingHistory(schema: string, op: 'INSERT' | 'UPDATE', body: () => Promise<void>): Promise<void> {
  const admin = await rawClient();
  const s = `"${schema}"`;
  try {
    await admin.query(`CREATE FUNCTION ${s}.refuse_history() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'history refused'; END $$`);
    await admin.query(`CREATE TRIGGER refuse_history BEFORE ${op} ON ${s}.task_attempts FOR EACH ROW EXECUTE FUNCTION ${s}.refuse_history()`);
    await body();
  } finally {
    await admin.query(`DROP TRIGGER IF EXISTS refuse_history ON ${s}.task_attempts`);
    await admin.query(`DROP FUNCTION IF EXISTS ${s}.refuse_history()`);
    await admin.end();
  }
}

/** PostgreSQL-only tests of the execution history, registered inside the conformance block. */
export function postgresHistoryTests(fixture: () => RepositoryFixture): void {
  const repo = (): PostgresRepository => fixture().repository as PostgresRepository;
  const schema = (): string => repo().schema;

  describe('PostgreSQL: execution history is written by the transition it records', () => {
    it('a start whose record cannot be written does not happen: neither a claim by id nor a markAsStarted', async () => {
      const { task } = await repo().insert({ workId: 'w', scheduledAt: past() });
      let ahead: TaskInfo | undefined;
      await withFailingHistory(schema(), 'INSERT', async () => {
        await expect(repo().claim(task.id, { owner: 'node-a', leaseMs: MINUTE })).rejects.toBeInstanceOf(RepositoryError);
        expect(await repo().getById(task.id)).toMatchObject({ state: 'Initialized', attempt: 0, claims: 0, lease: null });
        // A claim ahead writes no record, so it happens; its start, which opens one, does not.
        [ahead] = await repo().claimDue({ owner: 'node-a', leaseMs: MINUTE, limit: 5 });
        expect(ahead).toMatchObject({ id: task.id, attempt: 0, claims: 1, lease: { started: false } });
        await expect(repo().markAsStarted(task.id, ahead!.lease!.token)).rejects.toBeInstanceOf(RepositoryError);
      });
      expect(await repo().getById(task.id)).toEqual(ahead);
      expect(await repo().listAttempts(task.id)).toEqual([]);
      // The run counter rolled back too: the start is run 1.
      await repo().markAsStarted(task.id, ahead!.lease!.token);
      expect(await repo().listAttempts(task.id)).toMatchObject([{ run: 1, attempt: 1, node: 'node-a', outcome: 'running' }]);
    });

    it('a markAsDone whose record cannot be closed does not happen', async () => {
      const claimed = await insertClaimed(repo());
      await withFailingHistory(schema(), 'UPDATE', async () => {
        await expect(repo().markAsDone(claimed.id, claimed.lease.token)).rejects.toBeInstanceOf(RepositoryError);
      });
      expect(await repo().getById(claimed.id)).toMatchObject({ state: 'Working', lease: { token: claimed.lease.token } });
      expect(await repo().listAttempts(claimed.id)).toMatchObject([{ outcome: 'running', endedAt: null }]);
      await repo().markAsDone(claimed.id, claimed.lease.token);
      expect(await repo().listAttempts(claimed.id)).toMatchObject([{ outcome: 'succeeded' }]);
    });

    it('grouped markAsDone calls close each winner’s record and leave the refused ones running', async () => {
      await repo().insertMany(Array.from({ length: 12 }, () => ({ workId: 'w', scheduledAt: past() })));
      const ahead = await repo().claimDue({ owner: 'node-g', leaseMs: MINUTE, limit: 12 });
      expect(ahead).toHaveLength(12);
      const claimed = await Promise.all(ahead.map((task) => repo().markAsStarted(task.id, task.lease!.token)));
      const results = await Promise.allSettled(claimed.map((task, i) => repo().markAsDone(task.id, i % 4 === 0 ? 'wrong-token' : task.lease!.token)));
      for (const [i, task] of claimed.entries()) {
        const [attempt, ...rest] = await repo().listAttempts(task.id);
        const result = results[i]!;
        expect(rest).toEqual([]);
        if (i % 4 === 0) {
          expect(result.status === 'rejected' && result.reason instanceof LeaseLostError).toBe(true);
          expect(attempt).toMatchObject({ outcome: 'running', endedAt: null });
        } else {
          const done = result.status === 'fulfilled' ? result.value : undefined;
          expect(done?.state).toBe('Done');
          // The record is closed at the transition's own time.
          expect(attempt).toMatchObject({ outcome: 'succeeded', node: 'node-g', endedAt: done!.updatedAt });
        }
      }
    });

    it('grouped claimDue calls open no record; grouped markAsStarted calls open one per task, started at the start', async () => {
      await repo().insertMany(Array.from({ length: 10 }, () => ({ workId: 'w', scheduledAt: past() })));
      const results = await Promise.all(Array.from({ length: 8 }, (_, i) => repo().claimDue({ owner: `node-${i % 2}`, leaseMs: MINUTE, limit: 1 })));
      const claimed = results.flat();
      expect(claimed).toHaveLength(8);
      for (const task of claimed) expect(await repo().listAttempts(task.id)).toEqual([]);
      const started = await Promise.all(claimed.map((task) => repo().markAsStarted(task.id, task.lease!.token)));
      for (const task of started) {
        expect(await repo().listAttempts(task.id)).toEqual([
          { taskId: task.id, run: 1, attempt: 1, node: task.lease!.owner, startedAt: task.updatedAt, endedAt: null, outcome: 'running', error: null, checkIns: [] },
        ]);
      }
    });

    it('a check-in is stored at the database time of its progress', async () => {
      const claimed = await insertClaimed(repo());
      await repo().setProgress(claimed.id, claimed.lease.token, { completed: 1, total: 3, message: 'step one' });
      const progress = (await repo().getById(claimed.id)).progress;
      const [attempt] = await repo().listAttempts(claimed.id);
      expect(attempt!.checkIns).toEqual([{ at: progress!.at, message: 'step one' }]);
    });

    it('deleteTerminalBefore deletes the attempt rows with their tasks', async () => {
      const claimed = await insertClaimed(repo());
      await repo().markAsDone(claimed.id, claimed.lease.token);
      const kept = await insertClaimed(repo());
      const admin = await rawClient();
      try {
        const count = async (id: string): Promise<number> =>
          (await admin.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${schema()}".task_attempts WHERE task_id = $1`, [id])).rows[0]!.n;
        expect(await count(claimed.id)).toBe(1);
        expect(await repo().deleteTerminalBefore(new Date(Date.now() + MINUTE))).toBe(1);
        expect(await count(claimed.id)).toBe(0);
        expect(await count(kept.id)).toBe(1);
      } finally {
        await admin.end();
      }
    });
  });
}
