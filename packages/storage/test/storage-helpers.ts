import { Scheduler, type Middleware, type WorkFn } from '@horae/core';
import { VirtualClock } from '@horae/core/testing';
import type {
  WorkRegistry} from '@horae/storage';
import {
  MemoryRepository,
  multiNodeStorage,
  singleNodeStorage,
  type StorageEvents,
  type StorageMiddleware,
  type StorageOptions,
} from '@horae/storage';

/** A promise with its resolve and reject at hand. */
export interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (error: unknown) => void;
}

/**
 * A work that runs until its signal is aborted, then fails with the abort's reason; `onAbort` sees the reason
 * first, so a test can check why the run was cut.
 */
export function untilAborted(onAbort: (reason: unknown) => void): WorkFn {
  return (ctx) =>
    new Promise((_, reject) => {
      ctx.signal.addEventListener('abort', () => {
        onAbort(ctx.signal.reason);
        reject(ctx.signal.reason as Error);
      });
    });
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** One node: a scheduler on a clock, with a storage middleware on a repository client. */
export interface TestNode {
  scheduler: Scheduler;
  storage: StorageMiddleware;
  clock: VirtualClock;
  repo: MemoryRepository;
  /** Every storage event, in order, as [name, payload]. */
  events: Array<[keyof StorageEvents, unknown]>;
}

export interface NodeOptions extends StorageOptions {
  /** Use multiNodeStorage (requires nodeId and leaseMs). */
  multi?: boolean;
  concurrency?: number;
  /** The scheduler's aging of its ready queue. @defaultValue the Scheduler's */
  agingMs?: number;
  before?: Middleware[];
  after?: Middleware[];
  /** Do not call storage.start / scheduler.start. */
  noStart?: boolean;
}

const EVENT_NAMES: Array<keyof StorageEvents> = [
  'task:scheduled',
  'task:started',
  'task:succeeded',
  'task:failed',
  'task:retried',
  'task:cancelled',
  'task:lease-lost',
  'repository:error',
  'sync:done',
  'sync:unknown-work',
  'sync:error',
];

/**
 * Starts a node. The scheduler's wall-clock check is long, so that advancing days of virtual time stays cheap.
 */
export async function startNode(repo: MemoryRepository, registry: WorkRegistry, clock: VirtualClock, options: NodeOptions = {}): Promise<TestNode> {
  const { multi, concurrency, agingMs, before = [], after = [], noStart, ...storageOptions } = options;
  const scheduler = new Scheduler({
    clock,
    concurrency: concurrency ?? 10,
    wallClockCheckMs: 3_600_000,
    stopGraceMs: 1000,
    ...(agingMs === undefined ? {} : { agingMs }),
  });
  const storage = multi === true
    ? multiNodeStorage(repo, registry, { ...storageOptions, nodeId: storageOptions.nodeId ?? 'node', leaseMs: storageOptions.leaseMs ?? 30_000 })
    : singleNodeStorage(repo, registry, storageOptions);
  const events: Array<[keyof StorageEvents, unknown]> = [];
  for (const name of EVENT_NAMES) storage.events.on(name, (payload) => events.push([name, payload]));
  scheduler.use(...before, storage.middleware, ...after);
  if (noStart !== true) {
    await storage.start(scheduler);
    scheduler.start();
  }
  return { scheduler, storage, clock, repo, events };
}

/** The names of the events a node emitted, sync passes left out. */
export function eventNames(node: TestNode): string[] {
  return node.events.map(([name]) => name).filter((name) => name !== 'sync:done');
}

/** A fresh clock and repository. */
export function fixture(): { clock: VirtualClock; repo: MemoryRepository } {
  const clock = new VirtualClock();
  return { clock, repo: new MemoryRepository({ clock }) };
}

/** Reads every task of a repository. */
export async function allTasks(repo: MemoryRepository) {
  const page = await repo.list({ limit: 1000 });
  return page.tasks;
}
