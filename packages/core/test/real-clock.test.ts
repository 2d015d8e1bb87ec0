import { stat } from 'node:fs';
import { realClock } from '@horae/core';
import { describe, expect, it } from 'vitest';

/** Runs `body` inside an I/O callback, where Node orders immediates before timers deterministically. */
function inIoCallback(body: (done: () => void) => void): Promise<void> {
  return new Promise((resolve) => stat('.', () => body(resolve)));
}

describe('RealClock', () => {
  it('a 0 ms (or negative) timer fires in the check phase of this turn, before a setTimeout(0)', async () => {
    const order: string[] = [];
    await inIoCallback((done) => {
      setTimeout(() => {
        order.push('setTimeout(0)');
        done();
      }, 0);
      realClock.setTimer(() => order.push('clock 0'), 0);
      realClock.setTimer(() => order.push('clock -5'), -5);
    });
    expect(order).toEqual(['clock 0', 'clock -5', 'setTimeout(0)']);
  });

  it('clear() disarms a 0 ms timer: it never fires, even in the same check phase', async () => {
    const fired: string[] = [];
    await inIoCallback((done) => {
      realClock.setTimer(() => fired.push('cleared'), 0).clear();
      realClock.setTimer(() => fired.push('kept'), 0);
      // Immediates run in order: this one runs after both timers would have.
      setImmediate(done);
    });
    expect(fired).toEqual(['kept']);
  });
});
