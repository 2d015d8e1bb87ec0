import { describe, expect, it } from 'vitest';
import type { AttemptOutcome, TaskAttempt, TaskInfo, TaskState } from '@horae/storage';
import { checkRuns, parseRunLog, runFails, type RunLine } from './run-log.js';

// The checker of the multi-node proof must itself be able to fail: each rule is shown refusing a bad log.

const KILLED = 666;
const OPTIONS = { killedPid: KILLED, maxAttempts: 3, failPercent: 10 };

/** A task id whose attempts 1..3 have the given random outcomes (found by search: the hash is fixed). */
function idWith(outcomes: readonly boolean[], prefix = 'x'): string {
  for (let n = 0; ; n++) {
    const id = `${prefix}${n}`;
    if (outcomes.every((fails, i) => runFails(id, i + 1, false, OPTIONS.failPercent) === fails)) return id;
  }
}

function task(id: string, state: TaskState, attempt: number): TaskInfo {
  const at = new Date(0);
  return {
    id,
    workId: 'job',
    param: { n: 0, alwaysFail: false },
    scheduledAt: at,
    state,
    priority: 0,
    attempt,
    claims: attempt,
    unstartedClaims: 0,
    maxAttempts: 3,
    lease: null,
    lastError: null,
    uniqueKey: null,
    progress: null,
    createdAt: at,
    updatedAt: at,
    kind: 'scheduled',
    scheduleName: null,
  };
}

function record(taskId: string, attempt: number, pid: number, outcome: AttemptOutcome): TaskAttempt {
  const at = new Date(0);
  return { taskId, run: attempt, attempt, node: `node-1-${pid}`, startedAt: at, endedAt: at, outcome, error: null, checkIns: [] };
}

const start = (taskId: string, attempt: number, pid: number): RunLine => ({ kind: 'start', taskId, attempt, pid });
const end = (taskId: string, attempt: number, pid: number, ok: boolean): RunLine => ({ kind: 'end', taskId, attempt, pid, ok });

describe('the run log of the multi-node proof', () => {
  const okFirst = idWith([false]);
  const failThenOk = idWith([true, false]);

  it('parses start and end lines, and refuses a torn one', () => {
    expect(parseRunLog('start t1 1 42\nend t1 1 42 ok\n')).toEqual([start('t1', 1, 42), end('t1', 1, 42, true)]);
    expect(() => parseRunLog('start t1 1 42\nend t1 1 4')).toThrow(/malformed/);
    expect(() => parseRunLog('end t1 1 42 maybe\n')).toThrow(/malformed/);
    expect(() => parseRunLog('start t1 x 42\n')).toThrow(/malformed/);
  });

  it('accepts a clean history: one run, a retried failure, a run cut by the kill and taken over', () => {
    const cut = idWith([false, false], 'cut');
    const check = checkRuns(
      [task(okFirst, 'Done', 1), task(failThenOk, 'Done', 2), task(cut, 'Done', 2)],
      [
        start(okFirst, 1, 1),
        end(okFirst, 1, 1, true),
        start(failThenOk, 1, 1),
        end(failThenOk, 1, 1, false),
        start(failThenOk, 2, 2),
        end(failThenOk, 2, 2, true),
        start(cut, 1, KILLED),
        start(cut, 2, 2),
        end(cut, 2, 2, true),
      ],
      OPTIONS,
    );
    expect(check.problems).toEqual([]);
    expect(check.takenOver).toBe(1);
    expect(check.outcomes).toMatchObject({ ok: 3, fail: 1, cut: 1 });
  });

  it('refuses a second start of one attempt (a task run twice at once)', () => {
    const check = checkRuns([task(okFirst, 'Done', 1)], [start(okFirst, 1, 1), start(okFirst, 1, 2), end(okFirst, 1, 1, true)], OPTIONS);
    expect(check.problems.join('\n')).toMatch(/two start lines/);
  });

  it('refuses a run after a success on a surviving worker', () => {
    const id = idWith([false, false]);
    const check = checkRuns([task(id, 'Done', 2)], [start(id, 1, 1), end(id, 1, 1, true), start(id, 2, 2), end(id, 2, 2, true)], OPTIONS);
    expect(check.problems.join('\n')).toMatch(/succeeded, yet the task ran again/);
  });

  it('refuses a Failed task whose work succeeded, and a Done task whose last run failed', () => {
    expect(checkRuns([task(okFirst, 'Failed', 1)], [start(okFirst, 1, 1), end(okFirst, 1, 1, true)], OPTIONS).problems.join('\n')).toMatch(/should be Done/);
    const failing = idWith([true, true, true]);
    const lines = [1, 2, 3].flatMap((a) => [start(failing, a, 1), end(failing, a, 1, false)]);
    expect(checkRuns([task(failing, 'Failed', 3)], lines, OPTIONS).problems).toEqual([]);
    expect(checkRuns([task(failing, 'Done', 3)], lines, OPTIONS).problems.join('\n')).toMatch(/should be Failed/);
  });

  it('refuses a stored attempt that does not count a cut run, and an outcome the hash did not decide', () => {
    const id = idWith([false]);
    expect(checkRuns([task(id, 'Done', 1)], [start(id, 1, KILLED), start(id, 1, 2), end(id, 1, 2, true)], OPTIONS).problems.join('\n')).toMatch(/two start lines/);
    expect(checkRuns([task(id, 'Done', 1)], [start(id, 1, 1), end(id, 1, 1, false)], OPTIONS).problems.join('\n')).toMatch(/wrong outcome/);
  });

  it('checks the execution history: one record per attempt, on the logging node, closed as the log says', () => {
    const cut = idWith([false, false], 'hist');
    const lines = [start(cut, 1, KILLED), start(cut, 2, 2), end(cut, 2, 2, true)];
    const good = new Map([[cut, [record(cut, 1, KILLED, 'lease-expired'), record(cut, 2, 2, 'succeeded')]]]);
    expect(checkRuns([task(cut, 'Done', 2)], lines, { ...OPTIONS, history: good }).problems).toEqual([]);
    const wrongNode = new Map([[cut, [record(cut, 1, KILLED, 'lease-expired'), record(cut, 2, 3, 'succeeded')]]]);
    expect(checkRuns([task(cut, 'Done', 2)], lines, { ...OPTIONS, history: wrongNode }).problems.join('\n')).toMatch(/history run 2/);
    const missing = new Map([[cut, [record(cut, 2, 2, 'succeeded')]]]);
    expect(checkRuns([task(cut, 'Done', 2)], lines, { ...OPTIONS, history: missing }).problems.join('\n')).toMatch(/1 runs for 2 attempts/);
    const stillRunning = new Map([[cut, [record(cut, 1, KILLED, 'running'), record(cut, 2, 2, 'succeeded')]]]);
    expect(checkRuns([task(cut, 'Done', 2)], lines, { ...OPTIONS, history: stillRunning }).problems.join('\n')).toMatch(/history run 1/);
  });

  it('refuses a run on a surviving worker that never ended, and a task left Working', () => {
    expect(checkRuns([task(okFirst, 'Done', 1)], [start(okFirst, 1, 1)], OPTIONS).problems.join('\n')).toMatch(/never ended/);
    expect(checkRuns([task(okFirst, 'Working', 1)], [start(okFirst, 1, KILLED)], OPTIONS).problems.join('\n')).toMatch(/not Done nor Failed/);
  });
});
