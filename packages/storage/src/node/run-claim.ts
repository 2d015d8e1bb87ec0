import { RunAbandoned, RunDeferred, TaskCancelledError, quoteInput } from '@horae/core';
import type { BacklogClaim } from './backlog-claimer.js';
import { fenced, type Fenced } from './fenced-write.js';
import { storedError, type LocalTask } from './local-task.js';
import type { StorageState } from './storage-state.js';
import { TaskNotDueError, TaskNotFoundError } from '../contract/errors.js';
import { isWorkLimiter } from '../contract/repository.js';
import type { TaskInfo } from '../contract/task-info.js';

// How a run gets its claim on the task before its work starts: by id (`claimForRun`), or by taking over a batch
// claim of the backlog (`takeBacklogClaim`). Each either returns the claimed, started row or throws what the core
// expects (RunAbandoned, RunDeferred) after settling what this node knows of the task.

/**
 * The RunAbandoned of a lost claim, without a stack: it only tells the core not to run the task here (the handle
 * waits for sync), no caller ever sees it, and on many nodes every task makes one per losing node, where
 * capturing a stack was the costliest part of a lost claim.
 */
function lostClaim(message: string): RunAbandoned {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return new RunAbandoned(message);
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/** Claims the task; when the claim is lost, settles what this node knows and throws what the core expects. */
export async function claimForRun(state: StorageState, entry: LocalTask): Promise<TaskInfo> {
  const id = entry.taskId;
  for (let tries = 0; ; tries++) {
    let claimed: TaskInfo | null | 'limit';
    entry.seen = undefined;
    try {
      // The last try drops the due-time guard: the row was just read Initialized at the due time this node
      // expects, so a mismatch can only be a store that rounds times; never loop on it.
      const guard = tries < 2 ? { ifScheduledAt: new Date(entry.scheduledAt) } : {};
      claimed = await state.durable.run('claim', id, () => claimOnce(state, id, entry.workId, guard));
    } catch (error) {
      if (error instanceof TaskNotFoundError) deleted(entry, error);
      entry.phase = 'scheduled';
      if (error instanceof TaskNotDueError) {
        // This node's clock runs ahead of the database's: the timer fired early. Nothing was written; the timer is
        // armed again for when the database says the task is due.
        throw new RunDeferred(new Date(state.clock.now() + error.dueInMs), error.message);
      }
      throw error;
    }
    if (claimed === 'limit') return deferForLimit(state, entry);
    // Lost to a batch claim of this very node, made while this claim was under way: that claim is this run's.
    if (claimed === null && entry.backlog !== undefined) return await takeBacklogClaim(state, entry, entry.backlog);
    if (claimed !== null) {
      entry.seen = undefined;
      state.events.emit('task:started', { task: claimed });
      return claimed;
    }
    // The loser of a claim does not read the row back (on many nodes every task is claimed by each of them): it
    // drops its timer and sync tells it how the task ends. A row that sync read during this claim is used; a
    // single node, or one without a sync loop or change notices, reads the row (see `StorageState.readBackLostClaims`).
    const seen = entry.seen;
    entry.seen = undefined;
    const current = seen ?? (!state.readBackLostClaims ? undefined : await state.durable.run('getById', id, () => state.repository.getById(id)));
    if (current === undefined) {
      entry.phase = 'remote';
      throw lostClaim('another node claimed the task; sync reports how it ends');
    }
    switch (current.state) {
      case 'Initialized': {
        entry.priority = current.priority;
        if (current.scheduledAt.getTime() === entry.scheduledAt && tries < 2) continue;
        if (current.scheduledAt.getTime() === entry.scheduledAt) throw new RunDeferred(new Date(state.clock.now() + 1000), 'the claim kept failing; trying again soon');
        // Rescheduled elsewhere: keep the handle, run at the new time.
        entry.phase = 'scheduled';
        entry.scheduledAt = current.scheduledAt.getTime();
        entry.handle.knownRunAt = current.scheduledAt;
        throw new RunDeferred(current.scheduledAt, 'the task was rescheduled elsewhere');
      }
      case 'Working':
        // Another node won the claim: it runs the task; this handle settles when sync sees it end.
        entry.phase = 'remote';
        throw lostClaim(`another node (${current.lease?.owner ?? 'unknown'}) runs the task`);
      case 'Done':
        entry.outcome = { state: 'done', value: undefined };
        throw new RunAbandoned('the task already ran elsewhere');
      case 'Failed':
        entry.outcome = { state: 'failed', value: storedError(current.lastError) };
        throw new RunAbandoned('the task already failed elsewhere');
      case 'Cancelled':
        entry.outcome = { state: 'cancelled', value: new TaskCancelledError('the task was cancelled') };
        throw new RunAbandoned('the task was cancelled');
    }
  }
}

/**
 * The run of a task claimed with the backlog takes its claim and starts it: `markAsStarted` counts the attempt
 * (a claim ahead spent none) and opens its record. The run waits for that write, so a cancel written by any node
 * before it lands wins (the start is refused) and the work never starts. The lease kept since the batch claim is
 * the run's own.
 */
export async function takeBacklogClaim(state: StorageState, entry: LocalTask, claim: BacklogClaim): Promise<TaskInfo> {
  // Taken with its keeper still renewing (the run takes it over); stopped on every way out that runs nothing.
  const taken = claim.settle(true);
  if (entry.backlog === claim) entry.backlog = undefined;
  if (!taken) {
    // Handed back already (the node is stopping): the task is Initialized again, for whoever claims it next.
    entry.phase = 'remote';
    throw lostClaim('the batch claim was handed back before the run started');
  }
  const keeper = claim.keeper;
  if (claim.lost !== undefined) {
    // Lost before the run started (cancelled or reclaimed elsewhere): nothing ran; sync tells how it ends.
    keeper.stop();
    entry.phase = 'remote';
    throw lostClaim(`the batch claim was lost before the run started: ${claim.lost.message}`);
  }
  const id = entry.taskId;
  const token = claim.task.lease?.token ?? '';
  let started: Fenced<TaskInfo>;
  try {
    started = await fenced(state.durable, 'markAsStarted', id, () => state.repository.markAsStarted(id, token));
  } catch (error) {
    keeper.stop();
    throw error;
  }
  if (!started.ok) {
    keeper.stop();
    if (started.error instanceof TaskNotFoundError) deleted(entry, started.error);
    // Cancelled, or reclaimed after the lease ran out, before the run could start: nothing ran here.
    entry.phase = 'remote';
    throw lostClaim(`the batch claim was lost before the run started: ${started.error.message}`);
  }
  entry.keeper = keeper;
  state.events.emit('task:started', { task: started.value });
  return started.value;
}

/** The task was deleted before its run could start: its handle ends cancelled, and nothing runs. */
function deleted(entry: LocalTask, error: TaskNotFoundError): never {
  entry.outcome = { state: 'cancelled', value: new TaskCancelledError('the task was deleted', { cause: error }) };
  throw new RunAbandoned('the task no longer exists', { cause: error });
}

/**
 * One claim: within the work's cross-node `concurrency` when it has one and the repository can enforce it.
 * @returns the claimed task, null when lost, or `'limit'` when refused for the limit (nothing was written)
 */
async function claimOnce(state: StorageState, id: string, workId: string, guard: { ifScheduledAt?: Date }): Promise<TaskInfo | null | 'limit'> {
  const options = { owner: state.nodeId, leaseMs: state.leaseMs, ...guard };
  const maxWorking = state.registry.has(workId) ? state.registry.get(workId).options.concurrency : undefined;
  const repository = state.repository;
  if (maxWorking === undefined || !isWorkLimiter(repository)) return repository.claim(id, options);
  const result = await repository.claimWithinLimit(id, { ...options, maxWorking });
  if (result === null) return null;
  return 'task' in result ? result.task : 'limit';
}

/**
 * The work is at its cross-node limit: the task stays Initialized, uncounted, and this node tries again after a
 * short backoff (a quarter of the lease, at most 1 s, with jitter so that waiting nodes do not claim in step).
 * The stored due time is unchanged, so the next claim's due-time guard still matches.
 */
function deferForLimit(state: StorageState, entry: LocalTask): never {
  entry.phase = 'scheduled';
  const maxWorking = state.registry.get(entry.workId).options.concurrency ?? 0;
  const base = Math.min(state.leaseMs / 4, 1_000);
  const retryAt = new Date(state.clock.now() + Math.max(1, Math.round(base / 2 + Math.random() * (base / 2))));
  state.events.emit('task:limited', { taskId: entry.taskId, workId: entry.workId, maxWorking, retryAt });
  throw new RunDeferred(retryAt, `work ${quoteInput(entry.workId)} has ${maxWorking} tasks running across nodes (its concurrency); trying again soon`);
}
