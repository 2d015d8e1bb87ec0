import { InvalidInputError } from '@horae/core';
import { describe, expect, it } from 'vitest';
import { START_POSITION, decodeChangeCursor, decodePageCursor, encodeChangeCursor, encodePageCursor } from '../src/cursors.js';

describe('change cursors', () => {
  it('null is the start of the log', () => {
    expect(decodeChangeCursor(null)).toEqual(START_POSITION);
    expect(START_POSITION).toEqual({ seq: 0, id: null });
  });

  it('round-trip a sequence, with and without a task id (ids may hold slashes)', () => {
    for (const position of [{ seq: 0, id: null }, { seq: 12, id: null }, { seq: 12, id: 'a/b/c' }, { seq: 2 ** 52, id: 'ü' }]) {
      expect(decodeChangeCursor(encodeChangeCursor(position))).toEqual(position);
    }
    expect(encodeChangeCursor({ seq: 12, id: 'x' })).toBe('12/x');
    expect(encodeChangeCursor({ seq: 12, id: null })).toBe('12');
  });

  it('refuses cursors this adapter did not make', () => {
    for (const bad of ['', 'abc', '-1', '1.5', '12/', '99999999999999999', '/x']) {
      expect(() => decodeChangeCursor(bad), bad).toThrow(InvalidInputError);
    }
    expect(() => decodeChangeCursor(7 as unknown as string)).toThrow(InvalidInputError);
  });
});

describe('page cursors', () => {
  it('round-trip a date and an id', () => {
    const position = { at: new Date('2030-01-02T03:04:05.678Z'), id: 'id/with/slash' };
    expect(encodePageCursor(position)).toBe(`${position.at.getTime()}/id/with/slash`);
    expect(decodePageCursor(encodePageCursor(position))).toEqual(position);
    expect(decodePageCursor(encodePageCursor({ at: new Date(-5), id: 'x' }))).toEqual({ at: new Date(-5), id: 'x' });
  });

  it('refuses cursors this adapter did not make', () => {
    for (const bad of ['', 'x/y', '12', '12/', '1.5/x']) expect(() => decodePageCursor(bad), bad).toThrow(InvalidInputError);
  });
});
