import { randomUUID } from 'node:crypto';
import { expect } from 'vitest';
import { idsOf, newTask, past, settle } from '../helpers.js';
import type { TaskInfo } from '../../contract/task-info.js';
import type { SuiteContext } from '../suite-context.js';

/**
 * A run's start racing its end, from another client: the model-based test found (PostgreSQL, seed 7) that an end
 * made while a start was being written could move the task out of Working and leave the record the start opened
 * `running` for ever. Whatever order the database picks, the records must agree with the task. (The leases are
 * long: a run never starts on an expired lease.)
 */
export function startRaceRules({ group, rule, repo, fixture }: SuiteContext): void {
  group('a start racing an end', () => {
    rule('an end racing the start of a claim ahead leaves no running record behind', async () => {
      const peer = await fixture().openPeer();
      const claimed: TaskInfo[] = [];
      // Rounds of 30 races: an end has to read the records just before the start it waits on commits, a matter of luck.
      for (let round = 0; round < 5; round++) {
        const workId = `start-race-${randomUUID()}`;
        await repo().insertMany(Array.from({ length: 30 }, (_, i) => newTask({ workId, maxAttempts: 3, param: { i } })));
        const ahead = await repo().claimDue({ owner: 'node-a', leaseMs: 60_000, limit: 30, workIds: [workId] });
        expect(ahead).toHaveLength(30);
        claimed.push(...ahead);
        // Each start races an end by another client: an operator's cancel, or the holder's release.
        await Promise.all(
          ahead.map((task, i) =>
            Promise.all([
              settle(repo().markAsStarted(task.id, task.lease!.token)),
              i % 2 === 0 ? settle(peer.markAsCancelled(task.id)) : settle(peer.release(task.id, task.lease!.token, { runAt: past() })),
            ]),
          ),
        );
      }
      for (const id of idsOf(claimed)) {
        const task = await repo().getById(id);
        const attempts = await repo().listAttempts(id);
        const running = attempts.filter((attempt) => attempt.outcome === 'running').length;
        expect(running, `running records of a ${task.state} task (${task.lease?.started === true ? 'started' : 'not started'})`).toBe(task.state === 'Working' && task.lease?.started === true ? 1 : 0);
        expect(attempts.length, 'records of the runs started').toBeLessThanOrEqual(task.claims);
      }
    });
  });
}
