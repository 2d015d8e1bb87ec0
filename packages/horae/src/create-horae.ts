/**
 * The front door: `createHorae()` with an embedded SQLite default and typed works.
 */
import { InvalidInputError } from '@horae/core';
import { SqliteRepository } from '@horae/repo-sqlite';
import { Horae, WorkRegistry, type HoraeOptions, type Repository } from '@horae/storage';
import type { AnyWorkDefinition } from './define-work.js';
import type { HoraeFor } from './typed-horae.js';

/** The file of the embedded default, when neither `repository` nor `HORAE_DB` says otherwise. */
export const DEFAULT_DATABASE_FILE = './horae.db';

/** Options of {@link createHorae}: those of `@horae/storage`'s, with the repository and the registry optional. */
export interface CreateHoraeOptions<W extends readonly AnyWorkDefinition[] = readonly AnyWorkDefinition[]> extends Omit<HoraeOptions, 'repository' | 'registry'> {
  /**
   * Where tasks live. Left out: the embedded default, a SQLite file at `HORAE_DB` or `./horae.db` (created if
   * missing), which this Horae opens and closes at the end of `stop()`. A repository you pass is yours to close.
   *
   * @defaultValue a `SqliteRepository` on `process.env.HORAE_DB ?? './horae.db'`
   */
  repository?: Repository;
  /** Works defined with `defineWork`: registered here, and `schedule()` is typed by them. @defaultValue none */
  works?: W;
  /**
   * A registry of works registered by id (the untyped way). With `works` too, they are added to it.
   *
   * @defaultValue a new, empty registry
   */
  registry?: WorkRegistry;
}

/**
 * Creates Horae: a scheduler whose tasks are durable, on the embedded SQLite default unless given a repository.
 * Call `start()` to run it and `stop()` to end it.
 *
 * @param options - the works and, optionally, the repository and every option of `@horae/storage`'s `createHorae`
 * @returns a Horae whose `schedule()` accepts the given works' ids, each with its param's type
 * @throws InvalidInputError on bad options, or two works with one id (nothing is opened)
 *
 * ### Examples
 * ```ts
 * import { createHorae, defineWork } from 'horae';
 * import { z } from 'zod';
 *
 * const greet = defineWork('greet', { schema: z.object({ name: z.string() }), run: (ctx) => console.log(`hello ${ctx.param.name}`) });
 * const horae = createHorae({ works: [greet] });
 * await horae.start();
 * await horae.schedule({ workId: 'greet', param: { name: 'Ada' }, delayMs: 1_000 });
 * ```
 */
export function createHorae<const W extends readonly AnyWorkDefinition[] = []>(options: CreateHoraeOptions<W> = {}): HoraeFor<W> {
  if (options === null || typeof options !== 'object') throw new InvalidInputError('createHorae takes an options object');
  const { works = [] as unknown as W, registry = new WorkRegistry(), repository, ...rest } = options;
  if (!Array.isArray(works)) throw new InvalidInputError('works must be an array of defineWork() results');
  for (const work of works as readonly AnyWorkDefinition[]) {
    if (work === null || typeof work !== 'object' || typeof work.run !== 'function') throw new InvalidInputError('each of works must be a defineWork() result');
    registry.register(work.id, work.run, work.options);
  }
  const owned = repository === undefined;
  const store = repository ?? new SqliteRepository({ database: defaultDatabaseFile() });
  try {
    return new Horae({ ...rest, repository: store, registry, closeRepositoryOnStop: owned || rest.closeRepositoryOnStop === true }) as unknown as HoraeFor<W>;
  } catch (error) {
    if (owned) void store.close();
    throw error;
  }
}

/** The embedded default's file: `HORAE_DB` when set and not empty, else {@link DEFAULT_DATABASE_FILE}. */
export function defaultDatabaseFile(): string {
  const fromEnv = process.env.HORAE_DB;
  return fromEnv !== undefined && fromEnv !== '' ? fromEnv : DEFAULT_DATABASE_FILE;
}
