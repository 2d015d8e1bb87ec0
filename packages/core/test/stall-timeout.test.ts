import {
  InvalidInputError,
  StallTimeoutMsKey,
  StalledError,
  TaskCancelledError,
  TimeoutError,
  createKey,
  fixedBackoff,
  retry,
  shouldRetry,
  stallTimeout,
  timeout,
  type Middleware,
  type WorkContext,
} from '@horae/core';
import { describe, expect, it } from 'vitest';
import { setup, untilAborted } from './helpers.js';

const Tag = createKey<string>('tag');

/** A work that waits `ms` on the run's clock, honouring its signal. */
function pause(ctx: WorkContext, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = ctx.clock!.setTimer(resolve, ms);
    ctx.signal.addEventListener(
      'abort',
      () => {
        timer.clear();
        reject(ctx.signal.reason as Error);
      },
      { once: true },
    );
  });
}

/** Reports progress `steps` times, every `everyMs`, then returns 'finished'. `moving` false repeats completed = 0. */
function stepping(steps: number, everyMs: number, moving = true) {
  return async (ctx: WorkContext): Promise<string> => {
    for (let i = 1; i <= steps; i++) {
      await pause(ctx, everyMs);
      ctx.progress({ completed: moving ? i : 0, total: steps });
    }
    return 'finished';
  };
}

describe('stallTimeout', () => {
  it('interrupts a silent run at the stall timeout: its signal aborts with StalledError and the run fails with it', async () => {
    const { clock, scheduler } = setup();
    scheduler.use(stallTimeout(1000));
    let signal: AbortSignal | undefined;
    const handle = await scheduler.schedule({
      work: (ctx) => {
        signal = ctx.signal;
        return new Promise(() => {}); // ignores its signal
      },
    });
    await clock.advance(999);
    expect(handle.state).toBe('running');
    await clock.advance(1);
    expect(handle.state).toBe('failed');
    await expect(handle.result).rejects.toBeInstanceOf(StalledError);
    await expect(handle.result).rejects.toMatchObject({ code: 'STALLED', stallTimeoutMs: 1000 });
    expect(signal!.aborted).toBe(true);
    expect(signal!.reason).toBeInstanceOf(StalledError);
  });

  it('lets a run live as long as its completed count moves', async () => {
    const { clock, scheduler } = setup();
    scheduler.use(stallTimeout(1000));
    const handle = await scheduler.schedule({ work: stepping(10, 900) });
    await clock.advance(9000);
    await expect(handle.result).resolves.toBe('finished');
    expect(clock.pendingTimers).toBe(0); // the window's timer is cleared with the run
  });

  it('does not count a progress report that repeats the same completed', async () => {
    const { clock, scheduler } = setup();
    scheduler.use(stallTimeout(1000));
    const handle = await scheduler.schedule({ work: stepping(10, 400, false) });
    // The first report (at 400) counts; the repeats at 800, 1200 do not: the window ends at 1400.
    await clock.advance(1399);
    expect(handle.state).toBe('running');
    await clock.advance(1);
    expect(handle.state).toBe('failed');
    await expect(handle.result).rejects.toBeInstanceOf(StalledError);
  });

  it('counts a check-in as a sign of life', async () => {
    const { clock, scheduler } = setup();
    scheduler.use(stallTimeout(1000));
    const handle = await scheduler.schedule({
      work: async (ctx) => {
        for (let i = 0; i < 5; i++) {
          await pause(ctx, 800);
          ctx.checkIn(`still here ${i}`);
        }
        return 'checked in';
      },
    });
    await clock.advance(4000);
    await expect(handle.result).resolves.toBe('checked in');
  });

  it('reads the stallTimeoutMs option (StallTimeoutMsKey) before the default, and leaves unwatched runs alone', async () => {
    const { clock, scheduler } = setup();
    scheduler.use(stallTimeout());
    const own = await scheduler.schedule({ stallTimeoutMs: 300, work: () => new Promise(() => {}) });
    const byKey = await scheduler.schedule({ values: [[StallTimeoutMsKey, 500]], work: () => new Promise(() => {}) });
    const unwatched = await scheduler.schedule({ work: (ctx) => pause(ctx, 10_000).then(() => 'slow but fine') });
    await clock.advance(300);
    expect([own.state, byKey.state]).toEqual(['failed', 'running']);
    await clock.advance(200);
    expect(byKey.state).toBe('failed');
    await expect(byKey.result).rejects.toMatchObject({ stallTimeoutMs: 500 });
    await clock.advance(9500);
    await expect(unwatched.result).resolves.toBe('slow but fine');
  });

  it('rejects invalid windows', async () => {
    expect(() => stallTimeout(0)).toThrow(InvalidInputError);
    expect(() => stallTimeout(2 ** 31)).toThrow(InvalidInputError);
    const { scheduler } = setup();
    scheduler.use(stallTimeout());
    await expect(scheduler.schedule({ work: () => {}, stallTimeoutMs: -1 })).rejects.toBeInstanceOf(InvalidInputError);
    await expect(scheduler.schedule({ work: () => {}, values: [[StallTimeoutMsKey, Number.NaN]] })).rejects.toThrow(/StallTimeoutMsKey/);
    expect(scheduler.pending).toBe(0);
  });

  it('a cancel is not a stall: the run ends cancelled and the signal carries the TaskCancelledError', async () => {
    const { clock, scheduler } = setup();
    scheduler.use(stallTimeout(1000));
    let signal: AbortSignal | undefined;
    const handle = await scheduler.schedule({
      work: (ctx) => {
        signal = ctx.signal;
        return untilAborted(ctx);
      },
    });
    await clock.advance(100);
    await handle.cancel();
    await clock.advance(2000);
    expect(handle.state).toBe('cancelled');
    expect(signal!.reason).toBeInstanceOf(TaskCancelledError);
  });

  it('StalledError is retryable: the retry policy applies (stallTimeout registered before retry)', async () => {
    expect(shouldRetry({ maxAttempts: 3, backoff: () => 10 }, 1, new StalledError(1000))).toEqual({ retry: true, delayMs: 10 });
    const { clock, scheduler } = setup();
    // The middleware registered later wraps the work from outside: retry sees what stallTimeout rejects with.
    scheduler.use(stallTimeout(1000), retry({ maxAttempts: 3, backoff: fixedBackoff(100) }));
    const attempts: number[] = [];
    const handle = await scheduler.schedule({
      work: (ctx) => {
        attempts.push(ctx.attempt);
        if (ctx.attempt === 1) return new Promise(() => {}); // hangs silently
        return 'second time lucky';
      },
    });
    await clock.advance(1000);
    expect(handle.state).toBe('scheduled');
    await clock.advance(100);
    await expect(handle.result).resolves.toBe('second time lucky');
    expect(attempts).toEqual([1, 2]);
  });

  it('fails with StalledError when attempts are spent', async () => {
    const { clock, scheduler } = setup();
    scheduler.use(stallTimeout(500), retry({ maxAttempts: 2, backoff: fixedBackoff(0) }));
    const handle = await scheduler.schedule({ work: (ctx) => untilAborted(ctx) });
    await clock.advance(500);
    expect(handle.state).toBe('running'); // the second attempt
    await clock.advance(500);
    expect(handle.state).toBe('failed');
    await expect(handle.result).rejects.toBeInstanceOf(StalledError);
  });
});

