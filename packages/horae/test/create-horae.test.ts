/**
 * The front door at run time: the embedded default is a durable SQLite file (HORAE_DB or ./horae.db), opened and
 * closed by Horae; works given to createHorae are registered; a param failing its schema (Zod, Valibot, ArkType, a
 * function) is refused at schedule() with the schema's issues, and nothing is written.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type } from 'arktype';
import * as v from 'valibot';
import { z } from 'zod';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InvalidInputError, MemoryRepository, ParamValidationError, SqliteRepository, createHorae, defaultDatabaseFile, defineWork, type StandardSchemaV1 } from 'horae';

let dir: string;
const stops: Array<() => Promise<void>> = [];
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'horae-front-door-'));
});
afterEach(async () => {
  for (const stop of stops.splice(0)) await stop();
  delete process.env.HORAE_DB;
  rmSync(dir, { recursive: true, force: true });
});

/** Resolves with the params each run saw, once `count` runs happened. */
function collector<T>(count: number): { seen: T[]; done: Promise<void>; record(param: T): void } {
  const seen: T[] = [];
  let resolve!: () => void;
  const done = new Promise<void>((r) => (resolve = r));
  return {
    seen,
    done,
    record(param) {
      seen.push(param);
      if (seen.length >= count) resolve();
    },
  };
}

describe('createHorae with no repository: the embedded SQLite default', () => {
  it('opens HORAE_DB (or ./horae.db), keeps a task across a restart, and closes the file at stop()', async () => {
    const file = join(dir, 'app.db');
    process.env.HORAE_DB = file;
    expect(defaultDatabaseFile()).toBe(file);
    const runs = collector<{ name: string }>(1);
    const greet = defineWork('greet', { schema: z.object({ name: z.string() }), run: (ctx) => runs.record(ctx.param) });

    const first = createHorae({ works: [greet] });
    await first.start();
    const handle = await first.schedule({ workId: 'greet', param: { name: 'Ada' }, delayMs: 60_000 });
    await first.stop();
    expect(existsSync(file)).toBe(true);
    // stop() closed the repository it opened: a read now fails.
    await expect(first.repository.getById(handle.taskId)).rejects.toThrow();

    // A new process (here: a new Horae on the same file) finds the task and runs it when told to run it now.
    const second = createHorae({ works: [greet] });
    stops.push(() => second.stop());
    await second.start();
    expect((await second.getTask(handle.taskId)).state).toBe('Initialized');
    await second.repository.update(handle.taskId, { scheduledAt: new Date() });
    await second.storage.sync();
    await runs.done;
    expect(runs.seen).toEqual([{ name: 'Ada' }]);
  });

  it('falls back to ./horae.db when HORAE_DB is unset or empty', () => {
    process.env.HORAE_DB = '';
    expect(defaultDatabaseFile()).toBe('./horae.db');
    delete process.env.HORAE_DB;
    expect(defaultDatabaseFile()).toBe('./horae.db');
  });

  it('leaves a repository it was given open at stop()', async () => {
    const repository = new SqliteRepository({ database: join(dir, 'mine.db') });
    const horae = createHorae({ repository, works: [defineWork('noop', { run: () => undefined })] });
    await horae.start();
    await horae.stop();
    expect(await repository.countByState()).toMatchObject({ Initialized: 0 });
    await repository.close();
  });
});

/** Schedules `param` for a work of `schema` on a fresh memory repository; returns the refusal and what was stored. */
async function refusalOf(schema: StandardSchemaV1 | ((p: unknown) => unknown), param: unknown): Promise<{ error: unknown; stored: number }> {
  const repository = new MemoryRepository();
  const horae = createHorae({ repository, works: [defineWork('w', { schema: schema as StandardSchemaV1, run: () => undefined })] });
  await horae.start();
  const error = await (horae.schedule as (o: unknown) => Promise<unknown>)({ workId: 'w', param, delayMs: 60_000 }).then(
    () => undefined,
    (e: unknown) => e,
  );
  const counts = await repository.countByState();
  await horae.stop();
  return { error, stored: Object.values(counts).reduce((a, b) => a + b, 0) };
}

