import type { TaskInfo } from '../../contract/task-info.js';
import type { Mode, Op } from './claim-model.js';
import { applyClaimsAhead, claim, claimableAhead, find, isDue } from './claim-model.js';
import { DEFAULT_AGING_MS, claimOrderGroups } from './claim-order.js';
import type { ModelState } from './model-task.js';
import { timeOf } from './model-task.js';
import type { Observed } from './operation-runner.js';
import type { Verdict } from './verdicts.js';
import { agree, describeObserved, fail, refused } from './verdicts.js';

/**
 * The WorkLimiter capability in the reference model: claims that carry a per-work limit of Working tasks. A task of a
 * work counts while it is Working, an expired lease included, until something takes it out of Working.
 */

function workingOf(state: ModelState, workId: string): number {
  return state.tasks.filter((task) => task.workId === workId && task.state === 'Working').length;
}

/**
 * claimWithinLimit: null and TaskNotDueError as a claim; `{ refused: 'limit' }` when its work is full; else a claim.
 *
 * Made together with other calls, a refusal for the limit agrees whatever the count: the contract makes the count and
 * the claim one atomic step only among claimers that carry the limit, and a plain claim or claimDue racing it may be
 * counted before the task it read is (PostgreSQL reads the task, then counts, in two statements). It writes nothing;
 * a claim it grants is still checked against the count.
 */
export function claimWithinLimit(state: ModelState, op: Op<'claimWithinLimit'>, observed: Observed, mode: Mode, what: string): Verdict {
  const task = find(state, op.id);
  if (task === undefined) return refused(state, observed, ['TASK_NOT_FOUND'], what);
  const value = observed.ok ? (observed.value as { task?: TaskInfo; refused?: string } | null) : undefined;
  if (mode === 'racing' && value?.refused === 'limit') return agree(state);
  const asClaim: Op<'claim'> = { ...op, kind: 'claim' };
  const stale = op.ifScheduledAt !== undefined && op.ifScheduledAt !== timeOf(task.scheduledAt);
  if (task.state !== 'Initialized' || stale) return claim(state, asClaim, observed, what);
  const full = workingOf(state, task.workId) >= op.maxWorking;
  const limitRefusal = value !== undefined && value !== null && value.refused === 'limit';
  // Not due and full: the contract does not order the two checks, so either answer agrees.
  if (full && (isDue(task) || limitRefusal)) {
    return limitRefusal ? agree(state) : fail(`${what}: work ${task.workId} has ${workingOf(state, task.workId)} Working of ${op.maxWorking}, expected { refused: 'limit' }, got ${describeObserved(observed)}`);
  }
  if (value === undefined || value === null || value.task === undefined) return claim(state, asClaim, observed, what);
  return claim(state, asClaim, { ok: true, value: value.task }, what);
}

/**
 * claimDueWithinLimits: claims ahead, as claimDue, skipping works with no free slot; never more tasks of a limited
 * work than its free slots. It may stop short of its limit (bounded passes), so only what it took is checked: each
 * claimable, none twice, within the limits, and (made alone) in claim order.
 */
export function claimDueWithinLimits(state: ModelState, op: Op<'claimDueWithinLimits'>, observed: Observed, mode: Mode, what: string): Verdict {
  if (!observed.ok || !Array.isArray(observed.value)) return fail(`${what}: expected an array of tasks, got ${describeObserved(observed)}`);
  const claimed = observed.value as TaskInfo[];
  const ids = claimed.map((task) => task.id);
  const candidates = claimableAhead(state, op.workIds);
  if (new Set(ids).size !== ids.length) return fail(`${what}: returned a task twice: ${ids.join(', ')}`);
  if (ids.length > op.limit) return fail(`${what}: returned ${ids.length} tasks, over its limit ${op.limit}`);
  const stray = ids.find((id) => !candidates.some((task) => task.id === id));
  if (stray !== undefined) return fail(`${what}: claimed ${stray}, which was not a due Initialized task of its works`);
  for (const [workId, maxWorking] of Object.entries(op.workLimits)) {
    const taken = claimed.filter((task) => task.workId === workId).length;
    const free = Math.max(0, maxWorking - workingOf(state, workId));
    if (taken > free) return fail(`${what}: took ${taken} tasks of ${workId}, which had ${free} free slots of ${maxWorking}`);
  }
  if (mode === 'alone') {
    const groups = claimOrderGroups(candidates, op.agingMs ?? DEFAULT_AGING_MS);
    const rank = new Map(groups.flatMap((group, index) => group.map((task) => [task.id, index] as const)));
    const ranks = ids.map((id) => rank.get(id)!);
    if (ranks.some((r, i) => i > 0 && r < ranks[i - 1]!)) return fail(`${what}: returned ${ids.join(', ')}, out of the claim order`);
  }
  return applyClaimsAhead(state, claimed, op.owner, op.leaseMs, what);
}
