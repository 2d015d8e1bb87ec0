import { describe, expect, it } from 'vitest';
import type { AttemptOutcome, TaskAttempt, TaskInfo, TaskState } from '@horae/storage';
import { parseRunLog, runFails, type RunLine } from '../multi-node/run-log.js';
import { checkInvariants, TerminalWatch, type Invariant } from './invariants.js';

// The chaos suite's checker must itself be able to fail: each invariant is shown refusing evidence that breaks it,
// next to a clean story it accepts. Times are small numbers of ms; the lease is 1000 ms.

const FAIL_PERCENT = 10;
const MAX_ATTEMPTS = 3;
const A = 101;
const B = 202;

/** A task id whose attempts 1..n have the given random outcomes (found by search: the hash is fixed). */
function idWith(fails: readonly boolean[]): string {
  for (let n = 0; ; n++) {
    const id = `t${n}`;
    if (fails.every((f, i) => runFails(id, i + 1, false, FAIL_PERCENT) === f)) return id;
  }
}

function task(id: string, state: TaskState, attempt: number, scheduledAt = 0): TaskInfo {
  return {
    id,
    workId: 'job',
    param: { n: 0, alwaysFail: false },
    scheduledAt: new Date(scheduledAt),
    state,
    priority: 0,
    attempt,
    claims: attempt,
    unstartedClaims: 0,
    maxAttempts: MAX_ATTEMPTS,
    lease: null,
    lastError: null,
    uniqueKey: null,
    progress: null,
    createdAt: new Date(0),
    updatedAt: new Date(0),
    kind: 'scheduled',
    scheduleName: null,
  };
}

function record(taskId: string, run: number, pid: number, startedAt: number, outcome: AttemptOutcome, attempt = run): TaskAttempt {
  return { taskId, run, attempt, node: `node-0-${pid}`, startedAt: new Date(startedAt), endedAt: new Date(startedAt + 10), outcome, error: null, checkIns: [] };
}

function check(tasks: TaskInfo[], log: string, records: TaskAttempt[], dueAt: Record<string, number>, killed: number[] = []): Invariant[] {
  const lines: RunLine[] = parseRunLog(log);
  const history = new Map<string, TaskAttempt[]>();
  for (const r of records) history.set(r.taskId, [...(history.get(r.taskId) ?? []), r]);
  const report = checkInvariants(tasks, lines, history, { dueAt: new Map(Object.entries(dueAt)), maxAttempts: MAX_ATTEMPTS, failPercent: FAIL_PERCENT, killedPids: new Set(killed) });
  return report.violations.map((v) => v.invariant);
}

const ok = idWith([false]);
const failOk = idWith([true, false]);

