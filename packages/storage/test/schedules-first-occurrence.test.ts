/**
 * Catch-up of a schedule that never materialized an occurrence (issue 10, defect 7): its missed occurrences are the
 * ones since it was created, under its catch-up policy, exactly as if it had materialized one before the downtime.
 */
import type { ScheduleDefinition, ScheduleMaterializer, ScheduleTickOutcome } from '@horae/storage';
import { describe, expect, it } from 'vitest';
import { MINUTE, node, runToDone, taskTimes, world, type World } from './schedules-helpers.js';

const SECOND = 1_000;

function everyMinute(overrides: Partial<ScheduleDefinition> = {}): ScheduleDefinition {
  return { name: 'every-minute', spec: { cron: '* * * * *' }, workId: 'report', ...overrides };
}

/** 09:01 … 09:10 as ISO strings, or a part of them. */
function minutes(from: number, to: number): string[] {
  return Array.from({ length: to - from + 1 }, (_, i) => `2026-01-01T09:${String(from + i).padStart(2, '0')}:00.000Z`);
}

interface Downtime {
  w: World;
  m: ScheduleMaterializer;
  outcome: ScheduleTickOutcome | undefined;
  times: string[];
}

/**
 * The case: the schedule is created at 09:00:30, its node ticks once at 09:00:40 (nothing is due: its first
 * occurrence is 09:01) and stops; it starts again at 09:10:40 and ticks.
 */
async function createdThenDown(definition: ScheduleDefinition, graceMs?: number): Promise<Downtime> {
  const w = world('2026-01-01T09:00:30.000Z');
  await w.repo.upsertSchedule(definition);
  const m = node(w, graceMs === undefined ? {} : { graceMs });
  await w.clock.advance(10 * SECOND);
  expect((await m.tick()).created).toBe(0);
  expect(await w.repo.getSchedule(definition.name)).toMatchObject({ lastOccurrenceAt: null, lastTaskId: null, nextRunAt: new Date('2026-01-01T09:01:00.000Z') });
  await w.clock.advance(10 * MINUTE);
  const result = await m.tick();
  return { w, m, outcome: result.outcomes[0], times: await taskTimes(w.repo) };
}

/** The same downtime for a schedule that did materialize an occurrence (09:00), and ran it, before it. */
async function materializedThenDown(definition: ScheduleDefinition, graceMs?: number): Promise<Downtime> {
  const w = world('2026-01-01T08:59:30.000Z');
  await w.repo.upsertSchedule(definition);
  const m = node(w, graceMs === undefined ? {} : { graceMs });
  await w.clock.advance(30 * SECOND);
  const first = await m.tick();
  expect(first.created).toBe(1);
  await runToDone(w.repo, first.outcomes[0]!.created[0]!.id);
  await w.clock.advance(40 * SECOND);
  expect((await m.tick()).created).toBe(0);
  await w.clock.advance(10 * MINUTE);
  const result = await m.tick();
  return { w, m, outcome: result.outcomes[0], times: (await taskTimes(w.repo)).filter((t) => t !== '2026-01-01T09:00:00.000Z') };
}

describe('catch-up of a schedule that never materialized an occurrence', () => {
  it("'all' runs the ten occurrences missed since it was created (09:01 … 09:10)", async () => {
    const { times, outcome } = await createdThenDown(everyMinute({ catchUp: 'all', overlap: 'allow' }));
    expect(times).toEqual(minutes(1, 10));
    expect(outcome).toMatchObject({ skipped: 0, advanced: true });
  });

  it("'once' runs one: the latest missed occurrence, 09:10", async () => {
    const { times, outcome, w } = await createdThenDown(everyMinute({ catchUp: 'once', overlap: 'allow' }), 0);
    expect(times).toEqual(minutes(10, 10));
    expect(outcome).toMatchObject({ skipped: 9, advanced: true });
    expect(await w.repo.getSchedule('every-minute')).toMatchObject({ lastOccurrenceAt: new Date('2026-01-01T09:10:00.000Z'), nextRunAt: new Date('2026-01-01T09:11:00.000Z') });
  });

  it("'skip' runs none of them and resumes with 09:11", async () => {
    const { times, outcome, w, m } = await createdThenDown(everyMinute({ catchUp: 'skip', overlap: 'allow' }), 0);
    expect(times).toEqual([]);
    expect(outcome).toMatchObject({ skipped: 10, advanced: true });
    expect(await w.repo.getSchedule('every-minute')).toMatchObject({ lastOccurrenceAt: new Date('2026-01-01T09:10:00.000Z'), nextRunAt: new Date('2026-01-01T09:11:00.000Z') });
    await w.clock.advance(20 * SECOND);
    expect((await m.tick()).created).toBe(1);
    expect(await taskTimes(w.repo)).toEqual(['2026-01-01T09:11:00.000Z']);
  });

  it("with the materializer's default grace of 60 s, 09:10 (40 s late) is on time: 'skip' runs it, 'once' runs it alone", async () => {
    const skip = await createdThenDown(everyMinute({ catchUp: 'skip', overlap: 'allow' }));
    expect(skip.times).toEqual(minutes(10, 10));
    expect(skip.outcome).toMatchObject({ skipped: 9 });
    // 'once' is one run for the downtime: the on-time 09:10 alone, not 09:09 (the latest missed) as well.
    const once = await createdThenDown(everyMinute({ catchUp: 'once', overlap: 'allow' }));
    expect(once.times).toEqual(minutes(10, 10));
    expect(once.outcome).toMatchObject({ skipped: 9 });
    // The defaults of a schedule: catchUp 'once', overlap 'skip' (one run at a time).
    const defaults = await createdThenDown(everyMinute());
    expect(defaults.times).toEqual(minutes(10, 10));
    expect(defaults.outcome).toMatchObject({ skipped: 9 });
  });

  it.each([
    ['all', 'allow', undefined],
    ['once', 'allow', 0],
    ['skip', 'allow', 0],
    ['once', 'skip', undefined],
    ['all', 'skip', undefined],
    ['skip', 'allow', undefined],
    ['once', 'allow', undefined],
  ] as const)("catchUp '%s', overlap '%s', grace %s: the same runs as a schedule that materialized one before the downtime", async (catchUp, overlap, graceMs) => {
    const never = await createdThenDown(everyMinute({ catchUp, overlap }), graceMs);
    const before = await materializedThenDown(everyMinute({ catchUp, overlap }), graceMs);
    expect(never.times).toEqual(before.times);
    expect(never.outcome?.skipped).toBe(before.outcome?.skipped);
  });

  it('occurrences before the schedule existed are never missed, whatever its anchor', async () => {
    const w = world('2026-01-01T09:00:30.000Z');
    // Every minute since the Unix epoch: 29 million occurrences before its creation, none of them missed.
    await w.repo.upsertSchedule({ name: 'since-epoch', spec: { everyMs: MINUTE }, workId: 'report', catchUp: 'all', overlap: 'allow' });
    const m = node(w, { graceMs: 0 });
    await w.clock.advance(10 * SECOND);
    expect((await m.tick()).created).toBe(0);
    await w.clock.advance(20 * SECOND);
    expect((await m.tick()).created).toBe(1);
    expect(await taskTimes(w.repo)).toEqual(['2026-01-01T09:01:00.000Z']);
  });
});
