import { describe, expect, it } from 'vitest';
import {
  CATCH_UP_POLICIES,
  DEFAULT_MAX_CATCH_UP,
  InvalidInputError,
  Recurrence,
  catchUpOccurrences,
  occurrenceKey,
  validateCatchUpPolicy,
  type CatchUpOptions,
  type CatchUpPolicy,
} from '@horae/core';

const at = (iso: string): Date => new Date(iso);
const isos = (dates: readonly Date[]): string[] => dates.map((d) => d.toISOString());
const hourly = new Recurrence({ cron: '0 * * * *' });

describe('catchUpOccurrences: nothing missed', () => {
  it.each(CATCH_UP_POLICIES)('with no downtime (%s), materializes nothing and schedules the next occurrence', (policy) => {
    const result = catchUpOccurrences({ recurrence: hourly, lastOccurrence: at('2026-01-01T10:00:00Z'), now: at('2026-01-01T10:59:59Z'), policy });
    expect(result).toEqual({ occurrences: [], missed: 0, countExact: true, skipped: 0, dropped: 0, next: at('2026-01-01T11:00:00Z') });
  });

  it.each(CATCH_UP_POLICIES)('with no instant to count from (lastOccurrence null, %s), nothing is missed', (policy) => {
    const result = catchUpOccurrences({ recurrence: hourly, lastOccurrence: null, now: at('2026-01-01T10:30:00Z'), policy });
    expect(result.occurrences).toEqual([]);
    expect(result.missed).toBe(0);
    expect(result.next).toEqual(at('2026-01-01T11:00:00Z'));
  });

  it('a lastOccurrence in the future (already materialized) misses nothing and the next one follows it', () => {
    const result = catchUpOccurrences({ recurrence: hourly, lastOccurrence: at('2026-01-01T11:00:00Z'), now: at('2026-01-01T10:30:00Z'), policy: 'all' });
    expect(result.occurrences).toEqual([]);
    expect(result.missed).toBe(0);
    expect(result.next).toEqual(at('2026-01-01T12:00:00Z'));
  });
});

describe('catchUpOccurrences: the three policies after a downtime', () => {
  // last materialized 10:00, down until 13:30: 11:00, 12:00 and 13:00 were missed
  const base = { recurrence: hourly, lastOccurrence: at('2026-01-01T10:00:00Z'), now: at('2026-01-01T13:30:00Z') };

  it('skip: runs none of the missed occurrences; the schedule resumes with the next one', () => {
    const result = catchUpOccurrences({ ...base, policy: 'skip' });
    expect(result).toEqual({ occurrences: [], missed: 3, countExact: true, skipped: 3, dropped: 0, next: at('2026-01-01T14:00:00Z') });
  });

  it('once: runs only the latest missed occurrence', () => {
    const result = catchUpOccurrences({ ...base, policy: 'once' });
    expect(isos(result.occurrences)).toEqual(['2026-01-01T13:00:00.000Z']);
    expect(result).toMatchObject({ missed: 3, skipped: 2, dropped: 0, next: at('2026-01-01T14:00:00Z') });
  });

  it('all: runs every missed occurrence, oldest first', () => {
    const result = catchUpOccurrences({ ...base, policy: 'all' });
    expect(isos(result.occurrences)).toEqual(['2026-01-01T11:00:00.000Z', '2026-01-01T12:00:00.000Z', '2026-01-01T13:00:00.000Z']);
    expect(result).toMatchObject({ missed: 3, skipped: 0, dropped: 0, countExact: true });
  });

  it('all: is bounded by maxCatchUp, keeping the most recent and reporting how many were dropped', () => {
    const result = catchUpOccurrences({ ...base, lastOccurrence: at('2025-12-22T13:00:00Z'), policy: 'all', maxCatchUp: 10 });
    // 10 days and 30 minutes of downtime: 240 missed hourly occurrences
    expect(result.missed).toBe(240);
    expect(result.occurrences).toHaveLength(10);
    expect(result.occurrences).toEqual(hourly.occurrences(at('2026-01-01T03:00:00Z'), at('2026-01-01T13:30:00Z')));
    expect(result.dropped).toBe(230);
    expect(result.skipped).toBe(0);
    expect(result.countExact).toBe(true);
  });

  it('all: uses 100 as the default bound', () => {
    expect(DEFAULT_MAX_CATCH_UP).toBe(100);
    const result = catchUpOccurrences({ ...base, lastOccurrence: at('2025-12-22T13:00:00Z'), policy: 'all' });
    expect(result.occurrences).toHaveLength(100);
    expect(result.dropped).toBe(140);
    expect(result.occurrences[99]).toEqual(at('2026-01-01T13:00:00Z'));
  });

  it('the counts add up: missed = skipped + dropped + missed ones returned', () => {
    for (const policy of CATCH_UP_POLICIES) {
      for (const maxCatchUp of [1, 2, 5]) {
        const r = catchUpOccurrences({ ...base, policy, maxCatchUp });
        expect(r.skipped + r.dropped + r.occurrences.length).toBe(r.missed);
        expect(r.occurrences.length).toBeLessThanOrEqual(maxCatchUp);
      }
    }
  });

  it('every returned occurrence is an occurrence of the recurrence in (lastOccurrence, now], so its key matches the normal path', () => {
    const nightly = new Recurrence({ cron: '30 2 * * *', timezone: 'America/New_York' });
    // down from before the spring-forward night until after it
    const result = catchUpOccurrences({ recurrence: nightly, lastOccurrence: at('2026-03-06T07:30:00Z'), now: at('2026-03-10T12:00:00Z'), policy: 'all' });
    expect(isos(result.occurrences)).toEqual(['2026-03-07T07:30:00.000Z', '2026-03-08T07:30:00.000Z', '2026-03-09T06:30:00.000Z', '2026-03-10T06:30:00.000Z']);
    const keys = result.occurrences.map((d) => occurrenceKey('nightly', d));
    const normal = nightly.occurrences(at('2026-03-06T07:30:00Z'), at('2026-03-10T12:00:00Z')).map((d) => occurrenceKey('nightly', d));
    expect(keys).toEqual(normal);
  });
});

