import { randomUUID } from 'node:crypto';
import { expect } from 'vitest';
import { TaskNotFoundError } from '../../contract/errors.js';
import type { Repository } from '../../contract/repository.js';
import { foreignToken, insertTask, totalCount } from '../helpers.js';
import type { SuiteContext } from '../suite-context.js';

/** Every method that takes an id, called on an id no task has. */
const CALLS: [string, (repo: Repository, id: string) => Promise<unknown>][] = [
  ['getById', (repo, id) => repo.getById(id)],
  ['claim', (repo, id) => repo.claim(id, { owner: 'node-a', leaseMs: 60_000 })],
  ['markAsStarted', (repo, id) => repo.markAsStarted(id, foreignToken())],
  ['renewLease', (repo, id) => repo.renewLease(id, foreignToken(), 60_000)],
  ['release', (repo, id) => repo.release(id, foreignToken(), { runAt: new Date() })],
  ['markAsDone', (repo, id) => repo.markAsDone(id, foreignToken())],
  ['markAsFailed with a token', (repo, id) => repo.markAsFailed(id, { message: 'boom' }, foreignToken())],
  ['markAsFailed without a token', (repo, id) => repo.markAsFailed(id, { message: 'boom' })],
  ['markAsCancelled with a token', (repo, id) => repo.markAsCancelled(id, { token: foreignToken() })],
  ['markAsCancelled without a token', (repo, id) => repo.markAsCancelled(id)],
  ['update', (repo, id) => repo.update(id, { priority: 1 })],
  ['setProgress', (repo, id) => repo.setProgress(id, foreignToken(), { completed: 1, total: 2 })],
];

/** Every method taking an id throws TaskNotFoundError for an id no task has, and writes nothing. */
export function notFoundRules({ group, rule, repo }: SuiteContext): void {
  group('unknown ids', () => {
    for (const [name, call] of CALLS) {
      rule(`${name} of an unknown id throws TaskNotFoundError`, async () => {
        const other = await insertTask(repo());
        const id = randomUUID();
        const error: unknown = await call(repo(), id).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error).toBeInstanceOf(TaskNotFoundError);
        expect((error as TaskNotFoundError).code).toBe('TASK_NOT_FOUND');
        expect(await totalCount(repo())).toBe(1);
        expect(await repo().getById(other.id)).toEqual(other);
      });
    }
  });
}
