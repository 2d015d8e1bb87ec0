/**
 * Bounds on input (issue 10, defect 6): a param's size is counted while its JSON check walks it, and the walk stops
 * at the bound, so a 50 MB param is refused after reading about 1 MiB of it (it took seconds of a blocked event loop);
 * error messages quote a short prefix of the input (a 1 MB workId gave a 1 MB message).
 */
import { randomBytes } from 'node:crypto';
import { InvalidInputError, quoteInput } from '@horae/core';
import {
  DEFAULT_MAX_PARAM_BYTES,
  MemoryRepository,
  TaskNotFoundError,
  UnknownWorkError,
  WorkRegistry,
  assertJsonValue,
  assertParamSize,
  createHorae,
} from '@horae/storage';
import { afterEach, describe, expect, it } from 'vitest';
import { stopAll, world } from './horae-helpers.js';

/**
 * A param of `length` items that counts the items read from it: a proxy over an array, so that a 50 MB param needs
 * no 50 MB of memory, and the test sees how much of it each check reads.
 */
function countingParam(length: number): { param: unknown[]; reads: () => number } {
  let reads = 0;
  const item = { id: 0, name: 'abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnop' }; // ~70 bytes of JSON
  const param = new Proxy(new Array<unknown>(length), {
    get(target, key, receiver) {
      if (typeof key === 'string' && /^\d+$/.test(key)) {
        reads++;
        return { ...item, id: Number(key) };
      }
      return Reflect.get(target, key, receiver) as unknown;
    },
  });
  return { param, reads: () => reads };
}

describe('quoteInput', () => {
  it('quotes a short string whole, and a long one as a 64-character prefix and a count', () => {
    expect(quoteInput('abc')).toBe('"abc"');
    const quoted = quoteInput('x'.repeat(1_000_000));
    expect(quoted).toBe(`"${'x'.repeat(64)}"… (999936 more characters)`);
  });

  it('never splits a surrogate pair, and describes other values in bounded time', () => {
    const quoted = quoteInput(`${'a'.repeat(63)}😀${'b'.repeat(100)}`);
    expect(quoted.startsWith(`"${'a'.repeat(63)}"`)).toBe(true);
    expect(quoteInput(42)).toBe('42');
    expect(quoteInput(undefined)).toBe('undefined');
    expect(quoteInput(new Array(10_000_000))).toBe('an array of 10000000 items');
    expect(quoteInput({ a: 1 })).toBe('an object');
    expect(quoteInput(new Map())).toBe('a Map');
    expect(quoteInput(new Date(Number.NaN))).toBe('an invalid Date');
  });
});

describe('the size of a param', () => {
  it('is counted exactly as Buffer.byteLength(JSON.stringify(param))', () => {
    const values: unknown[] = [
      null,
      true,
      false,
      0,
      -1.5e-300,
      1e21,
      '',
      'plain',
      'quote " backslash \\ newline \n tab \t nul \u0000 del \u007f',
      'é € 😀 𝄞 and a lone surrogate \ud800 and \udc00',
      [],
      {},
      [1, 'two', { three: [3, null, false] }],
      { 'k"ey': 'v', '€': ['é'], nested: { deeper: { deepest: [[], {}] } } },
      Array.from({ length: 100 }, (_, i) => ({ i, s: randomBytes(i).toString('base64') })),
    ];
    for (const value of values) {
      const exact = Buffer.byteLength(JSON.stringify(value));
      expect(() => assertJsonValue(value, 'param', exact), JSON.stringify(value).slice(0, 40)).not.toThrow();
      expect(() => assertJsonValue(value, 'param', exact - 1), JSON.stringify(value).slice(0, 40)).toThrow(InvalidInputError);
    }
  });

  it('stops reading a 50 MB param once the bound is passed', () => {
    const { param, reads } = countingParam(700_000); // ~50 MB of JSON
    expect(() => assertJsonValue(param, 'param', DEFAULT_MAX_PARAM_BYTES)).toThrow(/param takes more than 1048576 bytes of JSON/);
    // ~70 bytes an item: the walk stops after about 15,000 of 700,000 items.
    expect(reads()).toBeLessThan(20_000);
  });

  it('assertParamSize counts what JSON cannot hold as nothing, so it never refuses what a validator may turn into a small param', () => {
    const big = 'x'.repeat(DEFAULT_MAX_PARAM_BYTES);
    expect(() => assertParamSize({ at: new Date(), skip: undefined, fn: () => big, n: Number.NaN }, 64)).not.toThrow();
    expect(() => assertParamSize({ big }, DEFAULT_MAX_PARAM_BYTES)).toThrow(InvalidInputError);
    const cycle: Record<string, unknown> = { a: 'b' };
    cycle.self = cycle;
    expect(() => assertParamSize(cycle, 64)).not.toThrow();
  });
});

