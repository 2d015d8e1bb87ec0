import { occurrenceKey } from '@horae/core';
import { ScheduleMaterializer, occurrenceTaskId, type ScheduleDefinition } from '@horae/storage';
import { describe, expect, it } from 'vitest';
import { DAY, HOUR, MINUTE, allTasks, claim, crashingBeforeAdvance, expectOneTaskPerOccurrence, node, runToDone, taskTimes, world } from './schedules-helpers.js';

function hourly(overrides: Partial<ScheduleDefinition> = {}): ScheduleDefinition {
  return { name: 'hourly', spec: { everyMs: HOUR }, workId: 'report', overlap: 'allow', ...overrides };
}

describe('occurrenceTaskId', () => {
  it('is a version-5 UUID, the same on every call for one occurrence, different for another', () => {
    const at = new Date('2026-03-08T07:30:00.000Z');
    const id = occurrenceTaskId('nightly', at);
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(occurrenceTaskId('nightly', new Date(at.getTime()))).toBe(id);
    expect(occurrenceTaskId('nightly', new Date(at.getTime() + 1))).not.toBe(id);
    expect(occurrenceTaskId('nightly2', at)).not.toBe(id);
  });
});

describe('ScheduleMaterializer: exactly once across nodes', () => {
  it('materializes each occurrence as one task with the occurrence uniqueKey and deterministic id', async () => {
    const w = world();
    await w.repo.upsertSchedule(hourly({ param: { to: 'ops' }, priority: 7, maxAttempts: 3 }));
    const m = node(w);
    await w.clock.advance(HOUR);
    const result = await m.tick();
    expect(result.created).toBe(1);
    const at = new Date('2026-01-01T01:00:00.000Z');
    const [task] = await allTasks(w.repo);
    expect(task).toMatchObject({
      id: occurrenceTaskId('hourly', at),
      uniqueKey: occurrenceKey('hourly', at),
      workId: 'report',
      param: { to: 'ops' },
      priority: 7,
      maxAttempts: 3,
      scheduledAt: at,
      state: 'Initialized',
      kind: 'periodic',
      scheduleName: 'hourly',
    });
    const schedule = await w.repo.getSchedule('hourly');
    expect(schedule).toMatchObject({ lastOccurrenceAt: at, lastTaskId: task!.id, nextRunAt: new Date('2026-01-01T02:00:00.000Z') });
    // A second tick at the same time finds nothing due.
    expect((await m.tick()).created).toBe(0);
    expect(await allTasks(w.repo)).toHaveLength(1);
  });

  it('two nodes ticking concurrently for 6 hours never create an occurrence twice', async () => {
    const w = world();
    await w.repo.upsertSchedule(hourly({ spec: { everyMs: 10 * MINUTE } }));
    await w.repo.upsertSchedule(hourly({ name: 'cron', spec: { cron: '*/15 * * * *' } }));
    const a = node(w, { lookaheadMs: MINUTE });
    const b = node(w, { lookaheadMs: MINUTE });
    let created = 0;
    for (let i = 0; i < 6 * 60; i++) {
      await w.clock.advance(MINUTE);
      const [ra, rb] = await Promise.all([a.tick(), b.tick()]);
      created += ra.created + rb.created;
    }
    const count = await expectOneTaskPerOccurrence(w.repo);
    // 36 ten-minute and 24 quarter-hour occurrences in (00:00, 06:00].
    expect(count).toBe(36 + 24);
    expect(created).toBe(count);
    // With a lookahead, each task was in the repository before it was due.
    for (const task of await allTasks(w.repo)) expect(task.createdAt.getTime()).toBeLessThan(task.scheduledAt.getTime());
  });

  it('five nodes catching up `all` after downtime at the same instant create each occurrence once', async () => {
    const w = world();
    await w.repo.upsertSchedule(hourly({ catchUp: 'all' }));
    const nodes = Array.from({ length: 5 }, () => node(w));
    await w.clock.advance(10 * HOUR + 30 * MINUTE);
    const results = await Promise.all(nodes.map((n) => n.tick()));
    expect(results.reduce((sum, r) => sum + r.created, 0)).toBe(10);
    expect(results.flatMap((r) => r.outcomes).filter((o) => o.advanced)).toHaveLength(1);
    expect(await expectOneTaskPerOccurrence(w.repo)).toBe(10);
  });

  it('a node that dies between insert and advance is finished by the next, even after the task is Done', async () => {
    const w = world();
    await w.repo.upsertSchedule(hourly());
    const dying = new ScheduleMaterializer({ repository: crashingBeforeAdvance(w.repo.openPeer()), clock: w.clock, lookaheadMs: 0 });
    await w.clock.advance(HOUR);
    const crashed = await dying.tick();
    expect(crashed.outcomes[0]!.error).toBeInstanceOf(Error);
    expect(crashed.created).toBe(1);
    const [task] = await allTasks(w.repo);
    // The occurrence ran and finished: its uniqueKey is free again, only the deterministic id protects it.
    await runToDone(w.repo, task!.id);
    expect((await w.repo.getSchedule('hourly')).lastOccurrenceAt).toBeNull();

    const survivor = node(w);
    const result = await survivor.tick();
    expect(result.created).toBe(0);
    expect(result.outcomes[0]).toMatchObject({ advanced: true, occurrences: [new Date('2026-01-01T01:00:00.000Z')] });
    expect(await expectOneTaskPerOccurrence(w.repo)).toBe(1);
    expect((await w.repo.getById(task!.id)).state).toBe('Done');
    expect((await w.repo.getSchedule('hourly')).nextRunAt).toEqual(new Date('2026-01-01T02:00:00.000Z'));
  });

  it('a stale node re-materializing a finished occurrence creates nothing', async () => {
    const w = world();
    await w.repo.upsertSchedule(hourly());
    await w.clock.advance(HOUR);
    const stale = await w.repo.getSchedule('hourly');
    await node(w).tick();
    const [task] = await allTasks(w.repo);
    await runToDone(w.repo, task!.id);
    // The same inserts the stale node would make, by id: refused as taken.
    const again = await w.repo.insert({ id: occurrenceTaskId('hourly', stale.nextRunAt!), uniqueKey: occurrenceKey('hourly', stale.nextRunAt!), workId: 'report', scheduledAt: stale.nextRunAt! }).catch((e: unknown) => e);
    expect(again).toBeInstanceOf(Error);
    expect(await expectOneTaskPerOccurrence(w.repo)).toBe(1);
  });

  it('one tick at a time: concurrent tick() calls on one materializer share a result', async () => {
    const w = world();
    await w.repo.upsertSchedule(hourly());
    await w.clock.advance(HOUR);
    const m = node(w);
    const first = m.tick();
    const second = m.tick();
    expect(second).toBe(first);
    expect((await first).created).toBe(1);
  });
});

