import { InvalidInputError } from '@horae/core';
import { DurableStorage } from './durable-storage.js';
import type { MultiNodeStorageOptions, StorageMiddleware, StorageOptions } from './storage-options.js';
import type { Repository } from '../contract/repository.js';
import type { WorkRegistry } from '../works/work-registry.js';

// The public face of the storage middleware: its two factories, and its options and interfaces (declared in
// storage-options.ts, with the parts that read them), re-exported so that this module stays the one to import.
export { RestoredTaskKey, type MultiNodeStorageOptions, type StorageMiddleware, type StorageOptions, type StorageScheduler } from './storage-options.js';

/**
 * A storage middleware for one process: every task is written to `repository` at schedule time and its state
 * follows the run; after a restart, `start()` restores what was pending.
 *
 * @param repository - where tasks live
 * @param registry - the works this process runs, by workId
 * @param options - leases, retries, sync window and periods
 * @returns the middleware and its controls; install with `scheduler.use(storage.middleware)`, then `await storage.start(scheduler)`
 * @throws InvalidInputError on an invalid option
 *
 * @example
 * ```ts
 * const registry = new WorkRegistry().register('email', sendEmail);
 * const storage = singleNodeStorage(new MemoryRepository(), registry);
 * const scheduler = new Scheduler().use(storage.middleware);
 * await storage.start(scheduler);
 * scheduler.start();
 * await scheduler.schedule({ workId: 'email', param: { to: 'a@b.c' }, delayMs: 60_000 });
 * ```
 */
export function singleNodeStorage(repository: Repository, registry: WorkRegistry, options: StorageOptions = {}): StorageMiddleware {
  return new DurableStorage(repository, registry, options, false);
}

/**
 * A storage middleware for one of many nodes sharing `repository`: each task runs once across them (the claim
 * has exactly one winner), a dead node's tasks are reclaimed when their lease expires, and sync picks up what
 * other nodes insert, reschedule or cancel.
 *
 * @param repository - the shared repository
 * @param registry - the works this node runs, by workId
 * @param options - `nodeId` (unique per node) and `leaseMs` are required
 * @returns the middleware and its controls
 * @throws InvalidInputError when `nodeId` or `leaseMs` is missing or invalid
 */
export function multiNodeStorage(repository: Repository, registry: WorkRegistry, options: MultiNodeStorageOptions): StorageMiddleware {
  if (options === null || typeof options !== 'object') throw new InvalidInputError('multiNodeStorage needs { nodeId, leaseMs }');
  if (typeof options.nodeId !== 'string' || options.nodeId === '') throw new InvalidInputError('multiNodeStorage needs a nodeId, unique per node');
  if (options.leaseMs === undefined) throw new InvalidInputError('multiNodeStorage needs leaseMs');
  return new DurableStorage(repository, registry, options, true);
}
