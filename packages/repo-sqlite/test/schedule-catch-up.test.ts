/**
 * Catch-up of a schedule that never materialized an occurrence (issue 10, defect 7), through SQLite: the store computes
 * the schedule's first `nextRunAt` at its creation, by its own clock, and the materializer counts the missed
 * occurrences from there, as on the memory store.
 */
import { VirtualClock } from '@horae/core/testing';
import { SqliteRepository } from '@horae/repo-sqlite';
import type { CatchUpPolicy } from '@horae/core';
import { ScheduleMaterializer } from '@horae/storage';
import { afterEach, describe, expect, it } from 'vitest';
import { tempDir, type TempDir } from './temp-database.js';

const SECOND = 1_000;
const MINUTE = 60 * SECOND;

describe('SqliteRepository: catch-up of a schedule created before a downtime, that never materialized an occurrence', () => {
  let dir: TempDir | undefined;
  afterEach(() => dir?.remove());

  /** Created at 09:00:30, one tick at 09:00:40, down until 09:10:40, then a tick: the scheduled times of its tasks. */
  async function createdThenDown(catchUp: CatchUpPolicy, graceMs: number): Promise<string[]> {
    dir = tempDir();
    const clock = new VirtualClock({ now: new Date('2026-01-01T09:00:30.000Z'), flushTurns: 1 });
    const repository = new SqliteRepository({ database: dir.file(), clock, checkpoint: 'inline' });
    try {
      await repository.upsertSchedule({ name: 'every-minute', spec: { cron: '* * * * *' }, workId: 'report', catchUp, overlap: 'allow' });
      const materializer = new ScheduleMaterializer({ repository, clock, lookaheadMs: 0, graceMs });
      await clock.advance(10 * SECOND);
      expect((await materializer.tick()).created).toBe(0);
      await clock.advance(10 * MINUTE);
      await materializer.tick();
      return (await repository.list({ limit: 100 })).tasks.map((t) => t.scheduledAt.toISOString().slice(11, 16)).sort();
    } finally {
      await repository.close();
    }
  }

  it("'all' runs 09:01 … 09:10, 'once' 09:10, 'skip' none (without grace)", async () => {
    expect(await createdThenDown('all', 0)).toEqual(['09:01', '09:02', '09:03', '09:04', '09:05', '09:06', '09:07', '09:08', '09:09', '09:10']);
    dir?.remove();
    expect(await createdThenDown('once', 0)).toEqual(['09:10']);
    dir?.remove();
    expect(await createdThenDown('skip', 0)).toEqual([]);
  });
});
