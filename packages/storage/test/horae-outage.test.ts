// Issue 10, defect 5, at the facade: start() while the database is down does what its TSDoc says, and the
// recurring-schedule loop reports an outage once, without a stack, rather than a warning with a stack at every tick.
import { RepositoryError, WorkRegistry } from '@horae/storage';
import { afterEach, describe, expect, it } from 'vitest';
import { horaeOn, stopAll, world } from './horae-helpers.js';

const warnings: Error[] = [];
const onWarning = (warning: Error): void => void warnings.push(warning);

afterEach(() => {
  process.off('warning', onWarning);
  warnings.length = 0;
});

/** The process warnings Horae emitted with a given code (they are delivered on a later tick). */
function horaeWarnings(code: string): Error[] {
  return warnings.filter((w) => (w as Error & { code?: string }).code === code);
}

describe('horae.start() while the database is down', () => {
  it('rejects with the RepositoryError at once, is not started, and starts when called again once the database is back', async () => {
    const { clock, repo } = world();
    const runs: string[] = [];
    const horae = horaeOn(clock, repo, new WorkRegistry().register('w', (ctx) => void runs.push(ctx.taskId)));
    await repo.insert({ id: 'stored', workId: 'w', scheduledAt: new Date(clock.now()) });
    repo.setUnavailable(true);
    let outcome: unknown = 'pending';
    horae.start().then(
      () => (outcome = 'resolved'),
      (error: unknown) => (outcome = error),
    );
    await clock.advance(0);
    expect(outcome).toBeInstanceOf(RepositoryError);
    expect(horae.started).toBe(false);
    expect(horae.scheduler.started).toBe(false);

    repo.setUnavailable(false);
    await horae.start();
    expect(horae.started).toBe(true);
    await clock.advance(10);
    expect(runs).toEqual(['stored']);
    await stopAll([horae]);
  });

  it('stop() after a start that failed resolves', async () => {
    const { clock, repo } = world();
    const horae = horaeOn(clock, repo, new WorkRegistry());
    repo.setUnavailable(true);
    await expect(horae.start()).rejects.toBeInstanceOf(RepositoryError);
    await stopAll([horae]);
    await expect(horae.start()).rejects.toMatchObject({ code: 'INVALID_STATE' });
  });
});

describe('the recurring-schedule loop during an outage', () => {
  it('says the outage once, without a stack, not at every tick; and its end once', async () => {
    process.on('warning', onWarning);
    const { clock, repo } = world();
    const horae = horaeOn(clock, repo, new WorkRegistry().register('w', () => undefined), { scheduleTickMs: 1_000, syncIntervalMs: 60_000 });
    await horae.start();
    await horae.schedule({ name: 'every-second', workId: 'w', every: 1_000 });
    repo.setUnavailable(true);
    await clock.advance(30_000);
    await new Promise((resolve) => setImmediate(resolve));
    const said = horaeWarnings('HORAE_SCHEDULES_ERROR');
    expect(said).toHaveLength(1);
    expect(said[0]!.message).toMatch(/set unavailable/);
    expect(said[0]!.message).not.toMatch(/\n\s+at /);

    repo.setUnavailable(false);
    await clock.advance(2_000);
    await new Promise((resolve) => setImmediate(resolve));
    const recovered = horaeWarnings('HORAE_SCHEDULES_RECOVERED');
    expect(recovered).toHaveLength(1);
    expect(recovered[0]!.message).toMatch(/after \d+ ticks failed/);
    expect(horaeWarnings('HORAE_SCHEDULES_ERROR')).toHaveLength(1);
    await stopAll([horae]);
  });

  it('tells schedules:error listeners the first failure of each outage, and schedules:recovered its end with the count', async () => {
    const { clock, repo } = world();
    const horae = horaeOn(clock, repo, new WorkRegistry().register('w', () => undefined), { scheduleTickMs: 1_000, syncIntervalMs: 60_000 });
    const errors: unknown[] = [];
    const ends: Array<{ failedTicks: number; suppressed: number; downMs: number }> = [];
    horae.horaeEvents.on('schedules:error', ({ error }) => void errors.push(error));
    horae.horaeEvents.on('schedules:recovered', (report) => void ends.push(report));
    await horae.start();
    await horae.schedule({ name: 'every-second', workId: 'w', every: 1_000 });
    for (let outage = 0; outage < 2; outage++) {
      repo.setUnavailable(true);
      await clock.advance(10_000);
      repo.setUnavailable(false);
      await clock.advance(1_000);
    }
    expect(errors).toHaveLength(2);
    for (const error of errors) expect(error).toBeInstanceOf(RepositoryError);
    expect(ends).toHaveLength(2);
    for (const end of ends) {
      expect(end.failedTicks).toBeGreaterThanOrEqual(9);
      expect(end.suppressed).toBe(end.failedTicks - 1);
    }
    await stopAll([horae]);
  });
});
