import type { TaskInfo } from '../../contract/task-info.js';
import type { ModelState } from './model-task.js';
import { compareTask, timeOf } from './model-task.js';
import type { DrainedChanges, Observed } from './operation-runner.js';
import type { Verdict } from './verdicts.js';
import { agree, describeObserved, fail, withTask } from './verdicts.js';

/**
 * A drain of the change feed by one client, made alone (sync's read, DESIGN rule 4): it sees every task written since
 * that client's last drain, each last seen in its current state; a task it sees that was not written is as stored.
 * After it, that client has seen everything.
 */
export function drainChanges(state: ModelState, client: number, observed: Observed, what: string): Verdict {
  if (!observed.ok) return fail(`${what}: expected the changes, got ${describeObserved(observed)}`);
  const { tasks } = observed.value as DrainedChanges;
  const last = new Map<string, TaskInfo>();
  for (const task of tasks) last.set(task.id, task);
  const missed = (state.unseen[client] ?? []).filter((id) => !last.has(id) && state.tasks.some((task) => task.id === id));
  if (missed.length > 0) return fail(`${what}: the change feed did not return ${missed.join(', ')}, written since this client's last drain`);
  let current = state;
  for (const [id, seen] of last) {
    const task = current.tasks.find((candidate) => candidate.id === id);
    if (task === undefined) {
      if (current.gone.includes(id)) continue;
      return fail(`${what}: the change feed returned ${id}, a task the store never held`);
    }
    const compared = compareTask(task, seen);
    if (!compared.ok) return fail(`${what}: the last change seen of a task is not its current state: ${compared.mismatches.join('; ')}`);
    current = withTask(current, compared.model);
  }
  return agree({ ...current, unseen: current.unseen.map((ids, index) => (index === client ? [] : ids)) });
}

/** listDue, paged, made alone: the Initialized tasks due before `before`, by scheduledAt then id, each as stored. */
export function listDue(state: ModelState, before: number, observed: Observed, what: string): Verdict {
  if (!observed.ok || !Array.isArray(observed.value)) return fail(`${what}: expected the due tasks, got ${describeObserved(observed)}`);
  const listed = observed.value as TaskInfo[];
  const expected = state.tasks
    .filter((task) => task.state === 'Initialized' && timeOf(task.scheduledAt) < before)
    .sort((a, b) => timeOf(a.scheduledAt) - timeOf(b.scheduledAt) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const expectedIds = expected.map((task) => task.id).join(', ');
  const listedIds = listed.map((task) => task.id).join(', ');
  if (expectedIds !== listedIds) return fail(`${what}: expected the due tasks ${expectedIds} in order, got ${listedIds}`);
  let current = state;
  for (const [i, task] of expected.entries()) {
    const compared = compareTask(task, listed[i]!);
    if (!compared.ok) return fail(`${what}: ${compared.mismatches.join('; ')}`);
    current = withTask(current, compared.model);
  }
  return agree(current);
}
