import { describe, expect, it } from 'vitest';
import { Batcher } from '../src/batcher.js';

/** A batcher whose batches are answered only when the test says so. */
function gatedBatcher(holdWhileInFlight: boolean): { batcher: Batcher<number, number>; batches: number[][]; answer(): void } {
  const batches: number[][] = [];
  const gates: (() => void)[] = [];
  const batcher = new Batcher<number, number>({
    run: async (items) => {
      batches.push([...items]);
      await new Promise<void>((resolve) => gates.push(resolve));
      return items.map((item) => item * 10);
    },
    identityOf: (item) => String(item),
    maxWeight: 100,
    holdWhileInFlight,
  });
  return { batcher, batches, answer: () => gates.shift()?.() };
}

const nextTick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('Batcher', () => {
  it('with holdWhileInFlight, the items of later ticks wait for the batch in flight and then go as one batch', async () => {
    const { batcher, batches, answer } = gatedBatcher(true);
    const results = [batcher.add(1), batcher.add(2)];
    await nextTick();
    expect(batches).toEqual([[1, 2]]);
    for (const item of [3, 4, 5]) {
      results.push(batcher.add(item));
      await nextTick();
    }
    expect(batches).toEqual([[1, 2]]);
    answer();
    await expect(Promise.all(results.slice(0, 2))).resolves.toEqual([10, 20]);
    await nextTick();
    expect(batches).toEqual([
      [1, 2],
      [3, 4, 5],
    ]);
    answer();
    await expect(Promise.all(results)).resolves.toEqual([10, 20, 30, 40, 50]);
  });

  it('without it, every tick sends its own batch beside the ones in flight', async () => {
    const { batcher, batches, answer } = gatedBatcher(false);
    const results = [batcher.add(1)];
    await nextTick();
    results.push(batcher.add(2));
    await nextTick();
    expect(batches).toEqual([[1], [2]]);
    answer();
    answer();
    await expect(Promise.all(results)).resolves.toEqual([10, 20]);
  });

  it('two items with one identity never share a batch, held or not', async () => {
    const { batcher, batches, answer } = gatedBatcher(true);
    const results = [batcher.add(7), batcher.add(7), batcher.add(8)];
    await nextTick();
    expect(batches).toEqual([[7, 8], [7]]);
    answer();
    answer();
    await expect(Promise.all(results)).resolves.toEqual([70, 70, 80]);
  });

  it('drain waits for the held items too', async () => {
    const { batcher, batches, answer } = gatedBatcher(true);
    const first = batcher.add(1);
    await nextTick();
    const held = batcher.add(2);
    const drained = batcher.drain();
    answer();
    await first;
    // drain sends what was held at once.
    await nextTick();
    answer();
    await drained;
    await expect(held).resolves.toBe(20);
    expect(batches.flat()).toEqual([1, 2]);
  });
});
