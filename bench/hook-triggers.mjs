// The cost of hook subscriptions on the run path: the triggers that write status hook deliveries in the transaction
// of each change. One node drains N no-op tasks (C concurrency) on SQLite and PostgreSQL, four ways, interleaved in
// one process: no hooks subscribed (the triggers only look at an empty table), one hook, three hooks (one outbox row
// per change and hook), and, for comparison, one hook enqueued the way memory and MongoDB do it (the node's
// HookEnqueuer writing the changes it saw in batches after they committed, where a crash can lose them). Nothing
// delivers the rows, so the figures are the writes' alone. With nothing subscribed the triggers do not exist (they
// come with the first subscription), so "none" is the drain without any hook machinery.
//
//   node bench/hook-triggers.mjs [N=20000] [C=16] [ROUNDS=2]
//
// Prints one JSON line: per adapter and mode the best drain_per_s and the median cpu_us_per_run, the outbox rows
// written, and the ratios of each mode to "none" measured inside each round.
import { cleanup, cpuSince, dropSchemas, insertAll, makeNode, newDatabase, openRepository, pkg, round } from './lib/horae-drain.mjs';

const { RealClock, TypedEventEmitter } = await import(pkg('core'));
const { HookEnqueuer, StatusHookBridge } = await import(pkg('storage'));

const N = Number(process.argv[2] ?? 20_000);
const C = Number(process.argv[3] ?? 16);
const ROUNDS = Number(process.argv[4] ?? 2);
const MODES = { none: [], one: ['audit'], three: ['audit', 'billing', 'crm'], enqueued_one: [] };
async function measure(adapter, mode, tag) {
  const spec = newDatabase(adapter, tag);
  const repository = await openRepository(spec);
  await repository.hookOutbox().subscribeHooks(MODES[mode]);
  await insertAll(repository, N, tag);
  // The creations' rows are not on the run path: count only what the drain writes.
  await repository.hookOutbox().purgeHookDeliveries({ state: 'pending', before: new Date(Date.now() + 60_000) });
  const node = makeNode(repository, C, 'bench-node-0');
  const enqueuer = mode === 'enqueued_one' ? new HookEnqueuer({ outbox: repository.hookOutbox(), hooks: ['audit'], clock: new RealClock(), events: new TypedEventEmitter() }) : undefined;
  const bridge = enqueuer === undefined ? undefined : new StatusHookBridge(node.storage.events, [enqueuer]);
  bridge?.start();
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  await node.start();
  await node.until(N);
  await enqueuer?.flush();
  const ms = performance.now() - start;
  const cpuUs = cpuSince(cpu0);
  await node.stop();
  bridge?.stop();
  let rows = 0;
  for (let page = await repository.hookOutbox().listHookDeliveries({ limit: 1000 }); page.length > 0; ) {
    rows += page.length;
    page = await repository.hookOutbox().listHookDeliveries({ limit: 1000, afterSeq: page[page.length - 1].seq });
  }
  await repository.close();
  return { drain_per_s: round((N / ms) * 1000), cpu_us_per_run: round(cpuUs / N, 1), rows };
}

const runs = [];
try {
  for (let r = 0; r < ROUNDS; r++) {
    for (const adapter of ['sqlite', 'postgres']) {
      for (const mode of Object.keys(MODES)) runs.push({ round: r + 1, adapter, mode, ...(await measure(adapter, mode, `h${r}${mode}`)) });
    }
  }
} finally {
  await dropSchemas();
  await cleanup();
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
const summary = {};
for (const adapter of ['sqlite', 'postgres']) {
  for (const mode of Object.keys(MODES)) {
    const mine = runs.filter((x) => x.adapter === adapter && x.mode === mode);
    const ratios = mine.map((x) => x.drain_per_s / runs.find((y) => y.adapter === adapter && y.mode === 'none' && y.round === x.round).drain_per_s);
    summary[`${adapter}_${mode}`] = {
      drain_per_s: Math.max(...mine.map((x) => x.drain_per_s)),
      cpu_us_per_run: median(mine.map((x) => x.cpu_us_per_run)),
      rows_per_task: round(mine[0].rows / N, 2),
      drain_vs_none: round(median(ratios), 2),
    };
  }
}
console.log(JSON.stringify({ bench: 'hook-triggers', n: N, c: C, rounds: ROUNDS, summary, runs }));
