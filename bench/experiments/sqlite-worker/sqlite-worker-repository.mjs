// Experiment (issue 9, item 5): a Repository whose SQLite connection lives on a worker thread.
//
// On the main thread, `openSqliteWorkerRepository(options)` returns a proxy with every public method of
// SqliteRepository (Repository, ScheduleStore, WorkLimiter). Each call becomes a message [id, method, args]; the
// calls of one tick are coalesced into ONE postMessage (flushed on setImmediate, the same moment the in-thread
// adapter's group commit flushes). On the worker, the batch is replayed on a real SqliteRepository (from
// packages/repo-sqlite/dist) in order and in one synchronous pass, so the writes of one batch still share one
// group-commit transaction; the answers settled in one tick go back in ONE postMessage too.
//
// Values cross by structured clone (TaskInfo's Dates survive it). Errors cannot keep their class that way, so the
// worker sends { name, code, message, stack, own fields, cause } and the main thread rebuilds the same Horae error
// class (found by name among the exports of @horae/core and @horae/storage, HoraeError by code otherwise), with
// `instanceof`, `code`, `message`, its own fields (taskId, state, dueInMs…) and a plain Error as `cause`.
//
// Input that structured clone would change (a class instance arrives as a plain object) is validated on the caller's
// thread with the adapter's own validators before it crosses (insert, insertMany, update).
//
// Not for production: the clock option cannot cross (the worker uses the real clock) and `database` must be a path
// or ':memory:' (an opened Database cannot cross either).
import { readFileSync } from 'node:fs';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

const pkg = (name) => new URL(`../../../packages/${name}/dist/index.js`, import.meta.url).href;

const MARK = 'horae-sqlite-worker';

/** A worker error as it crosses: plain data. */
function serializeError(error) {
  if (!(error instanceof Error)) return { name: 'Error', message: String(error), fields: {} };
  const fields = {};
  for (const key of Object.keys(error)) {
    if (key === 'cause' || key === 'code') continue;
    const value = error[key];
    if (value === null || ['string', 'number', 'boolean'].includes(typeof value)) fields[key] = value;
  }
  const cause = error.cause instanceof Error ? { name: error.cause.name, message: error.cause.message, code: error.cause.code } : undefined;
  return { name: error.name, code: error.code, message: error.message, stack: error.stack, fields, cause };
}

/**
 * Diagnostic: counts the group-commit queue's writes and flushes (about one transaction a flush) of every
 * SqliteRepository of this thread, by wrapping WriteQueue's methods in the built package.
 *
 * @returns the live counters
 */
export async function countGroupCommits() {
  const { WriteQueue } = await import(new URL('../../../packages/repo-sqlite/dist/group-commit.js', import.meta.url).href);
  if (WriteQueue.counters !== undefined) return WriteQueue.counters;
  const counters = { writes: 0, flushes: 0 };
  const { submit, flush } = WriteQueue.prototype;
  WriteQueue.prototype.submit = function (...args) {
    counters.writes++;
    return submit.apply(this, args);
  };
  WriteQueue.prototype.flush = function () {
    counters.flushes++;
    return flush.call(this);
  };
  WriteQueue.counters = counters;
  return counters;
}

// ---- worker side ----------------------------------------------------------------------------------

