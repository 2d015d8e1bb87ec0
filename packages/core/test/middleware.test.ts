import {
  TimeoutError,
  TimeoutMsKey,
  createKey,
  logging,
  timeout,
  type Logger,
  type Middleware,
  type WorkContext,
} from '@horae/core';
import { describe, expect, it } from 'vitest';
import { setup, sleepWork } from './helpers.js';

const Tag = createKey<string>('tag');

describe('middleware chain', () => {
  it('calls the first registered middleware first (outermost)', async () => {
    const { scheduler } = setup();
    const calls: string[] = [];
    const named =
      (name: string): Middleware =>
      (next) =>
      async (ctx) => {
        calls.push(`${name}:in`);
        const handle = await next(ctx);
        calls.push(`${name}:out`);
        return handle;
      };
    scheduler.use(named('a'), named('b')).use(named('c'));
    await scheduler.schedule({ work: () => {} });
    expect(calls).toEqual(['a:in', 'b:in', 'c:in', 'c:out', 'b:out', 'a:out']);
  });

  it('lets a middleware change runAt and values, and wrap the work', async () => {
    const { clock, scheduler } = setup();
    const start = clock.now();
    const shift: Middleware = (next) => (ctx) => next(ctx.withRunAt(ctx.runAt.getTime() + 5000).withValue(Tag, 'tagged'));
    const wrap: Middleware = (next) => (ctx) => {
      const work = ctx.work!;
      return next(ctx.withWork(async (run: WorkContext) => `wrapped(${String(await work(run))})`));
    };
    scheduler.use(shift, wrap);
    const handle = await scheduler.schedule({ delayMs: 1000, work: (ctx) => ctx.value(Tag) });
    expect(handle.runAt.getTime()).toBe(start + 6000);
    await clock.advance(5999);
    expect(handle.state).toBe('scheduled');
    await clock.advance(1);
    await expect(handle.result).resolves.toBe('wrapped(tagged)');
  });

  it('lets a middleware answer without calling next', async () => {
    const { scheduler } = setup();
    const inner = await scheduler.schedule({ delayMs: 10, work: () => {} });
    const dedupe: Middleware = () => () => inner;
    scheduler.use(dedupe);
    expect(await scheduler.schedule({ work: () => {} })).toBe(inner);
    expect(scheduler.pending).toBe(1);
  });
});

function memoryLogger(): Logger & { lines: Array<{ level: string; msg: string; obj: Record<string, unknown> }> } {
  const lines: Array<{ level: string; msg: string; obj: Record<string, unknown> }> = [];
  const at = (level: string) => (obj: object, msg?: string) => void lines.push({ level, msg: msg ?? '', obj: obj as Record<string, unknown> });
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

function permutations<T>(items: T[]): T[][] {
  if (items.length <= 1) return [items];
  return items.flatMap((item, i) => permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]));
}

describe('logging and timeout in any position', () => {
  const names = ['logging', 'timeout', 'user'] as const;

  for (const order of permutations([...names])) {
    it(`works in the order [${order.join(', ')}]`, async () => {
      const { clock, scheduler } = setup();
      const logger = memoryLogger();
      let userWrapped = 0;
      const user: Middleware = (next) => (ctx) => {
        const work = ctx.work!;
        return next(
          ctx.withValue(Tag, 'from-user').withWork((run: WorkContext) => {
            userWrapped++;
            return work(run);
          }),
        );
      };
      const byName = { logging: logging({ logger, level: 'debug' }), timeout: timeout(1000), user };
      scheduler.use(...order.map((name) => byName[name]));

      // A fast work: succeeds, sees the user's value.
      const fast = await scheduler.schedule({ delayMs: 0, workId: 'fast', work: (ctx) => ctx.value(Tag) });
      // A slow work that honours its signal: the timeout aborts it.
      let slowSignal: AbortSignal | undefined;
      const slow = await scheduler.schedule({
        delayMs: 0,
        workId: 'slow',
        work: (ctx) => {
          slowSignal = ctx.signal;
          return new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason as Error)));
        },
      });
      // A work that ignores its signal: the run fails at the deadline anyway; its own timeout wins over the default.
      const deaf = await scheduler.schedule({ delayMs: 0, workId: 'deaf', values: [[TimeoutMsKey, 300]], work: () => new Promise(() => {}) });

      await clock.advance(0);
      await expect(fast.result).resolves.toBe('from-user');
      await clock.advance(300);
      expect(deaf.state).toBe('failed');
      await expect(deaf.result).rejects.toBeInstanceOf(TimeoutError);
      expect(slow.state).toBe('running');
      await clock.advance(700);
      expect(slow.state).toBe('failed');
      await expect(slow.result).rejects.toBeInstanceOf(TimeoutError);
      expect(slowSignal!.aborted).toBe(true);
      expect(slowSignal!.reason).toBeInstanceOf(TimeoutError);
      expect(userWrapped).toBe(3);

      const lines = (msg: string, workId: string) => logger.lines.filter((l) => l.msg === msg && l.obj.workId === workId);
      for (const workId of ['fast', 'slow', 'deaf']) {
        expect(lines('task scheduled', workId)).toHaveLength(1);
        expect(lines('task started', workId)).toHaveLength(1);
        expect(lines('task started', workId)[0]!.obj).toMatchObject({ attempt: 1 });
      }
      expect(lines('task scheduled', 'fast')[0]!.obj.taskId).toBe(fast.taskId);
      expect(lines('task succeeded', 'fast')[0]!.obj).toMatchObject({ taskId: fast.taskId, durationMs: 0 });
      const slowFailed = lines('task failed', 'slow')[0]!;
      expect(slowFailed.level).toBe('error');
      expect(slowFailed.obj.error).toBeInstanceOf(TimeoutError);
      expect(slowFailed.obj.durationMs).toBe(1000);
      // Whether logging sees the deaf run end depends on its place: inside the timeout it waits for the
      // work (which never ends); outside, it sees the TimeoutError.
      const deafFailed = lines('task failed', 'deaf');
      if (order.indexOf('logging') > order.indexOf('timeout')) expect(deafFailed).toHaveLength(1);
      else expect(deafFailed).toHaveLength(0);
    });
  }

  it('timeout rejects invalid limits', async () => {
    expect(() => timeout(0)).toThrow(/defaultMs/);
    const { scheduler } = setup();
    scheduler.use(timeout());
    await expect(scheduler.schedule({ work: () => {}, values: [[TimeoutMsKey, -1]] })).rejects.toThrow(/TimeoutMsKey/);
    expect(scheduler.pending).toBe(0);
  });

  it('timeout leaves a run without a limit alone, and clears its timer when the work ends', async () => {
    const { clock, scheduler } = setup();
    scheduler.use(timeout());
    const handle = await scheduler.schedule({ work: sleepWork(10_000, 'long') });
    await clock.advance(10_000);
    await expect(handle.result).resolves.toBe('long');
    scheduler.use(timeout(500));
    const quick = await scheduler.schedule({ work: sleepWork(10, 'quick') });
    await clock.advance(10);
    await expect(quick.result).resolves.toBe('quick');
    expect(clock.pendingTimers).toBe(0);
  });

  it('logging rejects an unknown level', () => {
    expect(() => logging({ level: 'loud' as never })).toThrow(/level/);
  });
});
