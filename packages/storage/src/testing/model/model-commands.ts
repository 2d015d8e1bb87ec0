import fc from 'fast-check';
import type { Repository } from '../../contract/repository.js';
import { TaskNotFoundError } from '../../contract/errors.js';
import type { TaskAttempt, TaskInfo } from '../../contract/task-info.js';
import type { InvariantLog } from './invariants.js';
import type { ModelState } from './model-task.js';
import { compareRuns, compareStore, withUnseen } from './model-task.js';
import type { Operation } from './operations.js';
import { describeOperation, operationArbitrary, pagedReadArbitrary } from './operations.js';
import type { DrainedChanges, Observed, ResolvedOperation } from './operation-runner.js';
import { resolveOperation, runOperation } from './operation-runner.js';
import { applyOperation } from './reference-model.js';

/** The model side of a run: the reference model's store, and when the run started (the origin of its due times). */
export interface ModelWorld {
  /** The store as the model has it. */
  state: ModelState;
  /** When the run started, in ms. */
  readonly t0: number;
  /** Each client's change-feed cursor (null: it has not read the feed yet). */
  readonly cursors: (string | null)[];
}

/** The real side of a run: the clients on one store, and the invariants checked on what they read. */
export interface RealWorld {
  /** The fixture's repository and its peers. */
  readonly clients: readonly Repository[];
  /** The invariants, checked after every step. */
  readonly invariants: InvariantLog;
  /** Steps so far: the store is read back through each client in turn. */
  steps: number;
}

/** Reads every task of the store through `repository`. */
export async function readStore(repository: Repository): Promise<TaskInfo[]> {
  const page = await repository.list({ limit: 1_000 });
  if (page.next !== null) throw new Error('a model run holds fewer than 1000 tasks; list returned a next page');
  return page.tasks;
}

/** Every order of `0 .. count - 1`. */
function orders(count: number): number[][] {
  if (count <= 1) return [[0]];
  return orders(count - 1).flatMap((order) => Array.from({ length: count }, (_, at) => [...order.slice(0, at), count - 1, ...order.slice(at)]));
}

/**
 * One step of a run: one call, or two or three calls from (possibly) different clients started together. The step
 * passes when some order of its calls (a linearization) explains what each returned, given the model, and leaves
 * the model's store equal to what the store holds when read back; then the invariants are checked on that read.
 */
export class StepCommand implements fc.AsyncCommand<ModelWorld, RealWorld> {
  /** @param ops - the calls of the step; more than one run concurrently */
  constructor(readonly ops: readonly Operation[]) {}

  /** Every step may run in any state: the operations resolve against the model when they run. */
  check(): boolean {
    return true;
  }

