import { VirtualClock } from '@horae/core/testing';
import { MemoryRepository, RepositoryError, ScheduleMaterializer, type ScheduleMaterializerOptions, type TaskInfo } from '@horae/storage';
import { expect } from 'vitest';

export const MINUTE = 60_000;
export const HOUR = 60 * MINUTE;
export const DAY = 24 * HOUR;

/** A store on a virtual clock ("the database") and the clock. */
export interface World {
  clock: VirtualClock;
  repo: MemoryRepository;
}

/** A fresh store whose database clock is the virtual clock, at `start`. */
export function world(start = '2026-01-01T00:00:00.000Z'): World {
  const clock = new VirtualClock({ now: new Date(start), flushTurns: 1 });
  return { clock, repo: new MemoryRepository({ clock }) };
}

/** A materializer on its own client of the world's store: one "node". */
export function node(w: World, options: Partial<ScheduleMaterializerOptions> = {}): ScheduleMaterializer {
  return new ScheduleMaterializer({ repository: w.repo.openPeer(), clock: w.clock, lookaheadMs: 0, ...options });
}

/** Every task in the store, oldest first. */
export async function allTasks(repo: MemoryRepository): Promise<TaskInfo[]> {
  return (await repo.list({ limit: 10_000 })).tasks;
}

/** The scheduledAt of every task, ISO, sorted. */
export async function taskTimes(repo: MemoryRepository): Promise<string[]> {
  return (await allTasks(repo)).map((t) => t.scheduledAt.toISOString()).sort();
}

/** Fails unless no uniqueKey (occurrence) has more than one task; returns the number of tasks. */
export async function expectOneTaskPerOccurrence(repo: MemoryRepository): Promise<number> {
  const tasks = await allTasks(repo);
  const perKey = new Map<string, number>();
  for (const task of tasks) {
    expect(task.uniqueKey).not.toBeNull();
    perKey.set(task.uniqueKey!, (perKey.get(task.uniqueKey!) ?? 0) + 1);
  }
  expect([...perKey.values()].filter((n) => n !== 1)).toEqual([]);
  return tasks.length;
}

/** Claims a task and returns its lease token. */
export async function claim(repo: MemoryRepository, id: string): Promise<string> {
  const task = await repo.claim(id, { owner: 'worker', leaseMs: DAY });
  expect(task).not.toBeNull();
  return task!.lease!.token;
}

/** Claims a task and marks it Done. */
export async function runToDone(repo: MemoryRepository, id: string): Promise<void> {
  await repo.markAsDone(id, await claim(repo, id));
}

/**
 * A client of the store whose `advanceSchedule` fails: a node that dies after inserting an occurrence's
 * tasks and before advancing its schedule.
 */
export function crashingBeforeAdvance(repo: MemoryRepository): MemoryRepository {
  return new Proxy(repo, {
    get(target, property) {
      if (property === 'advanceSchedule') return () => Promise.reject(new RepositoryError('the node died before advancing'));
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}
