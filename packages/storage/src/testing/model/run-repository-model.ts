import fc from 'fast-check';
import type { Repository } from '../../contract/repository.js';
import { isWorkLimiter } from '../../contract/repository.js';
import type { RepositoryFixture } from '../suite-context.js';
import { InvariantLog } from './invariants.js';
import type { ModelWorld, RealWorld } from './model-commands.js';
import { StepCommand, checkEndOfRun, commandArbitraries } from './model-commands.js';
import { newTaskArbitrary } from './operations.js';

/** The resolved settings of a model-based test. */
export interface ModelRunSettings {
  /** Sequences to run. */
  runs: number;
  /** The seed. */
  seed: number;
  /** A replay path from a failure report (`path: "…"`), to run just that sequence. */
  path: string | undefined;
  /** The commands' replay path from the same report (`replayPath="…"`), which fc.commands needs to replay it. */
  replayPath?: string | undefined;
  /** The most commands in a sequence. */
  maxCommands: number;
  /** Clients in a sequence. */
  clients: number;
}

/**
 * Runs the model-based property: `settings.runs` random command sequences, each on a fresh fixture with
 * `settings.clients` clients, checked against the reference model; throws fast-check's report (the shrunk sequence,
 * the seed and the path) on the first failure.
 */
export async function runRepositoryModel(createFixture: () => Promise<RepositoryFixture>, settings: ModelRunSettings): Promise<void> {
  const { runs, seed, path, maxCommands, clients } = settings;
  // Whether to draw the WorkLimiter's claims: asked of a fixture of its own, before any sequence is drawn.
  const probe = await createFixture();
  const workLimiter = isWorkLimiter(probe.repository);
  await probe.dispose();
  const sequences = fc.commands(commandArbitraries(clients, workLimiter), { maxCommands, size: 'max', ...(settings.replayPath === undefined ? {} : { replayPath: settings.replayPath }) });
  const property = fc.asyncProperty(fc.array(newTaskArbitrary, { minLength: 1, maxLength: 5 }), sequences, async (initialTasks, commands) => {
    const fixture = await createFixture();
    try {
      const peers: Repository[] = [];
      for (let i = 1; i < clients; i++) peers.push(await fixture.openPeer());
      const model: ModelWorld = { state: { tasks: [], gone: [], unseen: Array.from({ length: clients }, () => []) }, t0: Date.now(), cursors: Array.from({ length: clients }, () => null) };
      const real: RealWorld = { clients: [fixture.repository, ...peers], invariants: new InvariantLog(), steps: 0 };
      // A run starts from a few tasks, so that its first calls find something to claim, end and race on.
      const setup = new StepCommand([{ client: 0, kind: 'insertMany', tasks: initialTasks }]);
      await fc.asyncModelRun(() => ({ model, real }), [setup, ...commands]);
      await checkEndOfRun(model, real);
    } finally {
      await fixture.dispose();
    }
  });
  await fc.assert(property, { numRuns: runs, seed, ...(path === undefined ? {} : { path }) });
}