describe('checkInvariants', () => {
  it('accepts a clean story: a success; a failure retried; a run whose lease expired, taken over after its expiry', () => {
    const tasks = [task(ok, 'Done', 1), task(failOk, 'Done', 2, 200), task('cut', 'Done', 2, 1500)];
    const log = [
      `start ${ok} 1 ${A} 100 1100`,
      `end ${ok} 1 ${A} ok 120`,
      `start ${failOk} 1 ${A} 100 1100`,
      `end ${failOk} 1 ${A} fail 150`,
      `start ${failOk} 2 ${B} 210 1210`,
      `end ${failOk} 2 ${B} ok 230`,
      `start cut 1 ${A} 100 1100`,
      `start cut 2 ${B} 1500 2500`,
      `end cut 2 ${B} ok 1520`,
    ].join('\n');
    const records = [
      record(ok, 1, A, 100, 'succeeded'),
      record(failOk, 1, A, 100, 'retried'),
      record(failOk, 2, B, 210, 'succeeded'),
      record('cut', 1, A, 100, 'lease-expired'),
      record('cut', 2, B, 1500, 'succeeded'),
    ];
    expect(check(tasks, log, records, { [ok]: 50, [failOk]: 50, cut: 50 }, [A])).toEqual([]);
  });

  it('lost: an inserted task with no row, a task left Initialized, a Done without its logged success', () => {
    expect(check([], '', [], { gone: 0 })).toEqual(['lost']);
    expect(check([task(ok, 'Initialized', 0)], '', [], { [ok]: 0 })).toEqual(['lost']);
    expect(check([task(ok, 'Done', 1)], `start ${ok} 1 ${A} 10 1010`, [record(ok, 1, A, 10, 'succeeded')], { [ok]: 0 })).toContain('lost');
  });

  it('started-twice: one attempt started on two nodes, or two records of one attempt', () => {
    const log = [`start ${ok} 1 ${A} 10 1010`, `start ${ok} 1 ${B} 20 1020`, `end ${ok} 1 ${B} ok 30`].join('\n');
    expect(check([task(ok, 'Done', 1)], log, [record(ok, 1, B, 20, 'succeeded')], { [ok]: 0 })).toContain('started-twice');
    const twice = [record(ok, 1, A, 10, 'lease-expired'), record(ok, 2, B, 1020, 'succeeded', 1)];
    expect(check([task(ok, 'Done', 1)], `start ${ok} 1 ${B} 1020 2020\nend ${ok} 1 ${B} ok 1030`, twice, { [ok]: 0 })).toContain('started-twice');
  });

  it('started-twice: a run logged before the database recorded its start', () => {
    const log = [`start ${ok} 1 ${A} 10 1010`, `end ${ok} 1 ${A} ok 30`].join('\n');
    expect(check([task(ok, 'Done', 1)], log, [record(ok, 1, A, 20, 'succeeded')], { [ok]: 0 })).toEqual(['started-twice']);
  });

  it('started-twice: a run on a live node that neither ended nor lost its lease', () => {
    expect(check([task(ok, 'Working', 1)], `start ${ok} 1 ${A} 10 1010`, [record(ok, 1, A, 10, 'running')], { [ok]: 0 })).toContain('started-twice');
  });

  it('before-lease-expiry: the next run started before the lease of the previous one expired', () => {
    const log = [`start cut 1 ${A} 100 1100`, `start cut 2 ${B} 900 1900`, `end cut 2 ${B} ok 920`].join('\n');
    const records = [record('cut', 1, A, 100, 'lease-expired'), record('cut', 2, B, 900, 'succeeded')];
    expect(check([task('cut', 'Done', 2, 900)], log, records, { cut: 50 }, [A])).toEqual(['before-lease-expiry']);
  });

  it('terminal-changed: a run after a success, and a snapshot that saw Done turn into something else', () => {
    const log = [`start ${failOk} 1 ${A} 10 1010`, `end ${failOk} 1 ${A} fail 20`, `start ${failOk} 2 ${B} 30 1030`, `end ${failOk} 2 ${B} ok 40`].join('\n');
    const records = [record(failOk, 1, A, 10, 'succeeded'), record(failOk, 2, B, 30, 'succeeded')];
    expect(check([task(failOk, 'Done', 2)], log, records, { [failOk]: 0 })).toContain('terminal-changed');
    const watch = new TerminalWatch();
    watch.observe([task(ok, 'Done', 1)]);
    watch.observe([task(ok, 'Initialized', 1)]);
    expect(watch.violations.map((v) => v.invariant)).toEqual(['terminal-changed']);
  });

  it('before-due: a first run before the inserted due time, or a last run before the stored one (log or database)', () => {
    const early = [`start ${ok} 1 ${A} 90 1090`, `end ${ok} 1 ${A} ok 100`].join('\n');
    expect(check([task(ok, 'Done', 1)], early, [record(ok, 1, A, 90, 'succeeded')], { [ok]: 100 })).toEqual(['before-due', 'before-due']);
    const retried = [`start ${failOk} 1 ${A} 100 1100`, `end ${failOk} 1 ${A} fail 110`, `start ${failOk} 2 ${B} 150 1150`, `end ${failOk} 2 ${B} ok 160`].join('\n');
    const records = [record(failOk, 1, A, 100, 'retried'), record(failOk, 2, B, 150, 'succeeded')];
    expect(check([task(failOk, 'Done', 2, 200)], retried, records, { [failOk]: 100 })).toEqual(['before-due', 'before-due']);
  });

  it('started-on-expired-lease: the database started a run after the lease it started under had expired', () => {
    const log = [`start cut 1 ${A} 1200 1100`, `start cut 2 ${B} 1300 2300`, `end cut 1 ${A} ok 1400`, `end cut 2 ${B} ok 1500`].join('\n');
    const lines = parseRunLog(log);
    const history = new Map([['cut', [record('cut', 1, A, 1200, 'lease-expired'), record('cut', 2, B, 1300, 'succeeded')]]]);
    const report = checkInvariants([task('cut', 'Done', 2, 1300)], lines, history, { dueAt: new Map([['cut', 0]]), maxAttempts: MAX_ATTEMPTS, failPercent: 0 });
    expect(report.violations.map((v) => v.invariant)).toEqual(['started-on-expired-lease']);
    expect(report.counts).toMatchObject({ startedExpired: 1, overlaps: 1, leaseExpired: 1, rerunAfterExpiry: 1, minTakeoverMarginMs: 200 });
  });

  it('counts, without a violation, work that began after its lease expired when the database started it inside the lease', () => {
    // Started by the database at 1050 under a lease to 1100; the work logged its start at 1200 (a slow event loop).
    const log = [`start cut 1 ${A} 1200 1100`, `start cut 2 ${B} 1300 2300`, `end cut 1 ${A} ok 1400`, `end cut 2 ${B} ok 1500`].join('\n');
    const history = new Map([['cut', [record('cut', 1, A, 1050, 'lease-expired'), record('cut', 2, B, 1300, 'succeeded')]]]);
    const report = checkInvariants([task('cut', 'Done', 2, 1300)], parseRunLog(log), history, { dueAt: new Map([['cut', 0]]), maxAttempts: MAX_ATTEMPTS, failPercent: 0 });
    expect(report.violations).toEqual([]);
    expect(report.counts).toMatchObject({ startedExpired: 1, overlaps: 1 });
  });

  it('counts as overlapping a run aborted (its lease lost) after the next one started; an abort is not a wrong outcome', () => {
    const log = [`start cut 1 ${A} 1200 1100`, `start cut 2 ${B} 1300 2300`, `end cut 1 ${A} abort 1500`, `end cut 2 ${B} ok 1600`].join('\n');
    const history = new Map([['cut', [record('cut', 1, A, 1050, 'lease-expired'), record('cut', 2, B, 1300, 'succeeded')]]]);
    const report = checkInvariants([task('cut', 'Done', 2, 1300)], parseRunLog(log), history, { dueAt: new Map([['cut', 0]]), maxAttempts: MAX_ATTEMPTS, failPercent: 0 });
    expect(report.violations).toEqual([]);
    expect(report.counts.overlaps).toBe(1);
    expect(() => parseRunLog(`end cut 1 ${A} abort`)).toThrow(/malformed/);
  });
});
