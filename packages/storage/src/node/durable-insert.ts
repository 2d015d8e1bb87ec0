/**
 * The insert of a `schedule()` call: retried through an outage like every write, within the bound of the calls
 * that may wait (the {@link ScheduleGate}), and given up when the call's own signal or timeout says so.
 */
import { InvalidInputError, type ScheduleCall } from '@horae/core';
import type { DurableWriter } from './durable-write.js';
import { RepositoryError, TaskNotFoundError } from '../contract/errors.js';
import type { Repository } from '../contract/repository.js';
import type { ScheduleGate } from './schedule-gate.js';
import type { NewTask, TaskInfo } from '../contract/task-info.js';

/** What the insert of a schedule call needs. */
export interface DurableInsertHost {
  /** Where the task is written. */
  readonly repository: Repository;
  /** Retries the insert through outages. */
  readonly durable: DurableWriter;
  /** Bounds the calls that wait for the repository. */
  readonly gate: ScheduleGate;
}

/** The reason written on a row whose insert was given up, in case a try that seemed to fail had landed. */
export const ABANDONED_INSERT_REASON = 'schedule() was aborted while its insert waited for the repository';

/**
 * Inserts `task`, trying again through outages until it lands, unless the call's bounds end the wait.
 *
 * Rules:
 * - Admitted by the gate first: it may wait for a slot while the repository is up, and is refused at once with a
 *   BackpressureError, nothing written, when the repository is down and the bound is reached.
 * - A try that failed with an outage may have landed all the same (a commit whose reply was lost): when the next
 *   try finds the id taken, the row is read back and, when it is this task's, the insert counts as landed.
 * - The call's signal and timeout are honoured before the first try and between tries, never during one. Given up
 *   before any try failed, nothing was written (a `ScheduleAbortedError` with `mayHaveBeenWritten` false); given up
 *   after a try failed, that try may have landed (`mayHaveBeenWritten` true), and the caller must make sure such a
 *   row never runs ({@link cancelIfWritten}).
 *
 * @param host - the repository, the durable writer and the gate
 * @param task - the task, checked already, with its id
 * @param call - the call's own bounds, when it gave some
 * @returns the stored task, and whether this call created it (false: a live task held its uniqueKey)
 * @throws BackpressureError, ScheduleAbortedError, ScheduleTimeoutError as above; any answer of the repository
 */
export async function insertDurably(
  host: DurableInsertHost,
  task: NewTask & { id: string },
  call: ScheduleCall | undefined,
): Promise<{ task: TaskInfo; created: boolean }> {
  const { repository, durable, gate } = host;
  const id = task.id;
  const pending = await gate.admit(id, task.param, call);
  let tries = 0;
  let unanswered = false;
  try {
    return await durable.run(
      'insert',
      id,
      async () => {
        tries++;
        try {
          return await repository.insert(task);
        } catch (error) {
          if (error instanceof RepositoryError) {
            unanswered = true;
            pending.wait(error);
          } else if (tries > 1 && error instanceof InvalidInputError) {
            // A try that failed with an outage may have landed all the same: then the id is taken by our own row.
            const landed = await repository.getById(id).catch(() => undefined);
            if (landed?.workId === task.workId) return { task: landed, created: true };
          }
          throw error;
        }
      },
      { signal: pending.signal },
    );
  } catch (error) {
    if (pending.isAbort(error)) throw pending.abortError(unanswered);
    throw error;
  } finally {
    pending.release();
  }
}

/**
 * Makes sure the row of an insert given up after a try failed without an answer never runs: writes a cancel for its
 * id, retried through outages until it lands. A row that was never written is left so (no task has the id).
 *
 * @param host - the repository and the durable writer
 * @param taskId - the id of the abandoned insert
 * @returns a promise that resolves once the cancel landed, or the repository said no task has the id; it never rejects
 */
export async function cancelIfWritten(host: Pick<DurableInsertHost, 'repository' | 'durable'>, taskId: string): Promise<void> {
  try {
    await host.durable.run('markAsCancelled', taskId, () => host.repository.markAsCancelled(taskId, { reason: ABANDONED_INSERT_REASON }));
  } catch (error) {
    if (error instanceof TaskNotFoundError) return;
    // Another answer (the row ended already): nothing more can be done about it, and nothing is left running.
  }
}
