import { InvalidInputError } from '@horae/core';
import { ScheduleNotFoundError, Schedules, WorkRegistry, isScheduleStore, type Repository } from '@horae/storage';
import { describe, expect, it } from 'vitest';
import { HOUR, MINUTE, node, taskTimes, world } from './schedules-helpers.js';

function setup(withRegistry = true): ReturnType<typeof world> & { schedules: Schedules; registry: WorkRegistry } {
  const w = world();
  const registry = new WorkRegistry()
    .register('report', () => undefined, { maxAttempts: 4 })
    .register('mail', () => undefined, {
      validate: (p) => {
        if (typeof (p as { to?: unknown } | null)?.to !== 'string') throw new Error('`to` must be a string');
        return p;
      },
    });
  return { ...w, registry, schedules: new Schedules(withRegistry ? { repository: w.repo, registry } : { repository: w.repo }) };
}

async function rejectionOf(call: Promise<unknown>): Promise<unknown> {
  return call.then(
    () => expect.fail('expected a rejection'),
    (error: unknown) => error,
  );
}

describe('Schedules (the user-facing API)', () => {
  it('upsert is idempotent at every start, and updates a changed definition', async () => {
    const { schedules } = setup();
    const first = await schedules.upsert({ name: 'nightly', cron: '30 2 * * *', timezone: 'Europe/Berlin', workId: 'report' });
    expect(first).toMatchObject({ created: true, changed: true });
    expect(first.schedule).toMatchObject({ spec: { cron: '30 2 * * *', timezone: 'Europe/Berlin' }, maxAttempts: 4, catchUp: 'once', overlap: 'skip' });
    expect(first.schedule.nextRunAt).toEqual(new Date('2026-01-01T01:30:00.000Z'));
    // A restart registers the same schedule again: nothing changes, not even updatedAt or version.
    const restart = await schedules.upsert({ name: 'nightly', cron: '30 2 * * *', timezone: 'Europe/Berlin', workId: 'report' });
    expect(restart).toEqual({ schedule: first.schedule, created: false, changed: false });
    const changed = await schedules.upsert({ name: 'nightly', cron: '30 3 * * *', timezone: 'Europe/Berlin', workId: 'report', overlap: 'allow' });
    expect(changed).toMatchObject({ created: false, changed: true });
    expect(changed.schedule).toMatchObject({ overlap: 'allow', version: 2, nextRunAt: new Date('2026-01-01T02:30:00.000Z') });
    expect((await schedules.list()).map((s) => s.name)).toEqual(['nightly']);
  });

  it('refuses bad input with InvalidInputError and writes nothing', async () => {
    const { schedules, repo } = setup();
    const bad: [string, Parameters<Schedules['upsert']>[0]][] = [
      ['malformed cron', { name: 'x', cron: '* * *', workId: 'report' }],
      ['unknown timezone', { name: 'x', cron: '0 * * * *', timezone: 'Nowhere/Town', workId: 'report' }],
      ['both cron and everyMs', { name: 'x', cron: '0 * * * *', everyMs: 1000, workId: 'report' }],
      ['neither cron nor everyMs', { name: 'x', workId: 'report' }],
      ['timezone with everyMs', { name: 'x', everyMs: 1000, timezone: 'UTC', workId: 'report' }],
      ['unknown workId', { name: 'x', everyMs: 1000, workId: 'nope' }],
      ['param failing the work validator', { name: 'x', everyMs: 1000, workId: 'mail', param: { to: 5 } }],
      ['param not JSON', { name: 'x', everyMs: 1000, workId: 'report', param: { at: new Date() } }],
      ['bad overlap', { name: 'x', everyMs: 1000, workId: 'report', overlap: 'sometimes' as 'skip' }],
    ];
    for (const [what, input] of bad) {
      const error = await rejectionOf(schedules.upsert(input));
      expect(error, what).toBeInstanceOf(InvalidInputError);
    }
    expect(await repo.listSchedules()).toEqual([]);
  });

  it('accepts any workId without a registry, and a validated param with one', async () => {
    const { schedules } = setup(false);
    expect((await schedules.upsert({ name: 'x', everyMs: 1000, workId: 'anything' })).created).toBe(true);
    const withRegistry = setup();
    const { schedule } = await withRegistry.schedules.upsert({ name: 'm', everyMs: HOUR, workId: 'mail', param: { to: 'ops@example.com' } });
    expect(schedule.param).toEqual({ to: 'ops@example.com' });
  });

  it('pause, resume, runSoon, get and remove, with ScheduleNotFoundError for unknown names', async () => {
    const { schedules, repo, clock } = setup();
    await schedules.upsert({ name: 'hourly', everyMs: HOUR, workId: 'report', overlap: 'allow' });
    const m = node({ repo, clock });
    expect((await schedules.pause('hourly')).paused).toBe(true);
    await clock.advance(2 * HOUR);
    expect((await m.tick()).created).toBe(0);
    expect((await schedules.resume('hourly')).nextRunAt).toEqual(new Date('2026-01-01T03:00:00.000Z'));
    await schedules.runSoon('hourly', 10 * MINUTE);
    expect((await schedules.get('hourly')).nextRunAt).toEqual(new Date('2026-01-01T02:10:00.000Z'));
    await clock.advance(10 * MINUTE);
    expect((await m.tick()).created).toBe(1);
    await schedules.remove('hourly');
    expect(await schedules.list()).toEqual([]);
    await clock.advance(HOUR);
    expect((await m.tick()).created).toBe(0);
    expect(await taskTimes(repo)).toEqual(['2026-01-01T02:10:00.000Z']);
    for (const call of [schedules.get('hourly'), schedules.pause('hourly'), schedules.resume('hourly'), schedules.remove('hourly'), schedules.runSoon('hourly')]) {
      expect(await rejectionOf(call)).toBeInstanceOf(ScheduleNotFoundError);
    }
  });

  it('refuses a repository that does not persist schedules', () => {
    const { repo } = world();
    const plain = { ...Object.fromEntries(['insert', 'getById'].map((k) => [k, () => undefined])) } as unknown as Repository;
    expect(isScheduleStore(plain)).toBe(false);
    expect(isScheduleStore(repo)).toBe(true);
    expect(() => new Schedules({ repository: plain as never })).toThrow(InvalidInputError);
  });
});