describe('catchUpOccurrences: on time versus missed', () => {
  it('an occurrence exactly at now is on time: returned whatever the policy, and not counted as missed', () => {
    for (const policy of CATCH_UP_POLICIES) {
      const result = catchUpOccurrences({ recurrence: hourly, lastOccurrence: at('2026-01-01T10:00:00Z'), now: at('2026-01-01T12:00:00Z'), policy });
      expect(result.missed).toBe(1); // 11:00
      expect(result.occurrences[result.occurrences.length - 1]).toEqual(at('2026-01-01T12:00:00Z'));
      expect(result.next).toEqual(at('2026-01-01T13:00:00Z'));
    }
    const skip = catchUpOccurrences({ recurrence: hourly, lastOccurrence: at('2026-01-01T10:00:00Z'), now: at('2026-01-01T12:00:00Z'), policy: 'skip' });
    expect(isos(skip.occurrences)).toEqual(['2026-01-01T12:00:00.000Z']);
  });

  it('graceMs: an occurrence late by less than the grace still runs under skip; by more, it is missed', () => {
    const options = { recurrence: hourly, lastOccurrence: at('2026-01-01T10:00:00Z'), now: at('2026-01-01T11:00:05Z'), policy: 'skip' as const };
    expect(catchUpOccurrences(options)).toMatchObject({ occurrences: [], missed: 1, skipped: 1 });
    expect(catchUpOccurrences({ ...options, graceMs: 10_000 })).toMatchObject({ occurrences: [at('2026-01-01T11:00:00Z')], missed: 0, skipped: 0 });
    expect(catchUpOccurrences({ ...options, graceMs: 5_000 })).toMatchObject({ occurrences: [at('2026-01-01T11:00:00Z')], missed: 0 });
    expect(catchUpOccurrences({ ...options, graceMs: 4_999 })).toMatchObject({ occurrences: [], missed: 1 });
  });

  it('graceMs never reaches back before lastOccurrence', () => {
    const result = catchUpOccurrences({ recurrence: hourly, lastOccurrence: at('2026-01-01T10:00:00Z'), now: at('2026-01-01T11:30:00Z'), policy: 'all', graceMs: 86_400_000 });
    expect(isos(result.occurrences)).toEqual(['2026-01-01T11:00:00.000Z']);
    expect(result.missed).toBe(0);
  });
});

