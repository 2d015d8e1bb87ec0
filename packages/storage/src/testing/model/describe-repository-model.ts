import { describe, it } from 'vitest';
import type { RepositoryFixture } from '../suite-context.js';

/** Options of {@link describeRepositoryModel}. */
export interface RepositoryModelOptions {
  /**
   * How many random sequences to run; the environment variable `HORAE_MODEL_RUNS` overrides it (a long soak).
   * @defaultValue 40
   */
  runs?: number;
  /** The most commands (steps) in one sequence. @defaultValue 25 */
  maxCommands?: number;
  /**
   * The seed of the sequences: fixed, so a run in CI is the same every time; `HORAE_MODEL_SEED` overrides it.
   * @defaultValue {@link DEFAULT_MODEL_SEED}
   */
  seed?: number;
  /** How many clients (the fixture's repository and its peers) take turns and race. An integer from 1 to 5. @defaultValue 3 */
  clients?: number;
  /** How long the test may take, in ms (shrinking a failure takes many more runs). @defaultValue 600000 */
  timeoutMs?: number;
}

/** The seed every adapter's model-based test uses unless told otherwise. */
export const DEFAULT_MODEL_SEED = 20_261_204;

function fromEnvironment(name: string): number | undefined {
  const text = process.env[name];
  if (text === undefined || text.trim() === '') return undefined;
  const value = Number(text);
  if (!Number.isSafeInteger(value)) throw new TypeError(`${name} must be an integer, got "${text}"`);
  return value;
}

/**
 * Registers the model-based test of the {@link @horae/storage!index.Repository | Repository} contract: fast-check
 * draws random sequences of calls (inserts, claims by id and ahead, starts, renewals, releases, ends, cancels,
 * updates, progress, reclaims, reads, deletes), some made by two or three clients at once, runs each sequence on a
 * fresh fixture, and checks every result against a reference model of the contract and the contract's invariants
 * after every step. A failure is shrunk to a minimal sequence, printed with the seed and path that replay it.
 *
 * Rules: leases expire through `leaseMs: 0`, never by waiting; due times are minutes in the past or a year ahead, so
 * the database clock's small offset from this process's does not matter. Each run opens `clients - 1` peers with
 * `openPeer` and disposes the fixture at its end.
 *
 * To replay a failure: `HORAE_MODEL_SEED=<seed> HORAE_MODEL_PATH=<path> HORAE_MODEL_REPLAY_PATH=<replayPath>` (all three
 * printed by the failure: the seed and path on its second line, the replayPath at the end of the counterexample) and
 * run the same test file; `HORAE_MODEL_RUNS=<n>` raises the number of sequences for a soak.
 *
 * ### Examples
 * ```ts
 * import { describeRepositoryModel } from '@horae/storage/testing';
 *
 * describeRepositoryModel('SqliteRepository', () => createFileFixture(), { runs: 40 });
 * ```
 *
 * @param name - the adapter's name, the title of the describe block
 * @param createFixture - opens a repository on a fresh, empty store (called once per sequence)
 * @param options - runs, commands per run, seed, clients
 */
export function describeRepositoryModel(name: string, createFixture: () => Promise<RepositoryFixture>, options: RepositoryModelOptions = {}): void {
  const runs = fromEnvironment('HORAE_MODEL_RUNS') ?? options.runs ?? 40;
  const seed = fromEnvironment('HORAE_MODEL_SEED') ?? options.seed ?? DEFAULT_MODEL_SEED;
  const path = process.env.HORAE_MODEL_PATH;
  const replayPath = process.env.HORAE_MODEL_REPLAY_PATH;
  const maxCommands = options.maxCommands ?? 25;
  const clients = options.clients ?? 3;
  if (!Number.isInteger(clients) || clients < 1 || clients > 5) throw new RangeError(`clients must be an integer from 1 to 5, got ${clients}`);

  describe(`${name}: Repository model`, () => {
    const title = `${runs} random sequences of up to ${maxCommands} calls from ${clients} clients agree with the reference model (seed ${seed}${path === undefined ? '' : `, path ${path}`})`;
    it(
      title,
      async () => {
        // Loaded here, so that fast-check (an optional peer) is needed only by the adapters that run this test.
        const { runRepositoryModel } = await import('./run-repository-model.js');
        await runRepositoryModel(createFixture, { runs, seed, path, replayPath, maxCommands, clients });
      },
      options.timeoutMs ?? 600_000,
    );
  });
}
