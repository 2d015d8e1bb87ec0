import { randomUUID } from 'node:crypto';
import { InvalidInputError } from '@horae/core';
import { expect } from 'vitest';
import { TaskNotFoundError } from '../../contract/errors.js';
import type { Repository } from '../../contract/repository.js';
import { MAX_CHECK_INS_PER_ATTEMPT, type NewTask, type TaskAttempt, type TaskInfo, type TaskKind } from '../../contract/task-info.js';
import { MINUTE, claimOrFail, foreignToken, idsOf, insertClaimed, insertTask, newTask, openPeers, totalCount } from '../helpers.js';
import type { SuiteContext } from '../suite-context.js';

/** The error reclaimExpired records on the run whose lease expired. */
const LEASE_EXPIRED = { message: 'lease expired', code: 'LEASE_EXPIRED' };

/** The attempts of `id`, checked for the shape every record has. */
async function attemptsOf(repo: Repository, id: string): Promise<TaskAttempt[]> {
  const attempts = await repo.listAttempts(id);
  expect(Array.isArray(attempts)).toBe(true);
  for (const attempt of attempts) {
    expect(attempt.taskId).toBe(id);
    expect(attempt.startedAt).toBeInstanceOf(Date);
    // The database clock of a local test database is within minutes of this process's clock.
    expect(Math.abs(attempt.startedAt.getTime() - Date.now())).toBeLessThan(5 * MINUTE);
    if (attempt.outcome === 'running') {
      expect(attempt.endedAt).toBeNull();
    } else {
      expect(attempt.endedAt).toBeInstanceOf(Date);
      expect(attempt.endedAt!.getTime()).toBeGreaterThanOrEqual(attempt.startedAt.getTime());
    }
    expect(Array.isArray(attempt.checkIns)).toBe(true);
  }
  expect(attempts.map((a) => a.run), 'runs are numbered 1, 2, … oldest first').toEqual(attempts.map((_, i) => i + 1));
  return attempts;
}

/** The only record of `id`. */
async function onlyAttempt(repo: Repository, id: string): Promise<TaskAttempt> {
  const attempts = await attemptsOf(repo, id);
  expect(attempts).toHaveLength(1);
  return attempts[0]!;
}

/** The check-in messages of a record. */
function messagesOf(attempt: TaskAttempt | undefined): string[] {
  return (attempt?.checkIns ?? []).map((checkIn) => checkIn.message);
}

