// Benchmark of the @horae/core scheduler against plain setTimeout, in one run.
// Usage: npx tsc -b && node bench/core.mjs [N=1000000] [ROUNDS=3]   (re-spawns itself with --expose-gc)
// Prints ONE JSON line. Every figure is measured through the public API (schedule() returns a Promise).
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

if (typeof global.gc !== 'function') {
  const result = spawnSync(process.execPath, ['--expose-gc', '--max-old-space-size=4096', fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    stdio: 'inherit',
  });
  process.exit(result.status ?? 1);
}

const { Scheduler } = await import('../packages/core/dist/index.js');

const N = Number(process.argv[2] ?? 1_000_000);
const ROUNDS = Number(process.argv[3] ?? 3);
const SPREAD_MS = 3000;
const noop = () => {};

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function heapBytes() {
  global.gc();
  global.gc();
  const m = process.memoryUsage();
  // Typed arrays live outside the JS heap: count them too, so the figure is honest.
  return m.heapUsed + m.arrayBuffers;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const round = (x, d = 1) => (x === null ? null : Math.round(x * 10 ** d) / 10 ** d);

// ---- Horae: schedule rate + lateness -------------------------------------------------------------
async function horaeRun() {
  const scheduler = new Scheduler({ concurrency: Infinity });
  scheduler.start();
  const late = new Float64Array(N);
  let ran = 0;
  let allDone;
  const finished = new Promise((resolve) => (allDone = resolve));
  const work = (ctx) => {
    late[ran++] = Date.now() - ctx.scheduledAt.getTime();
    if (ran === N) allDone();
  };
  // Tasks fall due in [lead, lead + SPREAD_MS) from now; lead leaves time to schedule them all first.
  const lead = Math.max(1000, N / 500);
  const t0 = Date.now();
  const start = performance.now();
  let last;
  for (let i = 0; i < N; i++) last = scheduler.schedule({ runAt: t0 + lead + Math.random() * SPREAD_MS, work });
  await last;
  const scheduleMs = performance.now() - start;
  const scheduledBy = Date.now() - t0;
  await finished;
  await scheduler.stop();
  late.sort();
  return { schedule_per_s: N / (scheduleMs / 1000), late_p50_ms: percentile(late, 50), late_p99_ms: percentile(late, 99), late_max_ms: late[N - 1], lead_ms: lead, scheduled_within_ms: scheduledBy };
}

// ---- setTimeout: the same ---------------------------------------------------------------------
async function baselineRun() {
  const late = new Float64Array(N);
  let ran = 0;
  let allDone;
  const finished = new Promise((resolve) => (allDone = resolve));
  const lead = Math.max(1000, N / 500);
  const t0 = Date.now();
  const start = performance.now();
  for (let i = 0; i < N; i++) {
    const due = t0 + lead + Math.random() * SPREAD_MS;
    // setTimeout counts from the moment of the call, so the delay is taken from now (not t0) to aim at `due`.
    setTimeout(() => {
      late[ran++] = Date.now() - due;
      if (ran === N) allDone();
    }, due - Date.now());
  }
  const scheduleMs = performance.now() - start;
  await finished;
  late.sort();
  return { schedule_per_s: N / (scheduleMs / 1000), late_p50_ms: percentile(late, 50), late_p99_ms: percentile(late, 99) };
}

// ---- memory with N pending, and cancel rate ----------------------------------------------------
async function horaeMemory() {
  const scheduler = new Scheduler({ concurrency: Infinity });
  scheduler.start();
  const far = Date.now() + 3_600_000;
  const before = heapBytes();
  let last;
  for (let i = 0; i < N; i++) last = scheduler.schedule({ runAt: far + Math.random() * SPREAD_MS, work: noop });
  await last;
  last = undefined;
  const after = heapBytes();
  await scheduler.stop({ timeoutMs: 0 });
  return (after - before) / N;
}

async function horaeCancel() {
  const scheduler = new Scheduler({ concurrency: Infinity });
  scheduler.start();
  const far = Date.now() + 3_600_000;
  const handles = new Array(N);
  for (let i = 0; i < N; i++) {
    void scheduler.schedule({ runAt: far + Math.random() * SPREAD_MS, work: noop }).then((handle) => (handles[i] = handle));
  }
  await sleep(0);
  const start = performance.now();
  let done;
  for (let i = 0; i < N; i++) done = handles[i].cancel();
  await done;
  const cancelMs = performance.now() - start;
  const pending = scheduler.pending;
  await scheduler.stop();
  return { cancel_per_s: N / (cancelMs / 1000), pending_after_cancel: pending };
}

function baselineMemory() {
  const before = heapBytes();
  const timers = new Array(N);
  for (let i = 0; i < N; i++) timers[i] = setTimeout(noop, 3_600_000 + Math.random() * SPREAD_MS);
  const after = heapBytes();
  // The array of N pointers is the caller's, not setTimeout's.
  const bytes = (after - before) / N - 8;
  let start = performance.now();
  for (let i = 0; i < N; i++) clearTimeout(timers[i]);
  const cancelMs = performance.now() - start;
  // The schedule rate of setTimeout, measured with a plain loop like Horae's (the lateness run calls
  // Date.now() per timer to aim it, which would understate setTimeout's rate).
  start = performance.now();
  for (let i = 0; i < N; i++) timers[i] = setTimeout(noop, 3_600_000 + Math.random() * SPREAD_MS);
  const scheduleMs = performance.now() - start;
  for (let i = 0; i < N; i++) clearTimeout(timers[i]);
  return { bytes_per_task: bytes, cancel_per_s: N / (cancelMs / 1000), schedule_per_s: N / (scheduleMs / 1000) };
}

// Warm both up first (JIT, timer lists), so neither pays for compilation inside a measured loop.
async function warmUp() {
  const warm = Math.min(N, 200_000);
  const scheduler = new Scheduler({ concurrency: Infinity });
  scheduler.start();
  const far = Date.now() + 3_600_000;
  const handles = [];
  for (let i = 0; i < warm; i++) void scheduler.schedule({ runAt: far + Math.random() * SPREAD_MS, work: noop }).then((h) => handles.push(h));
  await sleep(0);
  for (const handle of handles) void handle.cancel();
  let ran = 0;
  for (let i = 0; i < warm; i++) void scheduler.schedule({ runAt: Date.now(), work: () => void ran++ });
  while (ran < warm) await sleep(5);
  await scheduler.stop();
  const timers = [];
  for (let i = 0; i < warm; i++) timers.push(setTimeout(noop, 3_600_000 + Math.random() * SPREAD_MS));
  for (const timer of timers) clearTimeout(timer);
}

await warmUp();
await sleep(50);
// Lateness depends on what else the machine runs: each run is repeated ROUNDS times, Horae and setTimeout
// interleaved so that they share the noise, and the median round is reported.
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const horaeRounds = [];
const baseRounds = [];
for (let round = 0; round < ROUNDS; round++) {
  horaeRounds.push(await horaeRun());
  await sleep(50);
  baseRounds.push(await baselineRun());
  await sleep(50);
}
const horae = {
  schedule_per_s: median(horaeRounds.map((r) => r.schedule_per_s)),
  late_p50_ms: median(horaeRounds.map((r) => r.late_p50_ms)),
  late_p99_ms: median(horaeRounds.map((r) => r.late_p99_ms)),
  late_max_ms: median(horaeRounds.map((r) => r.late_max_ms)),
  lead_ms: horaeRounds[0].lead_ms,
  scheduled_within_ms: median(horaeRounds.map((r) => r.scheduled_within_ms)),
};
const base = {
  late_p50_ms: median(baseRounds.map((r) => r.late_p50_ms)),
  late_p99_ms: median(baseRounds.map((r) => r.late_p99_ms)),
};
const bytes = await horaeMemory();
await sleep(50);
const cancel = await horaeCancel();
await sleep(50);
const baseMem = baselineMemory();

console.log(
  JSON.stringify({
    n: N,
    schedule_per_s: Math.round(horae.schedule_per_s),
    late_p50_ms: round(horae.late_p50_ms),
    late_p99_ms: round(horae.late_p99_ms),
    late_max_ms: round(horae.late_max_ms),
    bytes_per_task: round(bytes),
    cancel_per_s: Math.round(cancel.cancel_per_s),
    baseline_schedule_per_s: Math.round(baseMem.schedule_per_s),
    baseline_late_p50_ms: round(base.late_p50_ms),
    baseline_late_p99_ms: round(base.late_p99_ms),
    baseline_bytes_per_task: round(baseMem.bytes_per_task),
    baseline_cancel_per_s: Math.round(baseMem.cancel_per_s),
    late_p99_ms_rounds: horaeRounds.map((r) => round(r.late_p99_ms)),
    baseline_late_p99_ms_rounds: baseRounds.map((r) => round(r.late_p99_ms)),
    rounds: ROUNDS,
    lead_ms: horae.lead_ms,
    scheduled_within_ms: horae.scheduled_within_ms,
    pending_after_cancel: cancel.pending_after_cancel,
    node: process.version,
  }),
);
