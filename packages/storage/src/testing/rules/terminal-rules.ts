import { expect } from 'vitest';
import { InvalidStateError, LeaseLostError } from '../../contract/errors.js';
import type { TaskState } from '../../contract/task-info.js';
import { idsOf, insertTerminal } from '../helpers.js';
import type { SuiteContext } from '../suite-context.js';

const TERMINAL: TaskState[] = ['Done', 'Cancelled', 'Failed'];

/** Done, Cancelled and Failed never change again, whatever is called and with whatever token. */
export function terminalRules({ group, rule, repo }: SuiteContext): void {
  group('terminal states', () => {
    for (const state of TERMINAL) {
      rule(`a ${state} task never changes`, async () => {
        const { task, token } = await insertTerminal(repo(), state);
        expect(task.lease).toBeNull();
        const snapshot = await repo().getById(task.id);
        expect(snapshot).toEqual(task);

        expect(await repo().claim(task.id, { owner: 'node-b', leaseMs: 60_000 })).toBeNull();
        expect(idsOf(await repo().claimDue({ owner: 'node-b', leaseMs: 60_000, limit: 10 }))).not.toContain(task.id);
        await expect(repo().markAsStarted(task.id, token), 'markAsStarted').rejects.toBeInstanceOf(LeaseLostError);
        await expect(repo().markAsDone(task.id, token), 'markAsDone').rejects.toBeInstanceOf(LeaseLostError);
        await expect(repo().markAsFailed(task.id, { message: 'x' }, token), 'markAsFailed with token').rejects.toBeInstanceOf(LeaseLostError);
        await expect(repo().markAsFailed(task.id, { message: 'x' }), 'markAsFailed without token').rejects.toBeInstanceOf(InvalidStateError);
        const cancel = await repo().markAsCancelled(task.id);
        expect(cancel.cancelled).toBe(false);
        expect(cancel.task).toEqual(snapshot);
        // With a token, a refusal may be either form the contract names; what matters is that nothing changes.
        const withToken = await repo().markAsCancelled(task.id, { token }).then(
          (result) => result,
          (error: unknown) => error,
        );
        if (withToken instanceof Error) expect(withToken).toBeInstanceOf(LeaseLostError);
        else expect(withToken).toMatchObject({ cancelled: false });
        await expect(repo().release(task.id, token, { runAt: new Date() }), 'release').rejects.toBeInstanceOf(LeaseLostError);
        await expect(repo().update(task.id, { priority: 9 }), 'update').rejects.toBeInstanceOf(InvalidStateError);
        await expect(repo().renewLease(task.id, token, 60_000), 'renewLease').rejects.toBeInstanceOf(LeaseLostError);
        await expect(repo().setProgress(task.id, token, { completed: 1, total: 2 }), 'setProgress').rejects.toBeInstanceOf(LeaseLostError);
        expect(idsOf(await repo().reclaimExpired())).not.toContain(task.id);

        const after = await repo().getById(task.id);
        expect(after).toEqual(snapshot);
        expect(after.updatedAt.getTime()).toBe(snapshot.updatedAt.getTime());
      });
    }
  });
}