describe('catchUpOccurrences: huge downtimes do bounded work', () => {
  it('everyMs: counts arithmetically — 1.7 trillion missed occurrences are not iterated', () => {
    const everyMs = new Recurrence({ everyMs: 1 });
    const now = at('2026-01-01T00:00:00Z');
    const result = catchUpOccurrences({ recurrence: everyMs, lastOccurrence: new Date(0), now, policy: 'all', maxCatchUp: 100 });
    // (0, now) holds now - 1 missed occurrences; the one exactly at now is on time
    expect(result.missed).toBe(now.getTime() - 1);
    expect(result.countExact).toBe(true);
    expect(result.occurrences).toHaveLength(100);
    expect(result.occurrences[0]).toEqual(new Date(now.getTime() - 99));
    expect(result.occurrences[99]).toEqual(now);
    expect(result.dropped).toBe(now.getTime() - 1 - 99);
    expect(result.next).toEqual(new Date(now.getTime() + 1));
  });

  it('everyMs longer than 2^31-1 ms: a 40-day schedule down for a year', () => {
    const anchor = at('2025-01-01T00:00:00Z');
    const every40Days = new Recurrence({ everyMs: 40 * 86_400_000, anchor });
    const result = catchUpOccurrences({ recurrence: every40Days, lastOccurrence: anchor, now: at('2026-01-01T00:00:00Z'), policy: 'once' });
    expect(result.missed).toBe(9); // days 40, 80, ..., 360
    expect(result.occurrences).toEqual([new Date(anchor.getTime() + 360 * 86_400_000)]);
    expect(result.next).toEqual(new Date(anchor.getTime() + 400 * 86_400_000));
  });

  it('cron: a year of every-second occurrences gives the latest ones and a lower-bound count', () => {
    const everySecond = new Recurrence({ cron: '* * * * * *' });
    const now = at('2026-06-01T00:00:00.500Z');
    const all = catchUpOccurrences({ recurrence: everySecond, lastOccurrence: at('2025-06-01T00:00:00Z'), now, policy: 'all', maxCatchUp: 50 });
    expect(all.countExact).toBe(false);
    expect(all.missed).toBeGreaterThanOrEqual(1000);
    expect(all.occurrences).toHaveLength(50);
    expect(all.occurrences).toEqual(everySecond.occurrences(at('2026-05-31T23:59:10.500Z'), now));
    expect(all.dropped).toBe(all.missed - 50);
    const once = catchUpOccurrences({ recurrence: everySecond, lastOccurrence: at('2025-06-01T00:00:00Z'), now, policy: 'once' });
    expect(once.occurrences).toEqual([at('2026-06-01T00:00:00Z')]);
    const skip = catchUpOccurrences({ recurrence: everySecond, lastOccurrence: at('2025-06-01T00:00:00Z'), now, policy: 'skip' });
    expect(skip.occurrences).toEqual([]);
    expect(skip.next).toEqual(at('2026-06-01T00:00:01Z'));
  });
});

describe('catchUpOccurrences: validation', () => {
  const valid: CatchUpOptions = { recurrence: hourly, lastOccurrence: at('2026-01-01T10:00:00Z'), now: at('2026-01-01T13:30:00Z'), policy: 'all' };

  it.each<[string, Partial<Record<keyof CatchUpOptions, unknown>>]>([
    ['an unknown policy', { policy: 'some' }],
    ['maxCatchUp 0', { maxCatchUp: 0 }],
    ['maxCatchUp 2.5', { maxCatchUp: 2.5 }],
    ['a negative graceMs', { graceMs: -1 }],
    ['an invalid now', { now: new Date(Number.NaN) }],
    ['a lastOccurrence that is not a Date', { lastOccurrence: '2026-01-01' }],
    ['a recurrence that is not a Recurrence', { recurrence: { next: () => null } }],
  ])('rejects %s', (_label, patch) => {
    expect(() => catchUpOccurrences({ ...valid, ...patch } as CatchUpOptions)).toThrow(InvalidInputError);
  });

  it('validateCatchUpPolicy accepts skip / once / all only', () => {
    expect(CATCH_UP_POLICIES).toEqual(['skip', 'once', 'all']);
    for (const policy of CATCH_UP_POLICIES) expect(validateCatchUpPolicy(policy)).toBe<CatchUpPolicy>(policy);
    expect(() => validateCatchUpPolicy('latest')).toThrow(InvalidInputError);
    expect(() => validateCatchUpPolicy(null)).toThrow(InvalidInputError);
  });
});
