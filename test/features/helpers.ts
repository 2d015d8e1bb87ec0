import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TypedEventEmitter } from '@horae/core';
import { SqliteRepository } from '@horae/repo-sqlite';
import { createHorae, type Horae, type HoraeOptions, type WorkRegistry } from '@horae/storage';

/** Things to undo after a test, last first. */
export class Cleanups {
  readonly #steps: Array<() => Promise<void> | void> = [];

  add(step: () => Promise<void> | void): void {
    this.#steps.push(step);
  }

  async run(): Promise<void> {
    for (const step of this.#steps.splice(0).reverse()) await step();
  }
}

/** A fresh SQLite file in a temp directory; each `open()` is one more connection to it (another "node"). */
export interface TempDatabase {
  path: string;
  open(): SqliteRepository;
}

export function tempDatabase(cleanups: Cleanups): TempDatabase {
  const dir = mkdtempSync(join(tmpdir(), 'horae-features-'));
  const path = join(dir, 'horae.db');
  cleanups.add(() => rmSync(dir, { recursive: true, force: true }));
  return {
    path,
    open: () => {
      const repository = new SqliteRepository({ database: path });
      cleanups.add(() => repository.close());
      return repository;
    },
  };
}

/**
 * A Horae node on a new connection to the database, started; stopped by the cleanups. Short loops, so that
 * the real-clock tests stay quick.
 */
export async function startNode(db: TempDatabase, registry: WorkRegistry, cleanups: Cleanups, options: Partial<HoraeOptions> = {}): Promise<Horae> {
  const horae = createHorae({ repository: db.open(), registry, syncIntervalMs: 50, leaseMs: 5000, ...options });
  cleanups.add(() => horae.stop({ timeoutMs: 500, hookGraceMs: 0 }));
  await horae.start();
  return horae;
}

/** Rejects with a message naming `what` when `promise` has not settled within `ms` (real time). */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The first emit of `name` on any of `emitters` whose payload passes `accept`, within `ms`. */
export function eventWhere<M extends Record<string, unknown>, K extends keyof M>(
  emitters: ReadonlyArray<TypedEventEmitter<M>>,
  name: K,
  accept: (payload: M[K]) => boolean,
  ms: number,
): Promise<M[K]> {
  const offs: Array<() => void> = [];
  const found = new Promise<M[K]>((resolve) => {
    for (const emitter of emitters) {
      offs.push(
        emitter.on(name, (payload) => {
          if (accept(payload)) resolve(payload);
        }),
      );
    }
  });
  return withTimeout(found, ms, `event ${String(name)}`).finally(() => {
    for (const off of offs) off();
  });
}

/** A promise with its resolve at hand. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((res) => {
    resolve = res;
  });
  return { promise, resolve };
}

/** Real time passing, for a scenario that needs it (a node's downtime); never to wait for something that has an event. */
export function downtime(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