describe('ScheduleMaterializer: catch-up after downtime', () => {
  /** Materializes 01:00, then no node runs from 01:00 to 06:30 (02:00 … 06:00 are missed). */
  async function afterDowntime(overrides: Partial<ScheduleDefinition>): Promise<{ w: ReturnType<typeof world>; m: ScheduleMaterializer }> {
    const w = world();
    await w.repo.upsertSchedule(hourly(overrides));
    const m = node(w);
    await w.clock.advance(HOUR);
    expect((await m.tick()).created).toBe(1);
    await w.clock.advance(5 * HOUR + 30 * MINUTE);
    return { w, m };
  }

  it("'skip' runs none of the missed occurrences and resumes with the next", async () => {
    const { w, m } = await afterDowntime({ catchUp: 'skip' });
    const result = await m.tick();
    expect(result.created).toBe(0);
    expect(result.outcomes[0]).toMatchObject({ skipped: 5, advanced: true });
    expect(await w.repo.getSchedule('hourly')).toMatchObject({ lastOccurrenceAt: new Date('2026-01-01T06:00:00.000Z'), nextRunAt: new Date('2026-01-01T07:00:00.000Z') });
    await w.clock.advance(30 * MINUTE);
    expect((await m.tick()).created).toBe(1);
    expect(await taskTimes(w.repo)).toEqual(['2026-01-01T01:00:00.000Z', '2026-01-01T07:00:00.000Z']);
  });

  it("'once' runs only the latest missed occurrence", async () => {
    const { w, m } = await afterDowntime({ catchUp: 'once' });
    const result = await m.tick();
    expect(result.outcomes[0]).toMatchObject({ skipped: 4, advanced: true });
    expect(await taskTimes(w.repo)).toEqual(['2026-01-01T01:00:00.000Z', '2026-01-01T06:00:00.000Z']);
  });

  it("'all' runs every missed occurrence, bounded by maxCatchUp (the latest kept)", async () => {
    const { w, m } = await afterDowntime({ catchUp: 'all' });
    expect((await m.tick()).created).toBe(5);
    expect(await taskTimes(w.repo)).toEqual(['01', '02', '03', '04', '05', '06'].map((h) => `2026-01-01T${h}:00:00.000Z`));

    const bounded = await afterDowntime({ catchUp: 'all', maxCatchUp: 2 });
    const result = await bounded.m.tick();
    expect(result.outcomes[0]).toMatchObject({ skipped: 3, advanced: true });
    expect(await taskTimes(bounded.w.repo)).toEqual(['2026-01-01T01:00:00.000Z', '2026-01-01T05:00:00.000Z', '2026-01-01T06:00:00.000Z']);
  });

  it("a tick late by less than graceMs is on time, even for 'skip'", async () => {
    const w = world();
    await w.repo.upsertSchedule(hourly({ catchUp: 'skip' }));
    const m = node(w, { graceMs: 5 * MINUTE });
    await w.clock.advance(HOUR + 4 * MINUTE);
    expect((await m.tick()).created).toBe(1);
    await w.clock.advance(HOUR + 2 * MINUTE); // 02:06: six minutes late
    expect((await m.tick()).created).toBe(0);
  });
});

