import type { TaskAttempt, TaskInfo } from '../../contract/task-info.js';
import { isTerminal } from '../../contract/task-info.js';
import { canonical } from './model-task.js';

/** What the log remembers of one task across the reads of a run. */
interface Seen {
  /** The whole task, canonical, the first time it was read terminal. */
  terminal: string | null;
  claims: number;
  updatedAt: number;
  createdAt: number;
  workId: string;
  /** The claims value each lease token came with: a token belongs to one claim. */
  tokens: Map<string, number>;
}

/**
 * The invariants of the contract, checked on what the store holds after every step of a run, from the reads alone:
 * independent of the reference model's transitions, so that a slip in the model cannot hide a broken invariant.
 *
 * - a terminal task never changes again (every field, updatedAt included);
 * - `claims` only grows, and `attempt` and `unstartedClaims` never pass it; `attempt` never passes the runs started;
 * - a task has a lease exactly while Working, and each lease token belongs to one claim: a token first seen comes
 *   with a higher `claims` than every earlier token of the task (the fencing token), and never comes back;
 * - a task that no call of the step wrote keeps its updatedAt; updatedAt never goes back; createdAt and workId never change;
 * - no two live tasks hold one uniqueKey.
 */
export class InvariantLog {
  readonly #seen = new Map<string, Seen>();
  readonly #tokenOwner = new Map<string, string>();

  /**
   * Checks the store as read after a step whose calls wrote the tasks in `changed`; returns the invariants broken,
   * in words (none: an empty list).
   */
  observeStore(tasks: readonly TaskInfo[], changed: ReadonlySet<string>): string[] {
    const broken: string[] = [];
    const liveKeys = new Map<string, string>();
    for (const task of tasks) {
      broken.push(...this.#observeTask(task, changed.has(task.id)));
      if (task.uniqueKey !== null && !isTerminal(task.state)) {
        const other = liveKeys.get(task.uniqueKey);
        if (other !== undefined) broken.push(`the live tasks ${other} and ${task.id} both hold the uniqueKey ${task.uniqueKey}`);
        liveKeys.set(task.uniqueKey, task.id);
      }
    }
    return broken;
  }

  /** Checks a task's attempt records against the task: its attempt counter never passes the runs started, nor they its claims. */
  observeHistory(task: TaskInfo, attempts: readonly TaskAttempt[]): string[] {
    const broken: string[] = [];
    if (task.attempt > attempts.length) broken.push(`task ${task.id}: attempt ${task.attempt} counts more runs than the ${attempts.length} started`);
    if (attempts.length > task.claims) broken.push(`task ${task.id}: ${attempts.length} runs started from ${task.claims} claims`);
    if (attempts.filter((attempt) => attempt.outcome === 'running').length > (task.state === 'Working' ? 1 : 0)) broken.push(`task ${task.id} (${task.state}) has a running record too many`);
    return broken;
  }

  #observeTask(task: TaskInfo, written: boolean): string[] {
    const broken: string[] = [];
    const say = (text: string): void => void broken.push(`task ${task.id}: ${text}`);
    const updatedAt = task.updatedAt.getTime();
    const seen = this.#seen.get(task.id);
    if (task.attempt < 0 || task.attempt > task.claims) say(`attempt ${task.attempt} outside 0..claims (${task.claims})`);
    if (task.unstartedClaims < 0 || task.unstartedClaims > task.claims) say(`unstartedClaims ${task.unstartedClaims} outside 0..claims (${task.claims})`);
    if ((task.lease !== null) !== (task.state === 'Working')) say(`a ${task.state} task with ${task.lease === null ? 'no lease' : 'a lease'}`);
    if (task.lease !== null) {
      const owner = this.#tokenOwner.get(task.lease.token);
      if (owner !== undefined && owner !== task.id) say(`its lease token was handed out for task ${owner} too`);
      const claimsOfToken = seen?.tokens.get(task.lease.token);
      if (claimsOfToken === undefined) {
        const earlier = Math.max(0, ...(seen?.tokens.values() ?? []));
        if (seen !== undefined && seen.tokens.size > 0 && task.claims <= earlier) say(`a new lease token came with claims ${task.claims}, not above an earlier claim's ${earlier}`);
      } else if (claimsOfToken !== task.claims) {
        say(`its lease token came with claims ${claimsOfToken} and now with ${task.claims}`);
      }
    }
    if (seen !== undefined) {
      if (seen.terminal !== null && canonical(task) !== seen.terminal) say(`it changed after it was terminal: from ${seen.terminal} to ${canonical(task)}`);
      if (task.claims < seen.claims) say(`claims went back from ${seen.claims} to ${task.claims}`);
      if (updatedAt < seen.updatedAt) say(`updatedAt went back from ${new Date(seen.updatedAt).toISOString()} to ${task.updatedAt.toISOString()}`);
      if (!written && updatedAt !== seen.updatedAt) say(`updatedAt changed from ${new Date(seen.updatedAt).toISOString()} to ${task.updatedAt.toISOString()} though no call wrote it`);
      if (task.createdAt.getTime() !== seen.createdAt) say('createdAt changed');
      if (task.workId !== seen.workId) say('workId changed');
    }
    const next: Seen = seen ?? { terminal: null, claims: 0, updatedAt, createdAt: task.createdAt.getTime(), workId: task.workId, tokens: new Map() };
    next.claims = task.claims;
    next.updatedAt = updatedAt;
    if (next.terminal === null && isTerminal(task.state)) next.terminal = canonical(task);
    if (task.lease !== null) {
      next.tokens.set(task.lease.token, task.claims);
      this.#tokenOwner.set(task.lease.token, task.id);
    }
    this.#seen.set(task.id, next);
    return broken;
  }
}