async function runWorker() {
  const { SqliteRepository } = await import(pkg('repo-sqlite'));
  const commits = await countGroupCommits();
  let repository;
  let out = [];
  let armed = false;
  // What the driver reads through the '__counters' call: time in postMessage (the structured clone of the answers)
  // and in replaying the calls (their synchronous part: validation, reads; the writes run later, in the group commit).
  const counters = { postMs: 0, posts: 0, replayMs: 0 };
  const flushOut = () => {
    armed = false;
    const batch = out;
    out = [];
    const t0 = performance.now();
    parentPort.postMessage(batch);
    counters.postMs += performance.now() - t0;
    counters.posts++;
  };
  const answer = (reply) => {
    out.push(reply);
    if (!armed) {
      armed = true;
      setImmediate(flushOut);
    }
  };
  try {
    repository = new SqliteRepository(workerData.options);
  } catch (error) {
    parentPort.postMessage([[0, false, serializeError(error)]]);
    return;
  }
  // The thread's id, so that the driver can read this thread's CPU time in /proc/self/task/<tid>/stat.
  const tid = Number(readFileSync('/proc/thread-self/stat', 'utf8').split(' ')[0]);
  parentPort.postMessage([[0, true, { tid }]]);
  parentPort.on('message', (batch) => {
    const t0 = performance.now();
    for (const [id, method, args] of batch) {
      let promise;
      try {
        promise = method === '__counters' ? Promise.resolve({ ...counters, ...commits }) : Promise.resolve(repository[method](...args));
      } catch (error) {
        promise = Promise.reject(error);
      }
      promise.then(
        (value) => answer([id, true, value]),
        (error) => answer([id, false, serializeError(error)]),
      );
      if (method === 'close') promise.then(() => setImmediate(() => parentPort.close()), () => undefined);
    }
    counters.replayMs += performance.now() - t0;
  });
}

// ---- main side ------------------------------------------------------------------------------------

let errorClasses;
async function loadErrorClasses() {
  if (errorClasses !== undefined) return errorClasses;
  const core = await import(pkg('core'));
  const storage = await import(pkg('storage'));
  const byName = new Map();
  for (const exported of [...Object.values(core), ...Object.values(storage)]) {
    if (typeof exported === 'function' && (exported === core.HoraeError || exported.prototype instanceof core.HoraeError)) byName.set(exported.name, exported);
  }
  errorClasses = { HoraeError: core.HoraeError, byName };
  return errorClasses;
}

/** Rebuilds the error the worker threw: the same Horae class, code, message and fields. */
function rebuildError(data) {
  const { HoraeError, byName } = errorClasses;
  const cause = data.cause === undefined ? undefined : Object.assign(new Error(data.cause.message), { name: data.cause.name, ...(data.cause.code === undefined ? {} : { code: data.cause.code }) });
  let error;
  if (data.code !== undefined) {
    error = new HoraeError(data.code, data.message, cause === undefined ? undefined : { cause });
    Object.setPrototypeOf(error, (byName.get(data.name) ?? HoraeError).prototype);
    error.name = data.name;
  } else {
    error = new Error(data.message, cause === undefined ? undefined : { cause });
    error.name = data.name;
  }
  Object.assign(error, data.fields);
  if (data.stack !== undefined) error.stack = data.stack;
  return error;
}

/**
 * Starts a worker thread that opens `new SqliteRepository(options)` and returns a proxy Repository for it.
 *
 * @param options - SqliteRepositoryOptions without `clock`; `database` a path or ':memory:'
 * @returns the proxy, once the worker has opened the database
 */
