import { describe, expect, it } from 'vitest';
import { firstInOrder } from '../src/node/first-in-order.js';

describe('firstInOrder', () => {
  const byValue = (a: number, b: number): number => a - b;

  it('returns the first `limit` items in order, whatever order they come in', () => {
    const items = [9, 3, 7, 1, 8, 2, 6, 4, 5, 0];
    expect(firstInOrder(items, 4, byValue)).toEqual([0, 1, 2, 3]);
    expect(firstInOrder(items, 100, byValue)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(firstInOrder(items, 0, byValue)).toEqual([]);
    expect(firstInOrder([], 3, byValue)).toEqual([]);
  });

  it('agrees with a full sort on random input, and keeps equal items in their arrival order', () => {
    let seed = 42;
    const random = (): number => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
    const items = Array.from({ length: 2_000 }, (_, i) => ({ key: Math.floor(random() * 50), i }));
    const byKey = (a: { key: number }, b: { key: number }): number => a.key - b.key;
    for (const limit of [1, 7, 64, 500]) {
      expect(firstInOrder(items, limit, byKey)).toEqual([...items].sort(byKey).slice(0, limit));
    }
  });
});
