import { InvalidInputError } from '@horae/core';
import { expect } from 'vitest';
import { InvalidStateError, LeaseLostError } from '../../contract/errors.js';
import type { JsonValue, TaskError } from '../../contract/task-info.js';
import { MAX_ERROR_MESSAGE_LENGTH, MAX_ERROR_STACK_LENGTH, toTaskError } from '../../contract/validation.js';
import { MINUTE, claimOrFail, foreignToken, insertClaimed, insertTask, openPeers } from '../helpers.js';
import type { SuiteContext } from '../suite-context.js';

/** markAsDone, markAsCancelled, markAsFailed, release, update and setProgress. */
export function transitionRules({ group, rule, repo, fixture }: SuiteContext): void {
  group('markAsDone', () => {
    rule('markAsDone ends a Working task under its token', async () => {
      const claimed = await insertClaimed(repo());
      const done = await repo().markAsDone(claimed.id, claimed.lease.token);
      expect(done).toMatchObject({ id: claimed.id, state: 'Done', lease: null, attempt: 1 });
      expect(await repo().getById(claimed.id)).toEqual(done);
    });

    rule('markAsDone with a wrong token throws LeaseLostError', async () => {
      const claimed = await insertClaimed(repo());
      await expect(repo().markAsDone(claimed.id, foreignToken())).rejects.toBeInstanceOf(LeaseLostError);
      expect(await repo().getById(claimed.id)).toEqual(claimed);
      const initialized = await insertTask(repo());
      await expect(repo().markAsDone(initialized.id, foreignToken())).rejects.toBeInstanceOf(LeaseLostError);
      expect(await repo().getById(initialized.id)).toEqual(initialized);
    });
  });

  group('markAsCancelled', () => {
    rule('markAsCancelled cancels an Initialized task without a token', async () => {
      const task = await insertTask(repo());
      const result = await repo().markAsCancelled(task.id, { reason: 'not needed' });
      expect(result.cancelled).toBe(true);
      expect(result.task).toMatchObject({ id: task.id, state: 'Cancelled', lease: null });
      expect(await repo().getById(task.id)).toEqual(result.task);
    });

    rule('markAsCancelled cancels a Working task without a token', async () => {
      const claimed = await insertClaimed(repo());
      const result = await repo().markAsCancelled(claimed.id);
      expect(result.cancelled).toBe(true);
      expect(result.task).toMatchObject({ state: 'Cancelled', lease: null });
      await expect(repo().markAsDone(claimed.id, claimed.lease.token)).rejects.toBeInstanceOf(LeaseLostError);
      expect((await repo().getById(claimed.id)).state).toBe('Cancelled');
    });

    rule("markAsCancelled cancels a Working task with the holder's token", async () => {
      const claimed = await insertClaimed(repo());
      const result = await repo().markAsCancelled(claimed.id, { token: claimed.lease.token, reason: 'self' });
      expect(result.cancelled).toBe(true);
      expect(result.task.state).toBe('Cancelled');
      expect(await repo().getById(claimed.id)).toEqual(result.task);
    });

    rule('markAsCancelled with a wrong token throws LeaseLostError', async () => {
      const claimed = await insertClaimed(repo());
      await expect(repo().markAsCancelled(claimed.id, { token: foreignToken() })).rejects.toBeInstanceOf(LeaseLostError);
      expect(await repo().getById(claimed.id)).toEqual(claimed);
      const initialized = await insertTask(repo());
      await expect(repo().markAsCancelled(initialized.id, { token: foreignToken() })).rejects.toBeInstanceOf(LeaseLostError);
      expect(await repo().getById(initialized.id)).toEqual(initialized);
    });

    rule('of concurrent cancels exactly one reports cancelled: true', async () => {
      const task = await insertTask(repo());
      const clients = [repo(), ...(await openPeers(() => fixture().openPeer(), 3))];
      const results = await Promise.all(Array.from({ length: 12 }, (_, i) => clients[i % clients.length]!.markAsCancelled(task.id)));
      expect(results.filter((r) => r.cancelled)).toHaveLength(1);
      for (const result of results) expect(result.task.state).toBe('Cancelled');
    });
  });

  group('markAsFailed', () => {
    rule('markAsFailed without a token fails an Initialized task', async () => {
      const task = await insertTask(repo());
      const failed = await repo().markAsFailed(task.id, { message: 'cannot run', code: 'UNKNOWN_WORK' });
      expect(failed).toMatchObject({ state: 'Failed', lease: null, attempt: 0, lastError: { message: 'cannot run', code: 'UNKNOWN_WORK' } });
      expect(await repo().getById(task.id)).toEqual(failed);
    });

    rule('markAsFailed without a token on a Working task throws InvalidStateError', async () => {
      const claimed = await insertClaimed(repo());
      await expect(repo().markAsFailed(claimed.id, { message: 'x' })).rejects.toBeInstanceOf(InvalidStateError);
      expect(await repo().getById(claimed.id)).toEqual(claimed);
    });

    rule("markAsFailed fails a Working task under the holder's token", async () => {
      const claimed = await insertClaimed(repo());
      const failed = await repo().markAsFailed(claimed.id, { message: 'boom' }, claimed.lease.token);
      expect(failed).toMatchObject({ state: 'Failed', lease: null, attempt: 1, lastError: { message: 'boom' } });
      expect(await repo().getById(claimed.id)).toEqual(failed);
    });

    rule('markAsFailed with a wrong token throws LeaseLostError', async () => {
      const claimed = await insertClaimed(repo());
      await expect(repo().markAsFailed(claimed.id, { message: 'x' }, foreignToken())).rejects.toBeInstanceOf(LeaseLostError);
      expect(await repo().getById(claimed.id)).toEqual(claimed);
    });

    rule('markAsFailed stores lastError: message, name, code and a bounded stack', async () => {
      const cause = Object.assign(new RangeError('m'.repeat(MAX_ERROR_MESSAGE_LENGTH + 100)), { code: 'E_RANGE' });
      cause.stack = `RangeError: boom\n${'    at frame (file.js:1:1)\n'.repeat(1_000)}`;
      const error: TaskError = toTaskError(cause);
      expect(error.stack!.length).toBeLessThanOrEqual(MAX_ERROR_STACK_LENGTH);
      const claimed = await insertClaimed(repo());
      await repo().markAsFailed(claimed.id, error, claimed.lease.token);
      const stored = (await repo().getById(claimed.id)).lastError;
      expect(stored).toEqual({ message: error.message, name: 'RangeError', code: 'E_RANGE', stack: error.stack });
      expect(stored!.message.length).toBe(MAX_ERROR_MESSAGE_LENGTH);
    });
  });

  group('release', () => {
    rule('release returns a Working task to Initialized, due at runAt', async () => {
      const claimed = await insertClaimed(repo());
      const runAt = new Date(Date.now() + 5 * MINUTE);
      const released = await repo().release(claimed.id, claimed.lease.token, { runAt, error: { message: 'retry me', code: 'E1' } });
      expect(released).toMatchObject({ state: 'Initialized', lease: null, attempt: 1, lastError: { message: 'retry me', code: 'E1' } });
      expect(released.scheduledAt.getTime()).toBe(runAt.getTime());
      expect(await repo().getById(claimed.id)).toEqual(released);
    });

    rule('release with refundAttempt gives the attempt back', async () => {
      const claimed = await insertClaimed(repo());
      const released = await repo().release(claimed.id, claimed.lease.token, { runAt: new Date(), refundAttempt: true });
      expect(released).toMatchObject({ state: 'Initialized', attempt: 0, lease: null });
      expect((await repo().getById(claimed.id)).attempt).toBe(0);
    });

    rule('release without an error keeps the last error', async () => {
      const first = await insertClaimed(repo());
      await repo().release(first.id, first.lease.token, { runAt: new Date(), error: { message: 'first' } });
      const second = await claimOrFail(repo(), first.id);
      expect(second.attempt).toBe(2);
      expect(second.lease.token).not.toBe(first.lease.token);
      const released = await repo().release(second.id, second.lease.token, { runAt: new Date() });
      expect(released.lastError).toMatchObject({ message: 'first' });
    });

    rule('release with a wrong token throws LeaseLostError', async () => {
      const claimed = await insertClaimed(repo());
      await expect(repo().release(claimed.id, foreignToken(), { runAt: new Date() })).rejects.toBeInstanceOf(LeaseLostError);
      expect(await repo().getById(claimed.id)).toEqual(claimed);
    });

    rule('release with an invalid runAt throws InvalidInputError and changes nothing', async () => {
      const claimed = await insertClaimed(repo());
      await expect(repo().release(claimed.id, claimed.lease.token, { runAt: new Date(Number.NaN) })).rejects.toBeInstanceOf(InvalidInputError);
      expect(await repo().getById(claimed.id)).toEqual(claimed);
    });
  });

  group('update', () => {
    rule('update changes scheduledAt, param and priority of an Initialized task', async () => {
      const task = await insertTask(repo(), { param: { v: 1 }, priority: 1 });
      const scheduledAt = new Date(Date.now() + 7 * MINUTE);
      const updated = await repo().update(task.id, { scheduledAt, param: { v: 2, list: ['x'] }, priority: 9 });
      expect(updated).toMatchObject({ state: 'Initialized', param: { v: 2, list: ['x'] }, priority: 9 });
      expect(updated.scheduledAt.getTime()).toBe(scheduledAt.getTime());
      expect(updated.updatedAt.getTime()).toBeGreaterThanOrEqual(task.updatedAt.getTime());
      expect(await repo().getById(task.id)).toEqual(updated);
    });

    rule('update leaves the fields it is not given', async () => {
      const task = await insertTask(repo(), { param: { v: 1 }, priority: 1 });
      const updated = await repo().update(task.id, { priority: 3 });
      expect(updated.param).toEqual({ v: 1 });
      expect(updated.scheduledAt.getTime()).toBe(task.scheduledAt.getTime());
      const nulled = await repo().update(task.id, { param: null });
      expect(nulled.param).toBeNull();
      expect(nulled.priority).toBe(3);
    });

    rule('update of a Working task throws InvalidStateError', async () => {
      const claimed = await insertClaimed(repo());
      await expect(repo().update(claimed.id, { priority: 5 })).rejects.toBeInstanceOf(InvalidStateError);
      expect(await repo().getById(claimed.id)).toEqual(claimed);
    });

    rule('update with a bad patch throws InvalidInputError and changes nothing', async () => {
      const task = await insertTask(repo(), { param: { v: 1 } });
      const bad = [{ scheduledAt: new Date(Number.NaN) }, { scheduledAt: 'tomorrow' as unknown as Date }, { param: { f: Number.NaN } }, { param: [() => 1] as unknown as JsonValue }, { priority: Number.NaN }];
      for (const [i, patch] of bad.entries()) await expect(repo().update(task.id, patch), `bad patch #${i}`).rejects.toBeInstanceOf(InvalidInputError);
      expect(await repo().getById(task.id)).toEqual(task);
    });
  });

  group('setProgress', () => {
    rule('setProgress stores progress on the task', async () => {
      const claimed = await insertClaimed(repo());
      await repo().setProgress(claimed.id, claimed.lease.token, { completed: 3, total: 10, message: 'a third' });
      const first = (await repo().getById(claimed.id)).progress;
      expect(first).toMatchObject({ completed: 3, total: 10, message: 'a third' });
      expect(first!.at).toBeInstanceOf(Date);
      expect(Math.abs(first!.at.getTime() - Date.now())).toBeLessThan(5 * MINUTE);
      await repo().setProgress(claimed.id, claimed.lease.token, { completed: 7, total: 10 });
      const stored = await repo().getById(claimed.id);
      expect(stored.progress).toMatchObject({ completed: 7, total: 10 });
      expect(stored).toMatchObject({ state: 'Working', lease: { token: claimed.lease.token } });
    });

    rule('setProgress with a wrong token throws LeaseLostError', async () => {
      const claimed = await insertClaimed(repo());
      await expect(repo().setProgress(claimed.id, foreignToken(), { completed: 1, total: 2 })).rejects.toBeInstanceOf(LeaseLostError);
      expect((await repo().getById(claimed.id)).progress).toBeNull();
    });
  });
}
