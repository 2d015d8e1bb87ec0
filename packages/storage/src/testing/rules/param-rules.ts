import { InvalidInputError } from '@horae/core';
import { expect } from 'vitest';
import type { JsonValue } from '../../contract/task-info.js';
import { insertTask, newTask, totalCount } from '../helpers.js';
import type { SuiteContext } from '../suite-context.js';

/** A class whose instances are not plain JSON objects. */
class Point {
  constructor(
    readonly x: number,
    readonly y: number,
  ) {}
}

/** Values a param must refuse, each with a label for the failure message. */
function nonJsonValues(): [string, unknown][] {
  const cycle: Record<string, unknown> = { a: 1 };
  cycle['self'] = cycle;
  return [
    ['a function', { run: () => 1 }],
    ['undefined inside an object', { a: undefined }],
    ['undefined inside an array', [1, undefined, 3]],
    ['NaN', { n: Number.NaN }],
    ['Infinity', { n: Number.POSITIVE_INFINITY }],
    ['-Infinity', [Number.NEGATIVE_INFINITY]],
    ['a cycle', cycle],
    ['a BigInt', { n: 10n }],
    ['a Date object', { at: new Date() }],
    ['a Map', { m: new Map([['a', 1]]) }],
    ['a class instance', { p: new Point(1, 2) }],
    ['a symbol', { s: Symbol('s') }],
    ['a top-level function', () => 1],
  ];
}

/** Inserts `param` and checks that what comes back, and what a later read returns, equals it. */
async function expectRoundTrip(ctx: SuiteContext, param: JsonValue): Promise<void> {
  const task = await insertTask(ctx.repo(), { param });
  expect(task.param).toEqual(param);
  expect((await ctx.repo().getById(task.id)).param).toEqual(param);
}

/**
 * Params round-trip exactly, and what is not JSON is refused with nothing written.
 *
 * @remarks NUL (`\u0000`) inside strings is left out: PostgreSQL's jsonb cannot hold it.
 */
export function paramRules(ctx: SuiteContext): void {
  const { group, rule, repo } = ctx;
  group('params', () => {
    rule('nested JSON round-trips', async () => {
      await expectRoundTrip(ctx, {
        user: { id: 42, tags: ['a', 'b'], address: { city: 'Lyon', lines: [['1', '2'], []] } },
        empty: {},
        emptyList: [],
        mixed: [1, 'two', { three: [3] }, null, true],
      });
    });

    rule('unicode strings round-trip', async () => {
      await expectRoundTrip(ctx, {
        emoji: '👩‍👩‍👧‍👦 🎉 🏳️‍🌈',
        cjk: '日本語の文字列、中文字符串、한국어',
        rtl: 'שלום עולם — مرحبا بالعالم',
        combining: 'e\u0301 a\u0308 \u200d',
        escapes: 'line\nbreak\ttab "quote" \\backslash\\ \u0001 \u001f',
        '键 🔑': 'unicode key',
      });
    });

    rule('dates stored as ISO strings come back as the same strings', async () => {
      const iso = new Date('2031-02-03T04:05:06.789Z').toISOString();
      const task = await insertTask(repo(), { param: { at: iso, list: [iso] } });
      const read = await repo().getById(task.id);
      expect(read.param).toEqual({ at: iso, list: [iso] });
      expect(typeof (read.param as { at: unknown }).at).toBe('string');
    });

    rule('large params round-trip', async () => {
      // Just under the default bound of 1 MiB of JSON (DEFAULT_MAX_PARAM_BYTES): the rules of limit-rules.ts test the bound itself.
      const big = 'abcdefghij0123456789'.repeat(47_000); // 940 KB, and 79 KB of list
      const list = Array.from({ length: 10_000 }, (_, i) => i % 3 === 0 ? { i } : i % 3 === 1 ? `s${i}` : i);
      await expectRoundTrip(ctx, { big, list });
    });

    rule('keys with $ and . round-trip', async () => {
      await expectRoundTrip(ctx, {
        $set: { 'a.b': 1 },
        'x.y.z': [{ $in: [2] }],
        $: 'dollar',
        '.': 'dot',
        'trailing.': { 'a$b': true },
      });
    });

    rule('numbers round-trip', async () => {
      await expectRoundTrip(ctx, [0, 1, -1, 42, -273.15, 0.1, 0.30000000000000004, 1e-7, 1.5e300, -2.5e-300, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER, Math.PI]);
    });

    rule('booleans, null and scalar params round-trip', async () => {
      await expectRoundTrip(ctx, { t: true, f: false, n: null, list: [null, true, false] });
      for (const scalar of [true, false, 'text', 12.5, 0, '']) await expectRoundTrip(ctx, scalar);
      const task = await insertTask(repo(), { param: null });
      expect((await repo().getById(task.id)).param).toBeNull();
    });

    rule('a param that is not JSON is refused and nothing is written', async () => {
      for (const [label, param] of nonJsonValues()) {
        await expect(repo().insert(newTask({ param: param as JsonValue })), label).rejects.toBeInstanceOf(InvalidInputError);
        await expect(repo().insertMany([newTask(), newTask({ param: param as JsonValue })]), `insertMany with ${label}`).rejects.toBeInstanceOf(InvalidInputError);
      }
      expect(await totalCount(repo())).toBe(0);
    });

    rule('update refuses a param that is not JSON and changes nothing', async () => {
      const task = await insertTask(repo(), { param: { keep: 1 } });
      for (const [label, param] of nonJsonValues()) {
        await expect(repo().update(task.id, { param: param as JsonValue }), label).rejects.toBeInstanceOf(InvalidInputError);
      }
      expect(await repo().getById(task.id)).toEqual(task);
    });
  });
}
