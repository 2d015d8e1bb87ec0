import { describe, expect, it } from 'vitest';
import { CHANGE_LOG_ID, releaseTicketUpdate, takeTicketPipeline, ticketOf, watermarkOf, watermarkPipeline } from '../src/change-log.js';

const live = (expiryMs: number) => ({
  $filter: { input: { $ifNull: ['$pending', []] }, cond: { $gt: [{ $add: ['$$this.at', { $literal: expiryMs }] }, '$$NOW'] } },
});

describe('change log', () => {
  it('taking a ticket increments the sequence and records it as pending in one update, dropping expired tickets', () => {
    expect(takeTicketPipeline(60_000)).toEqual([
      { $set: { seq: { $add: [{ $ifNull: ['$seq', 0] }, 1] } } },
      { $set: { last: { seq: '$seq', at: '$$NOW' } } },
      { $set: { pending: { $concatArrays: [live(60_000), [{ seq: '$seq', at: '$$NOW' }]] } } },
    ]);
  });

  it('releasing a ticket pulls it from the pending set', () => {
    expect(releaseTicketUpdate(7)).toEqual({ $pull: { pending: { seq: 7 } } });
  });

  it('the watermark is read with the server clock deciding expiry', () => {
    expect(watermarkPipeline(1_000)).toEqual([
      { $match: { _id: CHANGE_LOG_ID } },
      { $project: { _id: 0, seq: { $ifNull: ['$seq', 0] }, lowestPending: { $min: { $map: { input: live(1_000), in: '$$this.seq' } } } } },
    ]);
  });

  it('the watermark stops just below the lowest pending ticket', () => {
    expect(watermarkOf(undefined)).toBe(0);
    expect(watermarkOf({ seq: 10, lowestPending: null })).toBe(10);
    expect(watermarkOf({ seq: 10 })).toBe(10);
    expect(watermarkOf({ seq: 10, lowestPending: 7 })).toBe(6);
    expect(watermarkOf({ seq: 10, lowestPending: 1 })).toBe(0);
    // A pending ticket is never above the sequence; if the data says so, the lower bound still wins.
    expect(watermarkOf({ seq: 3, lowestPending: 9 })).toBe(3);
  });

  it("a ticket's deadline is ttl after the server time it was taken at", () => {
    const at = new Date('2030-01-01T00:00:00.000Z');
    expect(ticketOf({ last: { seq: 5, at } }, 10_000)).toEqual({ seq: 5, deadline: new Date('2030-01-01T00:00:10.000Z') });
  });
});
