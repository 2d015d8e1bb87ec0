import fc from 'fast-check';
import type { JsonValue } from '../../contract/task-info.js';

/**
 * The operations a model-based run draws, in symbolic form: they name tasks by slot and tokens by role, not by
 * value, because they are drawn before any task exists. Just before it runs, an operation is resolved against the
 * model (see operation-runner.ts).
 */

/**
 * A task by its slot among the live tasks in a state (`among`; null: all of them), or `gone`: a deleted task's id,
 * or one never used. Most calls aim at a Working or Initialized task, so that they meet a lease to fence or a claim
 * to race rather than a refusal.
 */
export type TaskRef = { readonly slot: number; readonly among: 'Working' | 'Initialized' | null } | 'gone';

/**
 * A lease token by its role: `current` is the task's lease token (or, with no lease, the last one it had: a zombie's),
 * `previous` the one before the last (a claim older than the current one), `foreign` one no claim handed out.
 */
export type TokenRef = 'current' | 'previous' | 'foreign';

/** A due time: minutes before the run started (due), or a year and minutes after (not due while the test runs). */
export type DueRef = { readonly pastMinutes: number } | { readonly futureMinutes: number };

/** The fields of a task to insert. */
export interface NewTaskSpec {
  /** One of {@link WORK_IDS}. */
  readonly workId: string;
  /** When it is due. */
  readonly due: DueRef;
  /** Its priority. */
  readonly priority: number;
  /** Runs allowed. */
  readonly maxAttempts: number;
  /** A key of two, or none. */
  readonly uniqueKey: string | null;
  /** A small JSON value. */
  readonly param: JsonValue;
}

/** The lease lengths drawn: expired at once, or long enough never to expire during a run. */
export const LEASE_CHOICES = [0, 30 * 60_000] as const;

/** One operation of one client, in symbolic form. */
export type Operation = { readonly client: number } & (
  | { readonly kind: 'insert'; readonly task: NewTaskSpec; readonly takenId: TaskRef | null }
  | { readonly kind: 'insertMany'; readonly tasks: readonly NewTaskSpec[] }
  | { readonly kind: 'claim'; readonly task: TaskRef; readonly leaseMs: number; readonly ifScheduledAt: 'none' | 'current' | 'stale' }
  | { readonly kind: 'claimDue'; readonly limit: number; readonly leaseMs: number; readonly workIds: readonly string[] | null; readonly agingMs: number | null }
  | { readonly kind: 'markAsStarted'; readonly task: TaskRef; readonly token: TokenRef }
  | { readonly kind: 'renewLease'; readonly task: TaskRef; readonly token: TokenRef; readonly leaseMs: number }
  | { readonly kind: 'release'; readonly task: TaskRef; readonly token: TokenRef; readonly runAt: DueRef; readonly withError: boolean; readonly refundAttempt: boolean }
  | { readonly kind: 'markAsDone'; readonly task: TaskRef; readonly token: TokenRef }
  | { readonly kind: 'markAsFailed'; readonly task: TaskRef; readonly token: TokenRef | null }
  | { readonly kind: 'markAsCancelled'; readonly task: TaskRef; readonly token: TokenRef | null }
  | { readonly kind: 'update'; readonly task: TaskRef; readonly priority: number | null; readonly due: DueRef | null; readonly param: JsonValue | undefined }
  | { readonly kind: 'setProgress'; readonly task: TaskRef; readonly token: TokenRef; readonly completed: number; readonly message: string | null }
  | { readonly kind: 'reclaimExpired'; readonly limit: number | null; readonly maxUnstartedClaims: number | null }
  | { readonly kind: 'getById'; readonly task: TaskRef }
  | { readonly kind: 'listAttempts'; readonly task: TaskRef }
  | { readonly kind: 'countByState' }
  | { readonly kind: 'deleteTerminalBefore'; readonly everything: boolean }
  | { readonly kind: 'drainChanges' | 'listDue'; readonly pageSize: number }
  | { readonly kind: 'badInput'; readonly call: BadInputCall; readonly task: TaskRef }
  | { readonly kind: 'claimWithinLimit'; readonly task: TaskRef; readonly leaseMs: number; readonly ifScheduledAt: 'none' | 'current' | 'stale'; readonly maxWorking: number }
  | {
      readonly kind: 'claimDueWithinLimits';
      readonly limit: number;
      readonly leaseMs: number;
      readonly workIds: readonly string[] | null;
      readonly agingMs: number | null;
      readonly workLimits: Readonly<Record<string, number>>;
    }
);

