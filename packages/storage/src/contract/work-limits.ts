/**
 * Helpers every {@link WorkLimiter} adapter shares: checking limits, and picking the due tasks that fit the free
 * slots of their works.
 */
import { InvalidInputError, quoteInput } from '@horae/core';
// eslint-disable-next-line @typescript-eslint/no-unused-vars -- referenced from TSDoc
import type { WorkLimiter } from './repository.js';

/**
 * Checks a per-work limit (`maxWorking`).
 *
 * @param value - the limit
 * @param what - how to name it in the error
 * @throws InvalidInputError unless it is an integer ≥ 1
 */
export function validateMaxWorking(value: unknown, what = 'maxWorking'): asserts value is number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new InvalidInputError(`${what} must be an integer ≥ 1, got ${quoteInput(value)}`);
  }
}

/**
 * Checks the `workLimits` of {@link WorkLimiter.claimDueWithinLimits} and returns them as a map.
 *
 * @param limits - workId → most Working tasks of that work
 * @returns the same limits, as a Map
 * @throws InvalidInputError when it is not an object of integers ≥ 1
 */
export function validateWorkLimits(limits: unknown): Map<string, number> {
  if (limits === null || typeof limits !== 'object' || Array.isArray(limits)) throw new InvalidInputError('workLimits must be an object { workId: limit }');
  const out = new Map<string, number>();
  for (const [workId, limit] of Object.entries(limits)) {
    validateMaxWorking(limit, `workLimits["${workId}"]`);
    out.set(workId, limit);
  }
  return out;
}

/** A due task as the picking sees it. */
export interface LimitCandidate {
  /** The task's id. */
  id: string;
  /** Its work. */
  workId: string;
}

/**
 * Takes candidates in the order given (claim order) while they fit: a task of a limited work is taken only while
 * its work has a free slot, and each one taken uses a slot.
 *
 * @param candidates - due tasks in claim order
 * @param free - workId → free slots of the limited works; updated in place as slots are used
 * @param limit - the most tasks to take
 * @returns the ids taken, in order
 */
export function pickWithinLimits(candidates: readonly LimitCandidate[], free: Map<string, number>, limit: number): string[] {
  const taken: string[] = [];
  for (const { id, workId } of candidates) {
    if (taken.length >= limit) break;
    const slots = free.get(workId);
    if (slots !== undefined) {
      if (slots <= 0) continue;
      free.set(workId, slots - 1);
    }
    taken.push(id);
  }
  return taken;
}

/**
 * The works that have no slot left: a next query for due tasks can leave their tasks out.
 *
 * @param free - workId → free slots
 * @returns the workIds with no free slot
 */
export function fullWorks(free: ReadonlyMap<string, number>): string[] {
  return [...free].filter(([, slots]) => slots <= 0).map(([workId]) => workId);
}
