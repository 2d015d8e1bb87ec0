import { Scheduler, type SchedulerOptions, type WorkContext } from '@horae/core';
import { VirtualClock } from '@horae/core/testing';

/** A started scheduler on a fresh VirtualClock. */
export function setup(options: SchedulerOptions = {}): { clock: VirtualClock; scheduler: Scheduler } {
  const clock = new VirtualClock();
  const scheduler = new Scheduler({ clock, ...options });
  scheduler.start();
  return { clock, scheduler };
}

/** A work that never settles until its signal aborts, then rejects with the signal's reason. */
export function untilAborted(ctx: WorkContext): Promise<never> {
  return new Promise((_, reject) => {
    ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason as Error), { once: true });
  });
}

/** A work that takes `ms` of the scheduler's clock. */
export function sleepWork(ms: number, value: unknown = undefined) {
  return (ctx: WorkContext): Promise<unknown> =>
    new Promise((resolve) => {
      ctx.clock!.setTimer(() => resolve(value), ms);
    });
}
