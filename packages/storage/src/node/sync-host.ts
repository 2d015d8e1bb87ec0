import { TaskCancelledError } from '@horae/core';
import { storedError } from './local-task.js';
import type { StorageState } from './storage-state.js';
import type { SyncAction, SyncHost } from './sync.js';
import type { TaskInfo } from '../contract/task-info.js';

/**
 * What sync sees of this node and does to its tasks: the local tasks it compares rows with, and the actions it
 * decides (`decideSync`) carried out on them: restore, reschedule, drop a timer, settle a handle, abort a run.
 * @param state - what the parts of this storage middleware share
 */
export function storageSyncHost(state: StorageState): SyncHost {
  return {
    repository: state.repository,
    clock: state.clockProxy,
    durable: state.durable,
    nodeId: state.nodeId,
    local: (taskId) => state.entries.get(taskId),
    observeRunning: (task) => {
      const entry = state.entries.get(task.id);
      // Only while the claim is under way (no controller yet): a lost claim learns from this row.
      if (entry !== undefined && entry.phase === 'running' && entry.controller === undefined) entry.seen = task;
    },
    knowsWork: (workId) => state.registry.has(workId),
    shouldRestore: (task) => state.options.shouldRestore?.(task) ?? true,
    apply: (action, task) => applySyncAction(state, action, task),
    emit: (name, payload) => state.events.emit(name, payload),
  };
}

/** Carries out one action that sync decided for a row. */
async function applySyncAction(state: StorageState, action: Exclude<SyncAction, 'ignore' | 'unknown-work'>, task: TaskInfo): Promise<void> {
  const entry = state.entries.get(task.id);
  switch (action) {
    case 'schedule':
      if (state.takesBacklog(task)) {
        // Due already: claimed in a batch as slots free up (or by another node first), not held on a timer.
        state.backlog!.notify(task.scheduledAt.getTime());
        return;
      }
      state.events.emit('task:scheduled', { task, source: 'restored' });
      return state.restore(task);
    case 'reschedule': {
      if (entry === undefined || entry.phase !== 'scheduled' || entry.handle.inner === undefined) return;
      const old = entry.handle.inner;
      entry.generation++;
      entry.handle.inner = undefined;
      await old.cancel('rescheduled elsewhere');
      return state.restore(task);
    }
    case 'drop-claimed': {
      if (entry === undefined || entry.phase !== 'scheduled') return;
      const old = entry.handle.inner;
      entry.generation++;
      entry.phase = 'remote';
      entry.handle.inner = undefined;
      await old?.cancel('claimed by another node');
      return;
    }
    case 'drop-ended':
    case 'settle-remote': {
      if (entry === undefined) return;
      entry.outcome ??=
        task.state === 'Done'
          ? { state: 'done', value: undefined }
          : task.state === 'Failed'
            ? { state: 'failed', value: storedError(task.lastError) }
            : { state: 'cancelled', value: new TaskCancelledError('the task was cancelled elsewhere') };
      // Seen by sync, not running here: a single node reports it (no other node could have written it).
      if (task.state === 'Cancelled') state.events.emit('task:cancelled', { taskId: task.id, task, origin: 'sync', reporter: !state.multiNode });
      entry.generation++;
      const old = entry.handle.inner;
      if (old === undefined) state.settle(entry);
      else await old.cancel('the task ended elsewhere');
      return;
    }
    case 'abort-run': {
      if (entry === undefined || entry.controller === undefined) return;
      entry.cancelWritten = true;
      entry.outcome = { state: 'cancelled', value: new TaskCancelledError('the task was cancelled on another node') };
      // This node held the task (it runs it): it reports the cancel, whoever wrote it.
      state.events.emit('task:cancelled', { taskId: task.id, task, origin: 'sync', reporter: true });
      entry.controller.abort(entry.outcome.value);
      return;
    }
  }
}