describe('ScheduleMaterializer: overlap', () => {
  async function firstRunning(overlap: 'allow' | 'skip' | 'wait'): Promise<{ w: ReturnType<typeof world>; m: ScheduleMaterializer; firstId: string; token: string }> {
    const w = world();
    await w.repo.upsertSchedule(hourly({ spec: { everyMs: 10 * MINUTE }, overlap }));
    const m = node(w);
    await w.clock.advance(10 * MINUTE);
    expect((await m.tick()).created).toBe(1);
    const [first] = await allTasks(w.repo);
    return { w, m, firstId: first!.id, token: await claim(w.repo, first!.id) };
  }

  it("'allow' starts an occurrence while the previous one runs", async () => {
    const { w, m } = await firstRunning('allow');
    await w.clock.advance(10 * MINUTE);
    expect((await m.tick()).created).toBe(1);
    expect(await taskTimes(w.repo)).toEqual(['2026-01-01T00:10:00.000Z', '2026-01-01T00:20:00.000Z']);
  });

  it("'skip' records an occurrence due while the previous runs as skipped, and runs the next one after", async () => {
    const { w, m, firstId, token } = await firstRunning('skip');
    await w.clock.advance(10 * MINUTE);
    const skipped = await m.tick();
    expect(skipped.created).toBe(0);
    expect(skipped.outcomes[0]).toMatchObject({ skipped: 1, advanced: true });
    expect(await w.repo.getSchedule('hourly')).toMatchObject({ lastOccurrenceAt: new Date('2026-01-01T00:20:00.000Z'), lastTaskId: firstId });
    await w.repo.markAsDone(firstId, token);
    await w.clock.advance(10 * MINUTE);
    expect((await m.tick()).created).toBe(1);
    expect(await taskTimes(w.repo)).toEqual(['2026-01-01T00:10:00.000Z', '2026-01-01T00:30:00.000Z']);
  });

  it("'skip' also waits for a previous occurrence that is Initialized again for a retry", async () => {
    const { w, m, firstId, token } = await firstRunning('skip');
    await w.repo.release(firstId, token, { runAt: new Date(w.clock.now() + HOUR) });
    await w.clock.advance(10 * MINUTE);
    expect((await m.tick()).created).toBe(0);
  });

  it("'wait' holds the occurrence until the previous ends, then runs it at once", async () => {
    const { w, m, firstId, token } = await firstRunning('wait');
    await w.clock.advance(10 * MINUTE); // 00:20 is due
    const held = await m.tick();
    expect(held.created).toBe(0);
    expect(held.outcomes[0]).toMatchObject({ waiting: true, advanced: false, skipped: 0 });
    expect((await w.repo.getSchedule('hourly')).nextRunAt).toEqual(new Date('2026-01-01T00:20:00.000Z'));
    await w.clock.advance(5 * MINUTE);
    expect((await m.tick()).outcomes[0]!.waiting).toBe(true);
    await w.repo.markAsDone(firstId, token); // at 00:25
    const released = await m.tick();
    expect(released.created).toBe(1);
    expect(await taskTimes(w.repo)).toEqual(['2026-01-01T00:10:00.000Z', '2026-01-01T00:20:00.000Z']);
    expect((await w.repo.getSchedule('hourly')).nextRunAt).toEqual(new Date('2026-01-01T00:30:00.000Z'));
  });

  it("'wait' collapses the occurrences that fell due while it waited into one run", async () => {
    const { w, m, firstId, token } = await firstRunning('wait');
    await w.clock.advance(35 * MINUTE); // 00:45: 00:20, 00:30 and 00:40 fell due while the first ran
    expect((await m.tick()).outcomes[0]!.waiting).toBe(true);
    await w.repo.markAsDone(firstId, token);
    const released = await m.tick();
    expect(released.created).toBe(1);
    expect(released.outcomes[0]!.skipped).toBe(2);
    expect(await taskTimes(w.repo)).toEqual(['2026-01-01T00:10:00.000Z', '2026-01-01T00:40:00.000Z']);
  });
});

