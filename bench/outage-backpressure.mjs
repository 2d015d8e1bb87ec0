// What `schedule()` costs while the database is down: the memory the pending calls hold and the rate of
// `repository:error` events (issue 10, defect 5).
//
// Usage: npx tsc -b && node --expose-gc bench/outage-backpressure.mjs [N=20000] [PARAM_BYTES=1024] [WINDOW_S=10]
// Prints ONE JSON line.
//
// The outage is real: a PostgresRepository pointed at a closed port (127.0.0.1:1), so every call fails with a
// RepositoryError (connection refused), as it does while a server is down. The Horae is built with its defaults
// and not started (start() needs the database); `schedule()` goes through the same chain either way. N calls,
// each with a distinct param of PARAM_BYTES, are made at once; then, for WINDOW_S seconds, the `repository:error`
// events are counted. The memory held is heapUsed + external after a full GC, minus the same before the calls
// (both measured with the calls' promises still referenced, as a caller awaiting them would).
import { PostgresRepository } from '../packages/repo-postgres/dist/index.js';
import { WorkRegistry, createHorae } from '../packages/storage/dist/index.js';

const calls = Number(process.argv[2] ?? 20_000);
const paramBytes = Number(process.argv[3] ?? 1024);
const windowS = Number(process.argv[4] ?? 10);

if (typeof globalThis.gc !== 'function') {
  console.error('run with node --expose-gc');
  process.exit(2);
}

function held() {
  globalThis.gc();
  globalThis.gc();
  const usage = process.memoryUsage();
  return { heap: usage.heapUsed + usage.external, rss: usage.rss };
}

const mb = (bytes) => Math.round((bytes / 1024 / 1024) * 10) / 10;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const repository = new PostgresRepository({ connectionString: 'postgres://postgres@127.0.0.1:1/horae_outage_bench' });
const registry = new WorkRegistry().register('w', () => undefined);
const horae = createHorae({ repository, registry });

let errorEvents = 0;
let suppressed = 0;
horae.events.on('repository:error', (event) => {
  errorEvents++;
  suppressed += event.suppressed ?? 0;
});

const before = held();
const refusedCodes = {};
let settled = 0;
const pending = [];
const started = performance.now();
for (let i = 0; i < calls; i++) {
  const param = { i, pad: String(i).padEnd(paramBytes, 'x') };
  const call = horae.schedule({ workId: 'w', param }).then(
    () => {
      settled++;
    },
    (error) => {
      settled++;
      const code = error?.code ?? error?.name ?? 'unknown';
      refusedCodes[code] = (refusedCodes[code] ?? 0) + 1;
    },
  );
  pending.push(call);
}
const issueMs = performance.now() - started;

// Let the first tries fail and the retries settle into their backoff, then count the events of a window.
await sleep(2_000);
const eventsBefore = errorEvents;
const suppressedBefore = suppressed;
const windowStart = performance.now();
await sleep(windowS * 1000);
const windowMs = performance.now() - windowStart;
const after = held();

console.log(
  JSON.stringify({
    bench: 'outage-backpressure',
    node: process.version,
    calls,
    param_bytes: paramBytes,
    issue_ms: Math.round(issueMs),
    settled,
    still_pending: calls - settled,
    refused: refusedCodes,
    held_mb: mb(after.heap - before.heap),
    rss_growth_mb: mb(after.rss - before.rss),
    error_events_per_s: Math.round((errorEvents - eventsBefore) / (windowMs / 1000) * 10) / 10,
    suppressed_failures_per_s: Math.round((suppressed - suppressedBefore) / (windowMs / 1000) * 10) / 10,
    window_s: Math.round(windowMs / 100) / 10,
    error_events_total: errorEvents,
  }),
);
// The calls still pending wait for a database that never comes: leave without them.
process.exit(0);