describe('typed works: a param failing its schema is refused at schedule(), with the issues, nothing written', () => {
  const cases: Array<[string, StandardSchemaV1]> = [
    ['Zod', z.object({ to: z.email(), count: z.number() })],
    ['Valibot', v.object({ to: v.pipe(v.string(), v.email()), count: v.number() })],
    ['ArkType', type({ to: 'string.email', count: 'number' })],
  ];
  for (const [library, schema] of cases) {
    it(`${library}: issues with their paths; a valid param is stored as the schema returned it`, async () => {
      const { error, stored } = await refusalOf(schema, { to: 'not an email', count: 'three' });
      expect(error).toBeInstanceOf(ParamValidationError);
      expect(error).toBeInstanceOf(InvalidInputError);
      const refusal = error as ParamValidationError;
      expect(refusal.code).toBe('INVALID_INPUT');
      expect(refusal.workId).toBe('w');
      expect(refusal.issues.map((issue) => issue.path.join('.')).sort()).toEqual(['count', 'to']);
      expect(refusal.message).toMatch(/^the param of "w" failed its validation: /);
      expect(refusal.message).toContain('count: ');
      expect(stored).toBe(0);
      const ok = await refusalOf(schema, { to: 'ada@example.com', count: 3 });
      expect(ok).toEqual({ error: undefined, stored: 1 });
    });
  }

  it('ArkType, whose types return their errors instead of throwing, never has its errors stored as the param', async () => {
    const schema = type({ n: 'number' });
    const { error, stored } = await refusalOf(schema, { n: 'x' });
    expect(error).toBeInstanceOf(ParamValidationError);
    expect(stored).toBe(0);
  });

  it('the schema output is what is stored and what the work sees (defaults, transforms)', async () => {
    const repository = new MemoryRepository();
    const runs = collector<unknown>(1);
    const work = defineWork('w', { schema: z.object({ to: z.string().trim(), subject: z.string().default('hi') }), run: (ctx) => runs.record(ctx.param) });
    const horae = createHorae({ repository, works: [work] });
    stops.push(() => horae.stop());
    await horae.start();
    const handle = await horae.schedule({ workId: 'w', param: { to: '  ada@example.com ' } });
    await runs.done;
    expect(runs.seen).toEqual([{ to: 'ada@example.com', subject: 'hi' }]);
    expect((await repository.getById(handle.taskId)).param).toEqual({ to: 'ada@example.com', subject: 'hi' });
  });

  it('a schema that validates asynchronously is refused with a clear error, nothing written', async () => {
    const asyncSchema = z.object({ n: z.number() }).refine(() => Promise.resolve(true));
    const { error, stored } = await refusalOf(asyncSchema, { n: 1 });
    expect(error).toBeInstanceOf(InvalidInputError);
    expect((error as Error).message).toMatch(/validates asynchronously/);
    expect(stored).toBe(0);
  });

  it('a plain function validator still works: its throw is the one issue and the cause', async () => {
    const boom = new RangeError('n must be positive');
    const { error, stored } = await refusalOf((p) => {
      if ((p as { n: number }).n <= 0) throw boom;
      return p;
    }, { n: -1 });
    expect(error).toBeInstanceOf(ParamValidationError);
    expect((error as ParamValidationError).issues).toEqual([{ message: 'n must be positive', path: [] }]);
    expect((error as Error).cause).toBe(boom);
    expect(stored).toBe(0);
  });
});

describe('createHorae refuses bad works before opening anything', () => {
  it('two works with one id, a work that is not a defineWork() result, an empty id', () => {
    const a = defineWork('same', { run: () => undefined });
    expect(() => createHorae({ repository: new MemoryRepository(), works: [a, a] })).toThrow(InvalidInputError);
    expect(() => createHorae({ repository: new MemoryRepository(), works: [{} as typeof a] })).toThrow(InvalidInputError);
    expect(() => defineWork('', { run: () => undefined })).toThrow(InvalidInputError);
    expect(() => defineWork('x', {} as { run: () => undefined })).toThrow(InvalidInputError);
  });
});
