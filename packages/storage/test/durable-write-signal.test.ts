// The DurableWriter's signal (issue 10, defect 5): it ends the wait between tries, never a try under way; and the
// RepositoryHealth that rate-limits its reports. The fault injector is the call itself: it fails with a
// RepositoryError, as a repository call does while the database is down.
import { VirtualClock } from '@horae/core/testing';
import { DurableWriter, RepositoryError, type RepositoryErrorEvent, type RepositoryRecoveredEvent } from '@horae/storage';
import { describe, expect, it } from 'vitest';
import { RepositoryHealth } from '../src/node/repository-health.js';
import { deferred } from './storage-helpers.js';

describe('DurableWriter: a signal ends the wait between tries', () => {
  it('an abort between tries rejects at once with the reason, and no later try is made', async () => {
    const clock = new VirtualClock();
    const writer = new DurableWriter({ clock, backoff: () => 1_000 });
    let tries = 0;
    const controller = new AbortController();
    const run = writer.run('insert', 't', () => {
      tries++;
      return Promise.reject(new RepositoryError('down'));
    }, { signal: controller.signal });
    const outcome = run.catch((error: unknown) => error);
    await clock.advance(2_500);
    expect(tries).toBe(3);
    const reason = new Error('enough');
    controller.abort(reason);
    expect(await outcome).toBe(reason);
    await clock.advance(10_000);
    expect(tries).toBe(3);
    expect(writer.inFlight).toBe(0);
    expect(clock.pendingTimers).toBe(0);
  });

  it('an abort during a try does not cut it: a try that lands resolves the call; one that fails rejects with the reason', async () => {
    const clock = new VirtualClock();
    const writer = new DurableWriter({ clock, backoff: () => 1_000 });
    const landing = deferred<string>();
    const controller = new AbortController();
    const landed = writer.run('insert', 'a', () => landing.promise, { signal: controller.signal });
    controller.abort(new Error('too late'));
    landing.resolve('written');
    await expect(landed).resolves.toBe('written');

    const failing = deferred<string>();
    const other = new AbortController();
    const failed = writer.run('insert', 'b', () => failing.promise, { signal: other.signal });
    const reason = new Error('give up');
    other.abort(reason);
    failing.reject(new RepositoryError('down'));
    await expect(failed).rejects.toBe(reason);
    expect(clock.pendingTimers).toBe(0);
  });

  it('an answer that is not an outage is thrown as before, signal or not', async () => {
    const writer = new DurableWriter({ clock: new VirtualClock() });
    const answer = new Error('no such task');
    await expect(writer.run('claim', 't', () => Promise.reject(answer), { signal: new AbortController().signal })).rejects.toBe(answer);
  });
});

describe('RepositoryHealth: outage reports, rate-limited', () => {
  function health(intervalMs: number): { clock: VirtualClock; health: RepositoryHealth; reports: RepositoryErrorEvent[]; ends: RepositoryRecoveredEvent[] } {
    const clock = new VirtualClock();
    const reports: RepositoryErrorEvent[] = [];
    const ends: RepositoryRecoveredEvent[] = [];
    return { clock, reports, ends, health: new RepositoryHealth({ clock, intervalMs, report: (e) => void reports.push(e), recovered: (e) => void ends.push(e) }) };
  }
  const failure = (operation: string, attempt = 1) => ({ operation, taskId: undefined, attempt, error: new RepositoryError('down'), retryInMs: 100 });

  it('reports the first failure of each operation at once, then one per interval with the count of the others', async () => {
    const { clock, health: h, reports, ends } = health(10_000);
    for (let i = 0; i < 5; i++) h.failed(failure('insert', i + 1));
    h.failed(failure('claim'));
    expect(reports.map((r) => [r.operation, r.suppressed])).toEqual([
      ['insert', 0],
      ['claim', 0],
    ]);
    expect(h.down).toBe(true);
    await clock.advance(10_000);
    h.failed(failure('insert', 6));
    expect(reports.at(-1)).toMatchObject({ operation: 'insert', suppressed: 4, attempt: 6 });
    h.landed();
    h.landed();
    expect(ends).toEqual([{ since: new Date(clock.now() - 10_000), downMs: 10_000, failures: 7, reported: 3 }]);
    expect(h.down).toBe(false);
    // The next outage starts afresh: its first failure is reported at once.
    h.failed(failure('insert'));
    expect(reports.at(-1)).toMatchObject({ operation: 'insert', suppressed: 0 });
  });

  it('an interval of 0 reports every failure', () => {
    const { health: h, reports } = health(0);
    for (let i = 0; i < 4; i++) h.failed(failure('insert', i + 1));
    expect(reports).toHaveLength(4);
  });

  it('a listener that throws disturbs nothing', () => {
    const clock = new VirtualClock();
    const h = new RepositoryHealth({ clock, intervalMs: 0, report: () => { throw new Error('listener'); }, recovered: () => { throw new Error('listener'); } });
    expect(() => h.failed(failure('insert'))).not.toThrow();
    expect(() => h.landed()).not.toThrow();
  });
});
