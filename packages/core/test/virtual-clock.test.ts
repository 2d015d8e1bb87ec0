import { InvalidInputError } from '@horae/core';
import { VirtualClock } from '@horae/core/testing';
import { describe, expect, it } from 'vitest';

describe('VirtualClock', () => {
  it('fires timers in due order at their time, and lets async chains settle between them', async () => {
    const clock = new VirtualClock({ now: 1_000_000 });
    const log: string[] = [];
    clock.setTimer(() => log.push(`b@${clock.now()}`), 20);
    clock.setTimer(() => {
      log.push(`a@${clock.now()}`);
      void Promise.resolve()
        .then(() => Promise.resolve())
        .then(() => log.push('a-async'));
    }, 10);
    const cancelled = clock.setTimer(() => log.push('never'), 15);
    cancelled.clear();
    expect(clock.pendingTimers).toBe(2);
    await clock.advance(15);
    expect(log).toEqual(['a@1000010', 'a-async']);
    expect(clock.now()).toBe(1_000_015);
    await clock.advance(5);
    expect(log).toEqual(['a@1000010', 'a-async', 'b@1000020']);
    expect(clock.pendingTimers).toBe(0);
  });

  it('jump() moves only the wall clock', async () => {
    const clock = new VirtualClock({ now: 0 });
    let fired = false;
    clock.setTimer(() => (fired = true), 100);
    clock.jump(-50_000);
    expect(clock.now()).toBe(-50_000);
    expect(clock.monotonic).toBe(0);
    await clock.advance(99);
    expect(fired).toBe(false);
    await clock.advance(1);
    expect(fired).toBe(true);
    expect(clock.now()).toBe(-49_900);
  });

  it('runAll() fires chains of timers and stops a timer that re-arms forever', async () => {
    const clock = new VirtualClock({ now: 0 });
    let count = 0;
    clock.setTimer(() => clock.setTimer(() => count++, 50), 50);
    expect(await clock.runAll()).toBe(2);
    expect([count, clock.now()]).toEqual([1, 100]);
    const forever = (): void => void clock.setTimer(forever, 1);
    forever();
    await expect(clock.runAll(100)).rejects.toBeInstanceOf(InvalidInputError);
    await expect(clock.advance(-1)).rejects.toBeInstanceOf(InvalidInputError);
  });
});