export async function openSqliteWorkerRepository(options) {
  await loadErrorClasses();
  const { SqliteRepository } = await import(pkg('repo-sqlite'));
  const worker = new Worker(new URL(import.meta.url), { workerData: { [MARK]: true, options } });
  const pending = new Map();
  let nextId = 1;
  let queue = [];
  let armed = false;
  let closed = false;
  let exited = false;
  const stats = { calls: 0, posts: 0, postMs: 0, replies: 0, replyPosts: 0, receiveMs: 0, byMethod: {} };

  const ready = new Promise((resolve, reject) => pending.set(0, { resolve, reject }));
  worker.on('message', (batch) => {
    const t0 = performance.now();
    stats.replyPosts++;
    stats.replies += batch.length;
    for (const [id, ok, value] of batch) {
      const call = pending.get(id);
      if (call === undefined) continue;
      pending.delete(id);
      if (ok) call.resolve(value);
      else call.reject(rebuildError(value));
    }
    if (pending.size === 0) worker.unref();
    stats.receiveMs += performance.now() - t0;
  });
  const failAll = (error) => {
    for (const call of pending.values()) call.reject(error);
    pending.clear();
  };
  worker.on('error', (error) => failAll(rebuildError({ name: 'RepositoryError', code: 'REPOSITORY_UNAVAILABLE', message: `the SQLite worker thread failed: ${error.message}`, fields: {} })));
  const exit = new Promise((resolve) =>
    worker.on('exit', () => {
      exited = true;
      failAll(rebuildError({ name: 'RepositoryError', code: 'REPOSITORY_UNAVAILABLE', message: 'the SQLite worker thread exited', fields: {} }));
      resolve();
    }),
  );
  const { tid } = await ready;
  worker.unref();

  const flush = () => {
    armed = false;
    const batch = queue;
    queue = [];
    stats.posts++;
    const t0 = performance.now();
    try {
      worker.postMessage(batch);
    } catch (error) {
      // An argument structured clone refuses (a function, a symbol): bad input, which the adapter would refuse too.
      // Send the calls one by one, so that only the call holding it fails, with the InvalidInputError it would get.
      for (const message of batch) {
        try {
          worker.postMessage([message]);
        } catch {
          const call = pending.get(message[0]);
          pending.delete(message[0]);
          call?.reject(rebuildError({ name: 'InvalidInputError', code: 'INVALID_INPUT', message: `${message[1]}: an argument cannot be sent to the SQLite thread (${error.message}); a param must be JSON`, fields: {} }));
        }
      }
      if (pending.size === 0) worker.unref();
    }
    stats.postMs += performance.now() - t0;
  };
  const call = (method, args) => {
    if (exited) return Promise.reject(rebuildError({ name: 'RepositoryError', code: 'REPOSITORY_UNAVAILABLE', message: 'the repository is closed', fields: {} }));
    const id = nextId++;
    stats.calls++;
    stats.byMethod[method] = (stats.byMethod[method] ?? 0) + 1;
    const promise = new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
    if (pending.size === 1) worker.ref();
    queue.push([id, method, args]);
    if (!armed) {
      armed = true;
      setImmediate(flush);
    }
    return promise;
  };

  // What structured clone would hide from the worker's validation (a class instance arrives as a plain object) is
  // checked here first, with the adapter's own validators: bad input is refused before anything crosses.
  const { normalizeNewTask, validatePatch } = await import(pkg('storage'));
  const validate = {
    insert: (task) => normalizeNewTask(task),
    insertMany: (tasks) => (Array.isArray(tasks) ? tasks.forEach((task) => normalizeNewTask(task)) : undefined),
    update: (_id, patch) => validatePatch(patch),
  };
  const proxy = {};
  for (const method of Object.getOwnPropertyNames(SqliteRepository.prototype)) {
    if (method === 'constructor' || typeof SqliteRepository.prototype[method] !== 'function') continue;
    const check = validate[method];
    // Trailing undefined arguments are dropped so that an optional argument reaches the worker as absent.
    proxy[method] = (...args) => {
      if (check !== undefined) {
        try {
          check(...args);
        } catch (error) {
          return Promise.reject(error);
        }
      }
      while (args.length > 0 && args[args.length - 1] === undefined) args.pop();
      return call(method, args);
    };
  }
  proxy.close = async () => {
    if (closed) return exit;
    closed = true;
    try {
      await call('close', []);
    } catch (error) {
      await worker.terminate();
      throw error;
    }
    // Held until the thread is gone: an unreferenced worker would let the process end before 'exit'.
    worker.ref();
    await exit;
  };
  // Counters for the driver (not part of the Repository): messages, and the worker's event-loop utilization.
  Object.defineProperty(proxy, 'workerStats', { value: () => ({ ...stats, byMethod: { ...stats.byMethod }, elu: worker.performance.eventLoopUtilization(), tid }) });
  Object.defineProperty(proxy, 'workerCounters', { value: () => call('__counters', []) });
  return proxy;
}

if (!isMainThread && workerData?.[MARK] === true) await runWorker();
