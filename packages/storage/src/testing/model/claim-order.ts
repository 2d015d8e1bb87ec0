import type { ModelTask } from './model-task.js';
import { timeOf } from './model-task.js';

/** The aging the contract applies when claimDue is given none. */
export const DEFAULT_AGING_MS = 10_000;

/**
 * The claim order of the contract, as groups of tasks it cannot tell apart: highest effective priority first, then
 * earliest due, then oldest, then id.
 *
 * The effective priority `priority + waitedMs / agingMs` is compared as `priority × agingMs − scheduledAt`, the same
 * order at any clock time for due tasks, so the database's clock need not be known. Tasks equal in that key, due
 * time and createdAt (to the millisecond a TaskInfo carries) form one group in any order: a database may keep
 * createdAt finer than a millisecond, and then orders them by a time the model cannot see before the id.
 */
export function claimOrderGroups(candidates: readonly ModelTask[], agingMs = DEFAULT_AGING_MS): ModelTask[][] {
  const key = (task: ModelTask): number => (Number.isFinite(agingMs) ? task.priority * agingMs - timeOf(task.scheduledAt) : task.priority);
  const sorted = [...candidates].sort((a, b) => key(b) - key(a) || timeOf(a.scheduledAt) - timeOf(b.scheduledAt) || a.createdAt - b.createdAt);
  const groups: ModelTask[][] = [];
  for (const task of sorted) {
    const last = groups.at(-1)?.[0];
    if (last !== undefined && key(last) === key(task) && timeOf(last.scheduledAt) === timeOf(task.scheduledAt) && last.createdAt === task.createdAt) groups.at(-1)!.push(task);
    else groups.push([task]);
  }
  return groups;
}

/**
 * Checks that `claimedIds` is what one claimDue of `limit` claims from these groups, in order: every task of each
 * group before any of the next, as many as the limit allows. Returns null when it is, else why not.
 */
export function checkClaimOrder(groups: readonly ModelTask[][], claimedIds: readonly string[], limit: number): string | null {
  const available = groups.reduce((sum, group) => sum + group.length, 0);
  const expectedCount = Math.min(limit, available);
  const expectedText = groups.map((group) => group.map((task) => task.id).join(' | ')).join(' > ');
  if (claimedIds.length !== expectedCount) return `claimDue claimed ${claimedIds.length} tasks, expected ${expectedCount} of the claim order ${expectedText}`;
  let groupIndex = 0;
  let remaining = new Set(groups[0]?.map((task) => task.id));
  for (const [position, id] of claimedIds.entries()) {
    if (remaining.size === 0) {
      groupIndex++;
      remaining = new Set(groups[groupIndex]?.map((task) => task.id));
    }
    if (!remaining.delete(id)) return `claimDue returned ${id} at position ${position}, out of the claim order ${expectedText} (got ${claimedIds.join(', ')})`;
  }
  return null;
}