describe('MemoryRepository and createHorae refuse an oversized param before any other work', () => {
  const running: ReturnType<typeof createHorae>[] = [];
  afterEach(async () => {
    await stopAll(running.splice(0));
  });

  it('a repository with maxParamBytes refuses a param one byte over it and accepts one at it', async () => {
    const repository = new MemoryRepository({ maxParamBytes: 100 });
    expect(repository.maxParamBytes).toBe(100);
    await expect(repository.insert({ workId: 'w', scheduledAt: new Date(), param: 'p'.repeat(99) })).rejects.toThrow(/more than 100 bytes/);
    await repository.insert({ workId: 'w', scheduledAt: new Date(), param: 'p'.repeat(98) });
    expect((await repository.countByState()).Initialized).toBe(1);
    expect(() => new MemoryRepository({ maxParamBytes: 0 })).toThrow(InvalidInputError);
    expect(new MemoryRepository().maxParamBytes).toBe(DEFAULT_MAX_PARAM_BYTES);
  });

  it('schedule() refuses a 50 MB param after reading about 1 MiB of it, before the validator and nothing stored', async () => {
    const { clock, repo } = world();
    let validated = 0;
    const registry = new WorkRegistry().register('w', () => Promise.resolve(), {
      validate: (p) => {
        validated++;
        return p;
      },
    });
    const horae = createHorae({ repository: repo, registry, clock, scheduleTickMs: 0 });
    running.push(horae);
    await horae.start();
    const { param, reads } = countingParam(700_000);
    await expect(horae.schedule({ workId: 'w', param, delayMs: 60_000 })).rejects.toThrow(InvalidInputError);
    expect(reads()).toBeLessThan(20_000);
    expect(validated).toBe(0);
    expect((await repo.countByState()).Initialized).toBe(0);
    // A recurring schedule's param is bounded the same way, through schedule() and through the schedules API.
    await expect(horae.schedule({ name: 'nightly', workId: 'w', every: 60_000, param: countingParam(700_000).param })).rejects.toThrow(InvalidInputError);
    const direct = countingParam(700_000);
    await expect(horae.schedules.upsert({ name: 'nightly', workId: 'w', everyMs: 60_000, param: direct.param })).rejects.toThrow(InvalidInputError);
    expect(direct.reads()).toBeLessThan(20_000);
    expect(validated).toBe(0);
    expect(await repo.listSchedules()).toEqual([]);
  });

  it('the bound is the repository\'s: raised there, schedule() lets a larger param through', async () => {
    const { clock } = world();
    const repository = new MemoryRepository({ clock, maxParamBytes: 4 * DEFAULT_MAX_PARAM_BYTES });
    const registry = new WorkRegistry().register('w', () => Promise.resolve());
    const horae = createHorae({ repository, registry, clock, scheduleTickMs: 0 });
    running.push(horae);
    await horae.start();
    const handle = await horae.schedule({ workId: 'w', param: 'p'.repeat(2 * DEFAULT_MAX_PARAM_BYTES), delayMs: 60_000 });
    expect(((await repository.getById(handle.taskId)).param as string).length).toBe(2 * DEFAULT_MAX_PARAM_BYTES);
  });
});

describe('messages quote a short prefix of the input', () => {
  const huge = 'h'.repeat(1_000_000);

  it('in the errors of a lookup, an unknown work and a refused key', async () => {
    const repository = new MemoryRepository();
    const notFound = await repository.getById(huge).catch((e: unknown) => e);
    expect(notFound).toBeInstanceOf(TaskNotFoundError);
    expect((notFound as Error).message.length).toBeLessThan(200);
    expect(new UnknownWorkError(huge).message.length).toBeLessThan(300);
    const refused = await repository.insert({ workId: huge, scheduledAt: new Date() }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(InvalidInputError);
    expect((refused as Error).message).toMatch(/^workId is 1000000 characters long, over its limit of 255: "h{64}"… \(999936 more characters\)$/);
  });

  it('in the path of a value JSON cannot hold', () => {
    let error: unknown;
    try {
      assertJsonValue({ [huge]: { nested: () => 1 } });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(InvalidInputError);
    expect((error as Error).message.length).toBeLessThan(300);
  });
});