describe('ScheduleMaterializer: pause, resume, pull forward, long intervals', () => {
  it('a paused schedule materializes nothing; resumed, it starts with its next occurrence', async () => {
    const w = world();
    await w.repo.upsertSchedule(hourly({ catchUp: 'all' }));
    const m = node(w);
    await w.repo.setSchedulePaused('hourly', true);
    await w.clock.advance(3 * HOUR + 30 * MINUTE);
    expect((await m.tick()).created).toBe(0);
    await w.repo.setSchedulePaused('hourly', false);
    expect((await m.tick()).created).toBe(0); // nothing of the pause is caught up, even with 'all'
    await w.clock.advance(30 * MINUTE);
    expect((await m.tick()).created).toBe(1);
    expect(await taskTimes(w.repo)).toEqual(['2026-01-01T04:00:00.000Z']);
  });

  it('a pulled-forward schedule runs once within the bound, then keeps its own rhythm', async () => {
    const w = world();
    await w.repo.upsertSchedule(hourly({ name: 'yearly', spec: { cron: '0 0 1 1 *' } }));
    const m = node(w);
    await w.repo.pullScheduleForward('yearly', 5 * MINUTE);
    expect((await m.tick()).created).toBe(0);
    await w.clock.advance(5 * MINUTE);
    expect((await m.tick()).created).toBe(1);
    expect((await m.tick()).created).toBe(0);
    expect(await taskTimes(w.repo)).toEqual(['2026-01-01T00:05:00.000Z']);
    expect((await w.repo.getSchedule('yearly')).nextRunAt).toEqual(new Date('2027-01-01T00:00:00.000Z'));
  });

  it('an everyMs of 40 days fires every 40 days (longer than a timer can wait)', async () => {
    const w = world('2026-01-01T00:00:01.000Z');
    await w.repo.upsertSchedule(hourly({ name: 'forty', spec: { everyMs: 40 * DAY, anchor: new Date('2026-01-01T00:00:00.000Z') } }));
    expect((await w.repo.getSchedule('forty')).nextRunAt).toEqual(new Date('2026-02-10T00:00:00.000Z'));
    const m = node(w);
    for (let day = 0; day < 130; day++) {
      await w.clock.advance(DAY);
      await m.tick();
    }
    expect(await taskTimes(w.repo)).toEqual(['2026-02-10T00:00:00.000Z', '2026-03-22T00:00:00.000Z', '2026-05-01T00:00:00.000Z']);
  });

  it('a failure on one schedule is reported and does not stop the others', async () => {
    const w = world();
    await w.repo.upsertSchedule(hourly({ name: 'a' }));
    await w.repo.upsertSchedule(hourly({ name: 'b' }));
    // Every advance fails on this node: each failure lands on its own schedule's outcome, the next schedule still runs.
    const dying = new ScheduleMaterializer({ repository: crashingBeforeAdvance(w.repo.openPeer()), clock: w.clock, lookaheadMs: 0 });
    await w.clock.advance(HOUR);
    const result = await dying.tick();
    expect(result.outcomes.map((o) => o.name)).toEqual(['a', 'b']);
    expect(result.outcomes.every((o) => o.error !== undefined && o.created.length === 1)).toBe(true);
    expect(await expectOneTaskPerOccurrence(w.repo)).toBe(2);
  });
});

describe('ScheduleMaterializer: DST days, through the recurrence engine', () => {
  /** Ticks every 10 minutes over [from, from + hours) and returns the tasks' times. */
  async function runDays(cron: string, from: string, hours: number): Promise<string[]> {
    const w = world(from);
    await w.repo.upsertSchedule(hourly({ name: 'dst', spec: { cron, timezone: 'America/New_York' } }));
    const m = node(w);
    for (let i = 0; i < hours * 6; i++) {
      await w.clock.advance(10 * MINUTE);
      await m.tick();
    }
    await expectOneTaskPerOccurrence(w.repo);
    return taskTimes(w.repo);
  }

  it('a 02:30 job runs once on the spring-forward day (at 03:30 EDT, 02:30 does not exist)', async () => {
    const times = await runDays('30 2 * * *', '2026-03-07T12:00:00.000Z', 48);
    expect(times).toEqual(['2026-03-08T07:30:00.000Z', '2026-03-09T06:30:00.000Z']);
  });

  it('a 02:30 job and a 01:30 job run once on the fall-back day', async () => {
    expect(await runDays('30 2 * * *', '2026-10-31T12:00:00.000Z', 48)).toEqual(['2026-11-01T07:30:00.000Z', '2026-11-02T07:30:00.000Z']);
    // 01:30 happens twice on 2026-11-01 in New York (EDT, then EST): the job runs at the first only.
    expect(await runDays('30 1 * * *', '2026-10-31T12:00:00.000Z', 48)).toEqual(['2026-11-01T05:30:00.000Z', '2026-11-02T06:30:00.000Z']);
  });
});