function permutations<T>(items: T[]): T[][] {
  if (items.length <= 1) return [items];
  return items.flatMap((item, i) => permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]));
}

describe('stallTimeout in any position', () => {
  const names = ['stall', 'timeout', 'user'] as const;
  for (const order of permutations([...names])) {
    it(`works in the order [${order.join(', ')}]`, async () => {
      const { clock, scheduler } = setup();
      let wrapped = 0;
      const user: Middleware = (next) => (ctx) => {
        const work = ctx.work!;
        return next(
          ctx.withValue(Tag, 'from-user').withWork((run: WorkContext) => {
            wrapped++;
            return work(run);
          }),
        );
      };
      const byName = { stall: stallTimeout(1000), timeout: timeout(5000), user };
      scheduler.use(...order.map((name) => byName[name]));

      // Moves every 900 ms for 4 s: lives through several stall windows, and sees the user's value.
      const moving = await scheduler.schedule({ work: async (ctx) => `${await stepping(4, 900)(ctx)}:${String(ctx.value(Tag))}` });
      // Silent and honouring its signal: stalled at 1000.
      let silentSignal: AbortSignal | undefined;
      const silent = await scheduler.schedule({
        work: (ctx) => {
          silentSignal = ctx.signal;
          return untilAborted(ctx);
        },
      });
      // Moving forever: the stall never fires, the timeout does at 5000.
      const endless = await scheduler.schedule({ work: stepping(1_000, 500) });

      await clock.advance(1000);
      expect(silent.state).toBe('failed');
      await expect(silent.result).rejects.toBeInstanceOf(StalledError);
      expect(silentSignal!.reason).toBeInstanceOf(StalledError);
      await clock.advance(2600);
      await expect(moving.result).resolves.toBe('finished:from-user');
      expect(endless.state).toBe('running');
      await clock.advance(1400);
      expect(endless.state).toBe('failed');
      await expect(endless.result).rejects.toBeInstanceOf(TimeoutError);
      expect(wrapped).toBe(3);
      expect(clock.pendingTimers).toBe(0);
    });
  }

  it('with retry registered before stallTimeout (so retry wraps the work inside it), the run fails with StalledError', async () => {
    const { clock, scheduler } = setup();
    scheduler.use(retry({ maxAttempts: 3, backoff: fixedBackoff(0) }), stallTimeout(1000));
    const handle = await scheduler.schedule({ work: (ctx) => untilAborted(ctx) });
    await clock.advance(1000);
    expect(handle.state).toBe('failed');
    await expect(handle.result).rejects.toBeInstanceOf(StalledError);
  });
});