/**
 * Calls with an input the contract refuses (DESIGN rule 8: a clear error, nothing written): a negative leaseMs, a
 * claimDue limit of 0, a maxUnstartedClaims of 0, an empty workId, a NaN priority, an invalid runAt.
 */
export const BAD_INPUT_CALLS = ['claim with leaseMs -1', 'claimDue with limit 0', 'reclaimExpired with maxUnstartedClaims 0', "insert with workId ''", 'update with priority NaN', 'release with an invalid runAt'] as const;

/** One of {@link BAD_INPUT_CALLS}. */
export type BadInputCall = (typeof BAD_INPUT_CALLS)[number];

/** The works tasks are drawn from: few, so that claimDue's workIds filter and uniqueKeys meet. */
export const WORK_IDS = ['work-a', 'work-b', 'work-c'] as const;

/** A task reference aiming mostly at a task in `state` (4 in 6), else at any task (1 in 6) or a gone one (1 in 6 of those). */
function taskRef(state: 'Working' | 'Initialized'): fc.Arbitrary<TaskRef> {
  return fc.oneof(
    { arbitrary: fc.record({ slot: fc.nat(5), among: fc.constant(state) }), weight: 20 },
    { arbitrary: fc.record({ slot: fc.nat(5), among: fc.constant(null) }), weight: 4 },
    { arbitrary: fc.constant<'gone'>('gone'), weight: 1 },
  );
}
const working = taskRef('Working');
const initialized = taskRef('Initialized');
const tokenRef: fc.Arbitrary<TokenRef> = fc.oneof({ arbitrary: fc.constant<TokenRef>('current'), weight: 6 }, { arbitrary: fc.constantFrom<TokenRef>('previous', 'foreign'), weight: 1 });
const due: fc.Arbitrary<DueRef> = fc.oneof(
  { arbitrary: fc.integer({ min: 1, max: 6 }).map((tens) => ({ pastMinutes: tens * 10 })), weight: 4 },
  { arbitrary: fc.integer({ min: 0, max: 2 }).map((futureMinutes) => ({ futureMinutes })), weight: 1 },
);
const leaseMs = fc.constantFrom(...LEASE_CHOICES);
const param: fc.Arbitrary<JsonValue> = fc.constantFrom<JsonValue>(null, 1, 'text', { n: 1 }, [1, 'two', { three: 3 }]);
/** The fields of a task to insert: few works, priorities, keys and params, so that they meet. */
export const newTaskArbitrary: fc.Arbitrary<NewTaskSpec> = fc.record({
  workId: fc.constantFrom(...WORK_IDS),
  due,
  priority: fc.integer({ min: -1, max: 3 }),
  maxAttempts: fc.integer({ min: 1, max: 3 }),
  uniqueKey: fc.oneof({ arbitrary: fc.constant(null), weight: 3 }, { arbitrary: fc.constantFrom('key-1', 'key-2'), weight: 1 }),
  param,
});

/**
 * The operations of clients `0 .. clients - 1`, weighted towards the transitions that race and fence; with
 * `workLimiter`, the claims of the WorkLimiter capability too.
 */