/** listAttempts (execution history written with each transition), check-ins, and task kinds. */
export function historyRules({ group, rule, repo, fixture }: SuiteContext): void {
  group('execution history', () => {
    rule('a task that never ran has no attempts', async () => {
      const task = await insertTask(repo());
      expect(await repo().listAttempts(task.id)).toEqual([]);
    });

    rule('listAttempts of an unknown id throws TaskNotFoundError', async () => {
      await insertTask(repo());
      await expect(repo().listAttempts(randomUUID())).rejects.toBeInstanceOf(TaskNotFoundError);
    });

    rule('a claim opens a running record: node, startedAt, run 1, attempt 1', async () => {
      const claimed = await insertClaimed(repo(), { maxAttempts: 3 }, { owner: 'node-h1' });
      const attempt = await onlyAttempt(repo(), claimed.id);
      expect(attempt).toEqual({
        taskId: claimed.id,
        run: 1,
        attempt: 1,
        node: 'node-h1',
        startedAt: expect.any(Date) as Date,
        endedAt: null,
        outcome: 'running',
        error: null,
        checkIns: [],
      });
    });

    rule('of concurrent claims only the winner opens a record', async () => {
      const task = await insertTask(repo(), { maxAttempts: 3 });
      const clients = [repo(), ...(await openPeers(() => fixture().openPeer(), 3))];
      const results = await Promise.all(clients.map((client, i) => client.claim(task.id, { owner: `node-${i}`, leaseMs: 60_000 })));
      const winners = results.filter((r): r is TaskInfo => r !== null);
      expect(winners).toHaveLength(1);
      const attempt = await onlyAttempt(repo(), task.id);
      expect(attempt).toMatchObject({ outcome: 'running', node: winners[0]!.lease!.owner, run: 1, attempt: 1 });
    });

    rule('claimDue opens no record; markAsStarted opens it for each started task', async () => {
      // A claim ahead is not a run (DESIGN rule 11): the record opens when the run starts.
      await repo().insertMany(Array.from({ length: 4 }, () => newTask({ maxAttempts: 2 })));
      const claimed = await repo().claimDue({ owner: 'node-due', leaseMs: 60_000, limit: 3 });
      expect(claimed).toHaveLength(3);
      for (const task of claimed) expect(await repo().listAttempts(task.id)).toEqual([]);
      for (const task of claimed) await repo().markAsStarted(task.id, task.lease!.token);
      for (const task of claimed) {
        expect(await onlyAttempt(repo(), task.id)).toMatchObject({ node: 'node-due', run: 1, attempt: 1, outcome: 'running', endedAt: null, error: null });
      }
      const claimedIds = new Set(idsOf(claimed));
      const left = (await repo().list({ state: 'Initialized' })).tasks.filter((task) => !claimedIds.has(task.id));
      expect(left).toHaveLength(1);
      expect(await repo().listAttempts(left[0]!.id)).toEqual([]);
    });

    rule('markAsDone closes the record succeeded', async () => {
      const claimed = await insertClaimed(repo(), {}, { owner: 'node-h1' });
      await repo().markAsDone(claimed.id, claimed.lease.token);
      const attempt = await onlyAttempt(repo(), claimed.id);
      expect(attempt).toMatchObject({ run: 1, attempt: 1, node: 'node-h1', outcome: 'succeeded', error: null });
      expect(Math.abs(attempt.endedAt!.getTime() - Date.now())).toBeLessThan(5 * MINUTE);
    });

    rule('markAsFailed out of Working closes the record failed with the error', async () => {
      const claimed = await insertClaimed(repo());
      const error = { message: 'boom', name: 'RangeError', code: 'E_BOOM', stack: 'RangeError: boom\n    at frame (file.js:1:1)' };
      await repo().markAsFailed(claimed.id, error, claimed.lease.token);
      expect(await onlyAttempt(repo(), claimed.id)).toMatchObject({ outcome: 'failed', error });
    });

    rule('markAsFailed out of Initialized writes no record', async () => {
      const task = await insertTask(repo());
      await repo().markAsFailed(task.id, { message: 'cannot run', code: 'UNKNOWN_WORK' });
      expect(await repo().listAttempts(task.id)).toEqual([]);
    });

    rule('release with an error closes the record retried with the error', async () => {
      const claimed = await insertClaimed(repo(), { maxAttempts: 3 });
      await repo().release(claimed.id, claimed.lease.token, { runAt: new Date(), error: { message: 'try again', code: 'E_RETRY' } });
      expect(await onlyAttempt(repo(), claimed.id)).toMatchObject({ run: 1, attempt: 1, outcome: 'retried', error: { message: 'try again', code: 'E_RETRY' } });
      const second = await claimOrFail(repo(), claimed.id, { owner: 'node-b' });
      const attempts = await attemptsOf(repo(), claimed.id);
      expect(attempts).toHaveLength(2);
      expect(attempts[0]).toMatchObject({ outcome: 'retried', node: 'node-a' });
      expect(attempts[1]).toMatchObject({ run: 2, attempt: second.attempt, node: 'node-b', outcome: 'running', endedAt: null, error: null });
      expect(second.attempt).toBe(2);
    });

    rule('release without an error closes the record released, with no error', async () => {
      const first = await insertClaimed(repo(), { maxAttempts: 3 });
      await repo().release(first.id, first.lease.token, { runAt: new Date(), error: { message: 'first' } });
      const second = await claimOrFail(repo(), first.id);
      const released = await repo().release(second.id, second.lease.token, { runAt: new Date() });
      // The task keeps its last error; the record of the run that was handed back has none.
      expect(released.lastError).toMatchObject({ message: 'first' });
      const attempts = await attemptsOf(repo(), first.id);
      expect(attempts.map((a) => a.outcome)).toEqual(['retried', 'released']);
      expect(attempts[1]!.error).toBeNull();
    });

    rule('release with refundAttempt, then a claim: run 2 with the same attempt 1', async () => {
      const claimed = await insertClaimed(repo(), { maxAttempts: 3 });
      await repo().release(claimed.id, claimed.lease.token, { runAt: new Date(), refundAttempt: true });
      const again = await claimOrFail(repo(), claimed.id);
      expect(again.attempt).toBe(1);
      const attempts = await attemptsOf(repo(), claimed.id);
      expect(attempts).toHaveLength(2);
      expect(attempts[0]).toMatchObject({ run: 1, attempt: 1, outcome: 'released', error: null });
      expect(attempts[1]).toMatchObject({ run: 2, attempt: 1, outcome: 'running' });
    });

    rule('markAsCancelled out of Working closes the record cancelled', async () => {
      const byHolder = await insertClaimed(repo());
      await repo().markAsCancelled(byHolder.id, { token: byHolder.lease.token });
      expect(await onlyAttempt(repo(), byHolder.id)).toMatchObject({ outcome: 'cancelled' });
      const byOperator = await insertClaimed(repo());
      expect((await repo().markAsCancelled(byOperator.id)).cancelled).toBe(true);
      expect(await onlyAttempt(repo(), byOperator.id)).toMatchObject({ outcome: 'cancelled' });
    });

    rule('markAsCancelled out of Initialized writes no record', async () => {
      const task = await insertTask(repo());
      await repo().markAsCancelled(task.id);
      expect(await repo().listAttempts(task.id)).toEqual([]);
    });

    rule('reclaimExpired closes the record lease-expired, and the next claim opens run 2', async () => {
      const claimed = await insertClaimed(repo(), { maxAttempts: 3 }, { owner: 'node-dead', leaseMs: 0 });
      expect(idsOf(await repo().reclaimExpired())).toEqual([claimed.id]);
      expect(await onlyAttempt(repo(), claimed.id)).toMatchObject({ run: 1, attempt: 1, node: 'node-dead', outcome: 'lease-expired', error: LEASE_EXPIRED });
      await claimOrFail(repo(), claimed.id, { owner: 'node-alive' });
      const attempts = await attemptsOf(repo(), claimed.id);
      expect(attempts[1]).toMatchObject({ run: 2, attempt: 2, node: 'node-alive', outcome: 'running' });
    });

    rule('reclaimExpired of a task with its attempts spent closes the record lease-expired', async () => {
      const claimed = await insertClaimed(repo(), { maxAttempts: 1 }, { leaseMs: 0 });
      const [reclaimed] = await repo().reclaimExpired();
      expect(reclaimed?.state).toBe('Failed');
      expect(await onlyAttempt(repo(), claimed.id)).toMatchObject({ outcome: 'lease-expired', error: LEASE_EXPIRED });
    });

    rule('a refused transition writes no record', async () => {
      const claimed = await insertClaimed(repo(), { maxAttempts: 3 });
      const before = await attemptsOf(repo(), claimed.id);
      const wrong = foreignToken();
      const refused: [string, () => Promise<unknown>][] = [
        ['markAsStarted', () => repo().markAsStarted(claimed.id, wrong)],
        ['markAsDone', () => repo().markAsDone(claimed.id, wrong)],
        ['markAsFailed', () => repo().markAsFailed(claimed.id, { message: 'x' }, wrong)],
        ['markAsFailed without a token', () => repo().markAsFailed(claimed.id, { message: 'x' })],
        ['release', () => repo().release(claimed.id, wrong, { runAt: new Date(), error: { message: 'x' } })],
        ['markAsCancelled', () => repo().markAsCancelled(claimed.id, { token: wrong })],
        ['setProgress', () => repo().setProgress(claimed.id, wrong, { completed: 1, total: 2, message: 'zombie' })],
      ];
      for (const [name, call] of refused) await expect(call(), name).rejects.toBeInstanceOf(Error);
      expect(await repo().claim(claimed.id, { owner: 'node-b', leaseMs: 60_000 }), 'a second claim').toBeNull();
      expect(await attemptsOf(repo(), claimed.id)).toEqual(before);
      expect(before).toHaveLength(1);
      expect(before[0]).toMatchObject({ outcome: 'running', checkIns: [] });
    });

    rule('a terminal task keeps its history: later refused calls add nothing', async () => {
      const claimed = await insertClaimed(repo());
      await repo().markAsDone(claimed.id, claimed.lease.token);
      const before = await attemptsOf(repo(), claimed.id);
      expect(await repo().claim(claimed.id, { owner: 'node-b', leaseMs: 60_000 })).toBeNull();
      await expect(repo().markAsFailed(claimed.id, { message: 'late' }, claimed.lease.token)).rejects.toBeInstanceOf(Error);
      expect((await repo().markAsCancelled(claimed.id)).cancelled).toBe(false);
      expect(await repo().reclaimExpired()).toEqual([]);
      expect(await attemptsOf(repo(), claimed.id)).toEqual(before);
    });

    rule('deleteTerminalBefore removes the attempts with the task', async () => {
      const claimed = await insertClaimed(repo());
      await repo().markAsDone(claimed.id, claimed.lease.token);
      const kept = await insertClaimed(repo());
      expect(await attemptsOf(repo(), claimed.id)).toHaveLength(1);
      expect(await repo().deleteTerminalBefore(new Date(Date.now() + 10 * MINUTE))).toBe(1);
      await expect(repo().listAttempts(claimed.id)).rejects.toBeInstanceOf(TaskNotFoundError);
      expect(await onlyAttempt(repo(), kept.id)).toMatchObject({ outcome: 'running' });
      // No orphan record is left behind: a new task under the same id starts with no history.
      await insertTask(repo(), { id: claimed.id });
      expect(await repo().listAttempts(claimed.id)).toEqual([]);
    });
  });

  group('check-ins', () => {
    rule('setProgress with a message appends a check-in to the running attempt', async () => {
      const claimed = await insertClaimed(repo());
      await repo().setProgress(claimed.id, claimed.lease.token, { completed: 1, total: 8, message: 'fetching' });
      await repo().setProgress(claimed.id, claimed.lease.token, { completed: 2, total: 8 });
      await repo().setProgress(claimed.id, claimed.lease.token, { completed: 3, total: 8, message: 'parsing' });
      const attempt = await onlyAttempt(repo(), claimed.id);
      expect(messagesOf(attempt)).toEqual(['fetching', 'parsing']);
      for (const checkIn of attempt.checkIns) {
        expect(checkIn.at).toBeInstanceOf(Date);
        expect(Math.abs(checkIn.at.getTime() - Date.now())).toBeLessThan(5 * MINUTE);
      }
      expect(attempt.checkIns[1]!.at.getTime()).toBeGreaterThanOrEqual(attempt.checkIns[0]!.at.getTime());
      expect((await repo().getById(claimed.id)).progress).toMatchObject({ completed: 3, total: 8, message: 'parsing' });
    });

    rule('the same message twice in a row is one check-in', async () => {
      const claimed = await insertClaimed(repo());
      const token = claimed.lease.token;
      await repo().setProgress(claimed.id, token, { completed: 1, total: 4, message: 'working' });
      await repo().setProgress(claimed.id, token, { completed: 2, total: 4, message: 'working' });
      await repo().setProgress(claimed.id, token, { completed: 3, total: 4 });
      await repo().setProgress(claimed.id, token, { completed: 3, total: 4, message: 'working' });
      await repo().setProgress(claimed.id, token, { completed: 4, total: 4, message: 'almost' });
      await repo().setProgress(claimed.id, token, { completed: 4, total: 4, message: 'working' });
      expect(messagesOf(await onlyAttempt(repo(), claimed.id))).toEqual(['working', 'almost', 'working']);
    });

    rule(`an attempt keeps the latest ${MAX_CHECK_INS_PER_ATTEMPT} check-ins, in order`, async () => {
      const claimed = await insertClaimed(repo());
      const count = MAX_CHECK_INS_PER_ATTEMPT + 5;
      for (let i = 1; i <= count; i++) await repo().setProgress(claimed.id, claimed.lease.token, { completed: i, total: count, message: `step ${i}` });
      const expected = Array.from({ length: MAX_CHECK_INS_PER_ATTEMPT }, (_, i) => `step ${i + 6}`);
      expect(messagesOf(await onlyAttempt(repo(), claimed.id))).toEqual(expected);
    });

    rule('check-ins belong to the run that made them', async () => {
      const first = await insertClaimed(repo(), { maxAttempts: 3 });
      await repo().setProgress(first.id, first.lease.token, { completed: 1, total: 2, message: 'run one' });
      await repo().release(first.id, first.lease.token, { runAt: new Date(), error: { message: 'again' } });
      const second = await claimOrFail(repo(), first.id);
      expect(second.progress).toBeNull();
      await repo().setProgress(second.id, second.lease.token, { completed: 1, total: 2, message: 'run one' });
      await repo().setProgress(second.id, second.lease.token, { completed: 2, total: 2, message: 'run two' });
      await repo().markAsDone(second.id, second.lease.token);
      const attempts = await attemptsOf(repo(), first.id);
      expect(attempts.map((a) => a.outcome)).toEqual(['retried', 'succeeded']);
      // "differs from the last check-in" is per attempt: a new run starts with none.
      expect(attempts.map(messagesOf)).toEqual([['run one'], ['run one', 'run two']]);
    });
  });

  group('task kinds', () => {
    const kindOf = (task: TaskInfo): { kind: TaskKind; scheduleName: string | null } => ({ kind: task.kind, scheduleName: task.scheduleName });

    rule("a task's kind defaults to scheduled, with no scheduleName", async () => {
      const { task } = await repo().insert({ workId: 'work-a', scheduledAt: new Date() });
      expect(kindOf(task)).toEqual({ kind: 'scheduled', scheduleName: null });
      expect(kindOf(await repo().getById(task.id))).toEqual({ kind: 'scheduled', scheduleName: null });
    });

    rule('a task with a scheduleName is periodic by default', async () => {
      const task = await insertTask(repo(), { scheduleName: 'nightly-report' });
      expect(kindOf(task)).toEqual({ kind: 'periodic', scheduleName: 'nightly-report' });
      expect(kindOf(await repo().getById(task.id))).toEqual({ kind: 'periodic', scheduleName: 'nightly-report' });
    });

    rule('an explicit kind is kept', async () => {
      const immediate = await insertTask(repo(), { kind: 'immediate' });
      expect(kindOf(immediate)).toEqual({ kind: 'immediate', scheduleName: null });
      expect(kindOf(await repo().getById(immediate.id))).toEqual({ kind: 'immediate', scheduleName: null });
      const scheduled = await insertTask(repo(), { kind: 'scheduled', scheduleName: 'linked' });
      expect(kindOf(await repo().getById(scheduled.id))).toEqual({ kind: 'scheduled', scheduleName: 'linked' });
    });

    rule('insertMany stores each kind and scheduleName', async () => {
      const inputs: NewTask[] = [newTask(), newTask({ kind: 'immediate' }), newTask({ scheduleName: 'hourly' }), newTask({ kind: 'periodic', scheduleName: 'daily' })];
      const results = await repo().insertMany(inputs);
      const expected = [
        { kind: 'scheduled', scheduleName: null },
        { kind: 'immediate', scheduleName: null },
        { kind: 'periodic', scheduleName: 'hourly' },
        { kind: 'periodic', scheduleName: 'daily' },
      ];
      expect(results.map((r) => kindOf(r.task))).toEqual(expected);
      const read: TaskInfo[] = [];
      for (const result of results) read.push(await repo().getById(result.task.id));
      expect(read.map(kindOf)).toEqual(expected);
    });

    rule('an invalid kind or scheduleName throws InvalidInputError and writes nothing', async () => {
      const bad = [newTask({ kind: 'sometimes' as TaskKind }), newTask({ kind: '' as TaskKind }), newTask({ scheduleName: '' }), newTask({ scheduleName: 7 as unknown as string })];
      for (const [i, task] of bad.entries()) await expect(repo().insert(task), `bad task #${i}`).rejects.toBeInstanceOf(InvalidInputError);
      await expect(repo().insertMany([newTask(), newTask({ kind: 'weekly' as TaskKind })])).rejects.toBeInstanceOf(InvalidInputError);
      expect(await totalCount(repo())).toBe(0);
    });

    rule('kind and scheduleName are returned by every read and kept through transitions', async () => {
      const task = await insertTask(repo(), { kind: 'periodic', scheduleName: 'every-minute', maxAttempts: 3 });
      const expected = { kind: 'periodic', scheduleName: 'every-minute' };
      const claimed = await claimOrFail(repo(), task.id, { leaseMs: 0 });
      expect(kindOf(claimed)).toEqual(expected);
      const [reclaimed] = await repo().reclaimExpired();
      expect(kindOf(reclaimed!)).toEqual(expected);
      const [dueClaimed] = await repo().claimDue({ owner: 'node-a', leaseMs: 60_000, limit: 1 });
      expect(kindOf(dueClaimed!)).toEqual(expected);
      const released = await repo().release(task.id, dueClaimed!.lease!.token, { runAt: new Date(Date.now() - MINUTE) });
      expect(kindOf(released)).toEqual(expected);
      expect((await repo().listDue({ before: new Date(Date.now() + MINUTE), limit: 10 })).tasks.map(kindOf)).toEqual([expected]);
      expect(kindOf(await repo().update(task.id, { priority: 2 }))).toEqual(expected);
      expect((await repo().list()).tasks.map(kindOf)).toEqual([expected]);
      expect((await repo().getUpdatedSince(null, 10)).tasks.map(kindOf)).toEqual([expected]);
      expect(kindOf((await repo().markAsCancelled(task.id)).task)).toEqual(expected);
    });
  });
}
