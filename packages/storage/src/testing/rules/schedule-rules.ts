import { randomUUID } from 'node:crypto';
import { InvalidInputError, type Clock } from '@horae/core';
import { beforeEach, expect } from 'vitest';
import type { Repository } from '../../contract/repository.js';
import { ScheduleNotFoundError, isScheduleStore, type Schedule, type ScheduleDefinition, type ScheduleStore } from '../../schedules/schedule-store.js';
import { ScheduleMaterializer } from '../../schedules/schedule-materializer.js';
import { MINUTE, claimOrFail, expectNoDuplicates, listAll, openPeers, totalCount } from '../helpers.js';
import type { SuiteContext } from '../suite-context.js';

const HOUR = 60 * MINUTE;

/** A valid definition: hourly on the epoch grid unless overridden. */
function definition(overrides: Partial<ScheduleDefinition> = {}): ScheduleDefinition {
  return { name: 'hourly', spec: { everyMs: HOUR }, workId: 'work-a', ...overrides };
}

/** Reads a call's rejection, failing the test when it resolves. */
async function rejectionOf(call: Promise<unknown>): Promise<unknown> {
  return call.then(
    () => expect.fail('the call was expected to throw'),
    (error: unknown) => error,
  );
}

/** The ScheduleStore capability: persisted recurring schedules, their idempotent upsert and their compare-and-set. */
export function scheduleRules({ group, rule, repo, fixture }: SuiteContext): void {
  const store = (): Repository & ScheduleStore => repo() as Repository & ScheduleStore;
  const peers = async (count: number): Promise<(Repository & ScheduleStore)[]> =>
    (await openPeers(() => fixture().openPeer(), count)).map((peer) => peer as Repository & ScheduleStore);

  group('schedules (ScheduleStore)', () => {
    beforeEach((test) => {
      // Registered for every repository, reported as skipped (with the reason) by those without the capability.
      if (!isScheduleStore(repo())) test.skip('this repository does not implement the optional ScheduleStore capability');
    });

    rule('upsertSchedule creates a schedule with its defaults and its first occurrence after now', async () => {
      const before = Date.now();
      const result = await store().upsertSchedule(definition());
      expect(result.created).toBe(true);
      expect(result.changed).toBe(true);
      const s = result.schedule;
      expect(s).toMatchObject({ name: 'hourly', workId: 'work-a', param: null, priority: 0, maxAttempts: 1, catchUp: 'once', maxCatchUp: 100, overlap: 'skip' });
      expect(s).toMatchObject({ paused: false, lastOccurrenceAt: null, lastTaskId: null, version: 1 });
      expect(s.spec).toEqual({ everyMs: HOUR, anchor: new Date(0) });
      // The first occurrence after the database's now: on the hourly grid, within the next hour (a minute of skew allowed).
      expect(s.nextRunAt!.getTime() % HOUR).toBe(0);
      expect(s.nextRunAt!.getTime()).toBeGreaterThan(before - MINUTE);
      expect(s.nextRunAt!.getTime()).toBeLessThanOrEqual(before + HOUR + MINUTE);
      expect(Math.abs(s.createdAt.getTime() - before)).toBeLessThan(MINUTE);
      expect(await store().getSchedule('hourly')).toEqual(s);
    });

    rule('a cron schedule keeps its expression and timezone', async () => {
      const { schedule } = await store().upsertSchedule(definition({ name: 'nightly', spec: { cron: '30 2 * * *', timezone: 'America/New_York' }, param: { a: [1, 'x'] } }));
      expect(schedule.spec).toEqual({ cron: '30 2 * * *', timezone: 'America/New_York' });
      expect(schedule.param).toEqual({ a: [1, 'x'] });
      const stored = await store().getSchedule('nightly');
      expect(stored.spec).toEqual({ cron: '30 2 * * *', timezone: 'America/New_York' });
      // 02:30 in New York is 06:30 or 07:30 UTC (EDT or EST) — or 07:30 UTC on the spring-forward day.
      expect([6, 7]).toContain(stored.nextRunAt!.getUTCHours());
      expect(stored.nextRunAt!.getUTCMinutes()).toBe(30);
    });

    rule('re-upserting an unchanged definition writes nothing', async () => {
      const first = await store().upsertSchedule(definition({ param: { b: 1, a: { y: 2, x: [true] } }, priority: 3 }));
      const again = await store().upsertSchedule(definition({ param: { a: { x: [true], y: 2 }, b: 1 }, priority: 3 }));
      expect(again.created).toBe(false);
      expect(again.changed).toBe(false);
      expect(again.schedule).toEqual(first.schedule);
      expect(await store().getSchedule('hourly')).toEqual(first.schedule);
    });

    rule('a changed definition updates the schedule but keeps its pause and progress', async () => {
      const { schedule } = await store().upsertSchedule(definition());
      const taskId = randomUUID();
      const advanced = await store().advanceSchedule('hourly', { version: schedule.version, lastOccurrenceAt: new Date(HOUR), lastTaskId: taskId, nextRunAt: schedule.nextRunAt });
      const paused = await store().setSchedulePaused('hourly', true);
      expect(paused.version).toBe(advanced!.version + 1);
      const result = await store().upsertSchedule(definition({ param: { v: 2 }, priority: 5, maxAttempts: 3, catchUp: 'all', maxCatchUp: 7, overlap: 'wait' }));
      expect(result.created).toBe(false);
      expect(result.changed).toBe(true);
      expect(result.schedule).toMatchObject({ param: { v: 2 }, priority: 5, maxAttempts: 3, catchUp: 'all', maxCatchUp: 7, overlap: 'wait' });
      expect(result.schedule).toMatchObject({ paused: true, lastOccurrenceAt: new Date(HOUR), lastTaskId: taskId, version: paused.version + 1 });
      // The spec did not change, so neither did nextRunAt.
      expect(result.schedule.nextRunAt).toEqual(schedule.nextRunAt);
      expect(result.schedule.createdAt).toEqual(schedule.createdAt);
      expect(await store().getSchedule('hourly')).toEqual(result.schedule);
    });

    rule('a changed spec recomputes nextRunAt from now', async () => {
      const { schedule } = await store().upsertSchedule(definition({ spec: { cron: '0 0 1 1 *' } }));
      expect(schedule.nextRunAt!.getTime()).toBeGreaterThan(Date.now() + HOUR);
      const result = await store().upsertSchedule(definition({ spec: { everyMs: MINUTE } }));
      expect(result.changed).toBe(true);
      expect(result.schedule.spec).toEqual({ everyMs: MINUTE, anchor: new Date(0) });
      expect(result.schedule.nextRunAt!.getTime() % MINUTE).toBe(0);
      expect(result.schedule.nextRunAt!.getTime()).toBeLessThanOrEqual(Date.now() + 2 * MINUTE);
    });

    rule('of 10 concurrent upserts of one new name across clients exactly one creates, and one row exists', async () => {
      const clients = [store(), ...(await peers(4))];
      const results = await Promise.all(Array.from({ length: 10 }, (_, i) => clients[i % clients.length]!.upsertSchedule(definition())));
      expect(results.filter((r) => r.created)).toHaveLength(1);
      expect(results.filter((r) => r.changed)).toHaveLength(1);
      const all = await store().listSchedules();
      expect(all.map((s) => s.name)).toEqual(['hourly']);
      expect(all[0]!.version).toBe(1);
      for (const r of results) expect(r.schedule).toEqual(all[0]);
    });

    rule('concurrent upserts of different definitions of one name leave one row holding one of them', async () => {
      const clients = [store(), ...(await peers(4))];
      const results = await Promise.all(Array.from({ length: 10 }, (_, i) => clients[i % clients.length]!.upsertSchedule(definition({ priority: i }))));
      expect(results.filter((r) => r.created)).toHaveLength(1);
      const all = await store().listSchedules();
      expect(all).toHaveLength(1);
      expect(results.map((r) => r.schedule.priority)).toContain(all[0]!.priority);
    });

    rule('of 10 concurrent advances from one version across clients exactly one wins', async () => {
      const { schedule } = await store().upsertSchedule(definition());
      const clients = [store(), ...(await peers(4))];
      const taskIds: string[] = Array.from({ length: 10 }, () => randomUUID());
      const results = await Promise.all(
        taskIds.map((taskId, i) =>
          clients[i % clients.length]!.advanceSchedule('hourly', { version: schedule.version, lastOccurrenceAt: new Date((i + 1) * HOUR), lastTaskId: taskId, nextRunAt: new Date((i + 2) * HOUR) }),
        ),
      );
      const winners = results.filter((r): r is Schedule => r !== null);
      expect(winners).toHaveLength(1);
      const stored = await store().getSchedule('hourly');
      expect(stored).toEqual(winners[0]);
      expect(stored.version).toBe(schedule.version + 1);
      const i = taskIds.indexOf(stored.lastTaskId!);
      expect(i).toBeGreaterThanOrEqual(0);
      expect(stored.lastOccurrenceAt).toEqual(new Date((i + 1) * HOUR));
      expect(stored.nextRunAt).toEqual(new Date((i + 2) * HOUR));
    });

    rule('advanceSchedule with a stale version returns null and writes nothing', async () => {
      const { schedule } = await store().upsertSchedule(definition());
      const first = await store().advanceSchedule('hourly', { version: schedule.version, lastOccurrenceAt: new Date(HOUR), lastTaskId: randomUUID(), nextRunAt: new Date(2 * HOUR) });
      expect(first).not.toBeNull();
      expect(await store().advanceSchedule('hourly', { version: schedule.version, lastOccurrenceAt: new Date(5 * HOUR), lastTaskId: randomUUID(), nextRunAt: null })).toBeNull();
      expect(await store().getSchedule('hourly')).toEqual(first);
      // Any other change (a pause) moves the version too, so an advance computed before it loses.
      await store().setSchedulePaused('hourly', true);
      expect(await store().advanceSchedule('hourly', { version: first!.version, lastOccurrenceAt: new Date(5 * HOUR), lastTaskId: randomUUID(), nextRunAt: null })).toBeNull();
    });

    rule('pause and resume: a paused schedule is never due, and resuming starts after now', async () => {
      const { schedule } = await store().upsertSchedule(definition());
      // Leave the schedule far behind, as after a long pause.
      await store().advanceSchedule('hourly', { version: schedule.version, lastOccurrenceAt: new Date(HOUR), lastTaskId: null, nextRunAt: new Date(2 * HOUR) });
      const paused = await store().setSchedulePaused('hourly', true);
      expect(paused.paused).toBe(true);
      expect(await store().setSchedulePaused('hourly', true)).toEqual(paused);
      expect(await store().listSchedules({ dueBy: new Date(Date.now() + 365 * 24 * HOUR) })).toEqual([]);
      const resumed = await store().setSchedulePaused('hourly', false);
      expect(resumed.paused).toBe(false);
      expect(resumed.version).toBe(paused.version + 1);
      expect(resumed.nextRunAt!.getTime()).toBeGreaterThan(Date.now() - MINUTE);
      expect(resumed.nextRunAt!.getTime() % HOUR).toBe(0);
      expect((await store().listSchedules({ dueBy: new Date(Date.now() + 2 * HOUR) })).map((s) => s.name)).toEqual(['hourly']);
    });

    rule('removeSchedule deletes it; of concurrent removes exactly one succeeds', async () => {
      await store().upsertSchedule(definition());
      await store().upsertSchedule(definition({ name: 'other' }));
      const clients = [store(), ...(await peers(2))];
      const results = await Promise.allSettled(clients.map((client) => client.removeSchedule('hourly')));
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(ScheduleNotFoundError);
      expect((await store().listSchedules()).map((s) => s.name)).toEqual(['other']);
      expect(await rejectionOf(store().getSchedule('hourly'))).toBeInstanceOf(ScheduleNotFoundError);
      // The name is free again: upserting it creates a new schedule.
      expect((await store().upsertSchedule(definition())).created).toBe(true);
    });

    rule('pullScheduleForward only ever moves nextRunAt earlier', async () => {
      const { schedule } = await store().upsertSchedule(definition({ spec: { cron: '0 0 1 1 *' } }));
      const before = Date.now();
      const pulled = await store().pullScheduleForward('hourly', MINUTE);
      expect(pulled.nextRunAt!.getTime()).toBeLessThan(schedule.nextRunAt!.getTime());
      expect(pulled.nextRunAt!.getTime()).toBeGreaterThan(before - MINUTE);
      expect(pulled.nextRunAt!.getTime()).toBeLessThanOrEqual(before + 2 * MINUTE);
      expect(pulled.version).toBe(schedule.version + 1);
      // A looser bound never delays it: nothing is written.
      expect(await store().pullScheduleForward('hourly', 30 * 24 * HOUR)).toEqual(pulled);
      expect(await store().getSchedule('hourly')).toEqual(pulled);
      expect(await rejectionOf(store().pullScheduleForward('hourly', -1))).toBeInstanceOf(InvalidInputError);
    });

    rule('listSchedules orders by name; with dueBy, unpaused due schedules by nextRunAt', async () => {
      const yearly = { spec: { cron: '0 0 1 1 *' } };
      for (const name of ['b-not-due', 'c-soon', 'a-later', 'd-paused']) await store().upsertSchedule(definition({ name, ...yearly }));
      // Pulled forward to known times, so the order by nextRunAt does not depend on when the test runs.
      await store().pullScheduleForward('c-soon', 0);
      await store().pullScheduleForward('a-later', 10 * MINUTE);
      await store().pullScheduleForward('d-paused', 0);
      await store().setSchedulePaused('d-paused', true);
      expect((await store().listSchedules()).map((s) => s.name)).toEqual(['a-later', 'b-not-due', 'c-soon', 'd-paused']);
      const due = await store().listSchedules({ dueBy: new Date(Date.now() + 2 * HOUR) });
      expect(due.map((s) => s.name)).toEqual(['c-soon', 'a-later']);
      expect(due.every((s) => !s.paused)).toBe(true);
    });

    rule('unknown names throw ScheduleNotFoundError and write nothing', async () => {
      await store().upsertSchedule(definition());
      const calls: [string, () => Promise<unknown>][] = [
        ['getSchedule', () => store().getSchedule('nope')],
        ['setSchedulePaused', () => store().setSchedulePaused('nope', true)],
        ['removeSchedule', () => store().removeSchedule('nope')],
        ['pullScheduleForward', () => store().pullScheduleForward('nope', 0)],
        ['advanceSchedule', () => store().advanceSchedule('nope', { version: 1, lastOccurrenceAt: null, lastTaskId: null, nextRunAt: null })],
      ];
      for (const [name, call] of calls) {
        const error = await rejectionOf(call());
        expect(error, name).toBeInstanceOf(ScheduleNotFoundError);
        expect((error as ScheduleNotFoundError).code, name).toBe('SCHEDULE_NOT_FOUND');
      }
      expect((await store().listSchedules()).map((s) => s.name)).toEqual(['hourly']);
    });

    rule('an invalid definition throws InvalidInputError and writes nothing', async () => {
      const bad: [string, ScheduleDefinition][] = [
        ['malformed cron', definition({ spec: { cron: 'not a cron' } })],
        ['cron that never fires', definition({ spec: { cron: '0 0 30 2 *' } })],
        ['unknown timezone', definition({ spec: { cron: '0 * * * *', timezone: 'Mars/Olympus' } })],
        ['both cron and everyMs', definition({ spec: { cron: '0 * * * *', everyMs: 5 } as unknown as ScheduleDefinition['spec'] })],
        ['everyMs 0', definition({ spec: { everyMs: 0 } })],
        ['empty name', definition({ name: '' })],
        ['empty workId', definition({ workId: '' })],
        ['param not JSON', definition({ param: { f: (() => 1) as unknown as string } })],
        ['unknown catchUp', definition({ catchUp: 'sometimes' as unknown as 'once' })],
        ['unknown overlap', definition({ overlap: 'maybe' as unknown as 'skip' })],
        ['maxCatchUp 0', definition({ maxCatchUp: 0 })],
        ['maxAttempts 0', definition({ maxAttempts: 0 })],
      ];
      for (const [what, def] of bad) expect(await rejectionOf(store().upsertSchedule(def)), what).toBeInstanceOf(InvalidInputError);
      expect(await store().listSchedules()).toEqual([]);
      // An invalid change of an existing schedule writes nothing either.
      const { schedule } = await store().upsertSchedule(definition());
      expect(await rejectionOf(store().upsertSchedule(definition({ spec: { cron: '61 * * * *' } })))).toBeInstanceOf(InvalidInputError);
      expect(await store().getSchedule('hourly')).toEqual(schedule);
    });

    rule('materializers on several clients create each occurrence once, even re-run after its task is Done', async () => {
      const { schedule } = await store().upsertSchedule(definition({ spec: { everyMs: MINUTE }, catchUp: 'all', overlap: 'allow' }));
      // The materializers' clock stands ten minutes ahead, frozen: about ten occurrences are due, the same on every tick.
      const at = Date.now() + 10 * MINUTE;
      const clock: Clock = {
        now: () => at,
        setTimer: () => {
          throw new Error('the materializer arms no timer');
        },
      };
      const clients = [store(), ...(await peers(3))];
      const materializers = clients.map((repository) => new ScheduleMaterializer({ repository, clock, lookaheadMs: 0 }));
      const results = await Promise.all(materializers.map((m) => m.tick()));
      expect(results.flatMap((r) => r.outcomes).filter((o) => o.error !== undefined)).toEqual([]);
      const tasks = (await listAll(store(), { limit: 100 })).sort((a, b) => a.scheduledAt.getTime() - b.scheduledAt.getTime());
      expect(tasks.length).toBeGreaterThanOrEqual(9);
      expect(tasks.length).toBeLessThanOrEqual(11);
      expect(results.reduce((sum, r) => sum + r.created, 0)).toBe(tasks.length);
      expectNoDuplicates(tasks.map((t) => t.uniqueKey ?? ''), 'occurrence uniqueKeys');
      const advanced = await store().getSchedule('hourly');
      expect(advanced.lastOccurrenceAt).toEqual(tasks[tasks.length - 1]!.scheduledAt);

      // The first occurrence runs to Done: its uniqueKey is free again, only its id still protects it.
      // The first occurrence may be due in the next minute: bring it due, or the claim by id is refused as not due.
      await store().update(tasks[0]!.id, { scheduledAt: new Date(Date.now() - MINUTE) });
      const first = await claimOrFail(store(), tasks[0]!.id);
      await store().markAsDone(first.id, first.lease.token);
      // Roll the schedule back, as if the node that inserted the tasks had died before advancing it.
      await store().advanceSchedule('hourly', { version: advanced.version, lastOccurrenceAt: null, lastTaskId: null, nextRunAt: schedule.nextRunAt });
      const again = await Promise.all(materializers.map((m) => m.tick()));
      expect(again.flatMap((r) => r.outcomes).filter((o) => o.error !== undefined)).toEqual([]);
      expect(again.reduce((sum, r) => sum + r.created, 0)).toBe(0);
      expect(await totalCount(store())).toBe(tasks.length);
      expect((await store().getSchedule('hourly')).nextRunAt).toEqual(advanced.nextRunAt);
    });

    rule('returned schedules are copies: mutating one changes nothing stored', async () => {
      const { schedule } = await store().upsertSchedule(definition({ param: { list: [1] } }));
      (schedule.param as { list: number[] }).list.push(2);
      schedule.nextRunAt!.setTime(0);
      const stored = await store().getSchedule('hourly');
      expect(stored.param).toEqual({ list: [1] });
      expect(stored.nextRunAt!.getTime()).not.toBe(0);
    });
  });
}