export function operationArbitrary(clients: number, workLimiter = false): fc.Arbitrary<Operation> {
  const client = fc.nat(clients - 1);
  const op = <T extends object>(weight: number, fields: fc.Arbitrary<T>): fc.WeightedArbitrary<Operation> => ({
    weight,
    arbitrary: fc.tuple(client, fields).map(([c, f]) => ({ client: c, ...f }) as unknown as Operation),
  });
  return fc.oneof(
    op(3, fc.record({ kind: fc.constant('insert'), task: newTaskArbitrary, takenId: fc.oneof({ arbitrary: fc.constant(null), weight: 9 }, { arbitrary: initialized, weight: 1 }) })),
    op(1, fc.record({ kind: fc.constant('insertMany'), tasks: fc.array(newTaskArbitrary, { minLength: 1, maxLength: 3 }) })),
    op(5, fc.record({ kind: fc.constant('claim'), task: initialized, leaseMs, ifScheduledAt: fc.constantFrom('none', 'none', 'current', 'stale') })),
    op(4, fc.record({
      kind: fc.constant('claimDue'),
      limit: fc.integer({ min: 1, max: 4 }),
      leaseMs,
      workIds: fc.oneof({ arbitrary: fc.constant(null), weight: 3 }, { arbitrary: fc.subarray([...WORK_IDS]), weight: 1 }),
      agingMs: fc.constantFrom(null, 60_000, Number.POSITIVE_INFINITY),
    })),
    op(5, fc.record({ kind: fc.constant('markAsStarted'), task: working, token: tokenRef })),
    op(2, fc.record({ kind: fc.constant('renewLease'), task: working, token: tokenRef, leaseMs })),
    op(3, fc.record({ kind: fc.constant('release'), task: working, token: tokenRef, runAt: due, withError: fc.boolean(), refundAttempt: fc.boolean() })),
    op(5, fc.record({ kind: fc.constant('markAsDone'), task: working, token: tokenRef })),
    op(2, fc.record({ kind: fc.constant('markAsFailed'), task: fc.oneof(working, initialized), token: fc.option(tokenRef, { nil: null }) })),
    op(2, fc.record({ kind: fc.constant('markAsCancelled'), task: fc.oneof(working, initialized), token: fc.option(tokenRef, { nil: null, freq: 2 }) })),
    op(2, fc.record({ kind: fc.constant('update'), task: initialized, priority: fc.option(fc.integer({ min: -1, max: 3 }), { nil: null }), due: fc.option(due, { nil: null }), param: fc.option(param, { nil: undefined }) })),
    op(2, fc.record({ kind: fc.constant('setProgress'), task: working, token: tokenRef, completed: fc.integer({ min: 0, max: 3 }), message: fc.constantFrom(null, 'halfway', 'almost') })),
    op(4, fc.record({ kind: fc.constant('reclaimExpired'), limit: fc.option(fc.integer({ min: 1, max: 3 }), { nil: null }), maxUnstartedClaims: fc.constantFrom(null, 1, 2) })),
    op(1, fc.record({ kind: fc.constant('getById'), task: working })),
    op(1, fc.record({ kind: fc.constant('listAttempts'), task: working })),
    op(1, fc.record({ kind: fc.constant('countByState') })),
    op(1, fc.record({ kind: fc.constant('deleteTerminalBefore'), everything: fc.boolean() })),
    op(1, fc.record({ kind: fc.constant('badInput'), call: fc.constantFrom(...BAD_INPUT_CALLS), task: fc.oneof(working, initialized) })),
    op(workLimiter ? 3 : 0, fc.record({ kind: fc.constant('claimWithinLimit'), task: initialized, leaseMs, ifScheduledAt: fc.constantFrom('none', 'none', 'current', 'stale'), maxWorking: fc.integer({ min: 1, max: 2 }) })),
    op(workLimiter ? 3 : 0, fc.record({
      kind: fc.constant('claimDueWithinLimits'),
      limit: fc.integer({ min: 1, max: 4 }),
      leaseMs,
      workIds: fc.oneof({ arbitrary: fc.constant(null), weight: 3 }, { arbitrary: fc.subarray([...WORK_IDS]), weight: 1 }),
      agingMs: fc.constantFrom(null, 60_000, Number.POSITIVE_INFINITY),
      workLimits: fc.dictionary(fc.constantFrom(...WORK_IDS), fc.integer({ min: 1, max: 2 }), { maxKeys: 3 }),
    })),
  );
}

/**
 * The paged reads, made only as a step of their own: a reader that pages through the change feed (getUpdatedSince
 * from its last cursor until an empty page), and one that pages through the due tasks (listDue). Paging is not one
 * atomic read, so what a page shows while other calls write is not the model's to predict.
 */
export function pagedReadArbitrary(clients: number): fc.Arbitrary<Operation> {
  return fc.record({ client: fc.nat(clients - 1), kind: fc.constantFrom<'drainChanges' | 'listDue'>('drainChanges', 'drainChanges', 'listDue'), pageSize: fc.integer({ min: 1, max: 4 }) });
}

/** A short text of an operation, as a failing sequence prints it. */
export function describeOperation(op: Operation): string {
  const { client, kind, ...args } = op;
  const text = Object.entries(args)
    .map(([key, value]) => `${key}: ${typeof value === 'number' && !Number.isFinite(value) ? String(value) : JSON.stringify(value)}`)
    .join(', ');
  return `client${client}.${kind}(${text})`;
}