  /** Runs the step's calls, then checks them against the model and the invariants; throws on any disagreement. */
  async run(model: ModelWorld, real: RealWorld): Promise<void> {
    const resolved = this.ops.map((op) => resolveOperation(op, model.state, model.t0, model.cursors));
    const observed = await Promise.all(resolved.map((op) => runOperation(real.clients, op)));
    const reader = real.clients[real.steps++ % real.clients.length]!;
    const store = await readStore(reader);
    // Calls started together may be explained by several orders that leave the same tasks but different attempt
    // records (a check-in made before or after a run started): the records of the tasks they touched tell them apart.
    const histories = resolved.length > 1 ? await readHistories(reader, touchedIds(resolved, observed)) : new Map<string, TaskAttempt[]>();
    const failures: string[] = [];
    for (const order of orders(resolved.length)) {
      const outcome = linearize(model.state, order, resolved, observed, store, histories);
      if ('failure' in outcome) {
        failures.push(resolved.length === 1 ? outcome.failure : `in the order ${order.map((i) => `#${i}`).join(', ')}: ${outcome.failure}`);
        continue;
      }
      model.state = outcome.state;
      for (const [i, op] of resolved.entries()) {
        const result = observed[i]!;
        if (op.kind === 'drainChanges' && result.ok) model.cursors[op.client] = (result.value as DrainedChanges).cursor;
      }
      const broken = real.invariants.observeStore(store, outcome.changed);
      if (broken.length > 0) throw new Error(`${this.toString()} broke invariants:\n  ${broken.join('\n  ')}`);
      return;
    }
    throw new Error(`${this.toString()} disagrees with the reference model:\n  ${failures.join('\n  ')}`);
  }

  /** The step as the failing sequence prints it. */
  toString(): string {
    if (this.ops.length === 1) return describeOperation(this.ops[0]!);
    return `together[${this.ops.map((op, i) => `#${i} ${describeOperation(op)}`).join(' ‖ ')}]`;
  }
}

/** Applies the observed calls in one order to the model, then compares the result with the store read back. */
function linearize(
  start: ModelState,
  order: readonly number[],
  resolved: readonly ResolvedOperation[],
  observed: readonly Observed[],
  store: readonly TaskInfo[],
  histories: ReadonlyMap<string, readonly TaskAttempt[]>,
): { state: ModelState; changed: Set<string> } | { failure: string } {
  let state = start;
  const changed = new Set<string>();
  const mode = resolved.length > 1 ? 'racing' : 'alone';
  for (const i of order) {
    const verdict = applyOperation(state, resolved[i]!, observed[i]!, mode);
    if (!verdict.ok) return { failure: verdict.reason };
    state = withUnseen(verdict.state, verdict.changed);
    for (const id of verdict.changed) changed.add(id);
  }
  const compared = compareStore(state, store);
  if (!compared.ok) return { failure: `read back after the step: ${compared.mismatches.join('; ')}` };
  state = compared.model;
  for (const [id, attempts] of histories) {
    const task = state.tasks.find((candidate) => candidate.id === id);
    if (task === undefined) continue;
    const runs = compareRuns(task, attempts);
    if (!runs.ok) return { failure: `attempt records read back after the step: ${runs.mismatches.join('; ')}` };
    state = { ...state, tasks: state.tasks.map((candidate) => (candidate.id === id ? runs.model : candidate)) };
  }
  return { state, changed };
}

/** The tasks the calls named or returned. */
function touchedIds(resolved: readonly ResolvedOperation[], observed: readonly Observed[]): Set<string> {
  const ids = new Set<string>();
  for (const op of resolved) if ('id' in op) ids.add(op.id);
  for (const result of observed) {
    if (result.ok && Array.isArray(result.value)) for (const item of result.value as { id?: unknown }[]) if (typeof item?.id === 'string') ids.add(item.id);
  }
  return ids;
}

/** The attempt records of the tasks that still exist among `ids`. */
async function readHistories(repository: Repository, ids: ReadonlySet<string>): Promise<Map<string, TaskAttempt[]>> {
  const histories = new Map<string, TaskAttempt[]>();
  for (const id of ids) {
    const attempts = await repository.listAttempts(id).catch((error: unknown) => {
      if (error instanceof TaskNotFoundError) return undefined;
      throw error;
    });
    if (attempts !== undefined) histories.set(id, attempts);
  }
  return histories;
}

/**
 * The commands of a run: single calls (now and then a paged read), and now and then two or three calls started
 * together (a race), from `clients` clients; the WorkLimiter's claims too when the repository is one.
 */
export function commandArbitraries(clients: number, workLimiter: boolean): fc.Arbitrary<fc.AsyncCommand<ModelWorld, RealWorld>>[] {
  const operation = operationArbitrary(clients, workLimiter);
  const single = fc.oneof({ arbitrary: operation, weight: 12 }, { arbitrary: pagedReadArbitrary(clients), weight: 1 }).map((op) => new StepCommand([op]));
  const together = fc.array(operation, { minLength: 2, maxLength: 3 }).map((ops) => new StepCommand(ops));
  // fc.commands draws evenly among these: three singles to one race.
  return [single, single, single, together];
}

/**
 * The check at the end of a run: every client reads the same store as the model, and every task's attempt records
 * are the model's and agree with its counters.
 */
export async function checkEndOfRun(model: ModelWorld, real: RealWorld): Promise<void> {
  const problems: string[] = [];
  for (const [index, client] of real.clients.entries()) {
    const compared = compareStore(model.state, await readStore(client));
    if (!compared.ok) problems.push(`client${index} reads: ${compared.mismatches.join('; ')}`);
  }
  const store = await readStore(real.clients[0]!);
  for (const task of model.state.tasks) {
    const attempts = await real.clients[0]!.listAttempts(task.id);
    const compared = compareRuns(task, attempts);
    if (!compared.ok) problems.push(...compared.mismatches);
    const stored = store.find((candidate) => candidate.id === task.id);
    if (stored !== undefined) problems.push(...real.invariants.observeHistory(stored, attempts));
  }
  if (problems.length > 0) throw new Error(`at the end of the run:\n  ${problems.join('\n  ')}`);
}
