import { VirtualClock } from '@horae/core/testing';
import { MemoryRepository, createHorae, type Horae, type HoraeOptions, type StatusChange, type WorkRegistry } from '@horae/storage';

/** A fake status hook that records every change it is handed. */
export interface CapturingHook {
  changes: StatusChange[];
  onTransition(change: StatusChange): void;
  /** The changes of one task, as `from→to` strings. */
  of(taskId: string): string[];
}

export function capturingHook(): CapturingHook {
  const changes: StatusChange[] = [];
  return {
    changes,
    onTransition: (change) => void changes.push(change),
    of: (taskId) => changes.filter((c) => c.taskId === taskId).map((c) => `${c.from ?? 'null'}→${c.to}`),
  };
}

const clocks = new WeakMap<Horae, VirtualClock>();

/**
 * Stops every Horae, advancing its virtual clock while it stops (the stop deadline of work still running is a
 * timer on that clock).
 */
export async function stopAll(list: readonly Horae[]): Promise<void> {
  for (const horae of list) {
    let stopped = false;
    const stopping = horae.stop({ timeoutMs: 0, hookGraceMs: 0 }).finally(() => {
      stopped = true;
    });
    const clock = clocks.get(horae);
    for (let i = 0; i < 100 && !stopped && clock !== undefined; i++) await clock.advance(100);
    await stopping;
  }
}

/** A clock at a round date and a MemoryRepository on it. */
export function world(): { clock: VirtualClock; repo: MemoryRepository } {
  const clock = new VirtualClock({ now: Date.parse('2026-01-01T00:00:00.000Z') });
  return { clock, repo: new MemoryRepository({ clock }) };
}

/** A Horae on a virtual clock; the scheduler's wall-clock check is long so that advancing time stays cheap. */
export function horaeOn(
  clock: VirtualClock,
  repository: MemoryRepository,
  registry: WorkRegistry,
  options: Partial<HoraeOptions> = {},
): Horae {
  const horae = createHorae({
    repository,
    registry,
    clock,
    syncIntervalMs: 1000,
    ...options,
    schedulerOptions: { wallClockCheckMs: 3_600_000, stopGraceMs: 100, ...options.schedulerOptions },
  });
  clocks.set(horae, clock);
  return horae;
}
