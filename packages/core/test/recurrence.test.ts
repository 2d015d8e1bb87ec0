import { describe, expect, it } from 'vitest';
import {
  DEFAULT_TIMEZONE,
  HoraeError,
  InvalidInputError,
  OVERLAP_POLICIES,
  Recurrence,
  occurrenceKey,
  validateOverlapPolicy,
  validateTimezone,
  type RecurrenceSpec,
} from '@horae/core';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const at = (iso: string): Date => new Date(iso);
const isos = (dates: readonly Date[]): string[] => dates.map((d) => d.toISOString());

/** The wall-clock time of an instant in a zone, `YYYY-MM-DD HH:mm`, read through Intl (independent of croner). */
function wallClock(date: Date, timeZone: string): string {
  const parts = new Intl.DateTimeFormat('en-CA', {
    timeZone,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    hourCycle: 'h23',
  }).formatToParts(date);
  const get = (type: string): string => parts.find((p) => p.type === type)?.value ?? '??';
  return `${get('year')}-${get('month')}-${get('day')} ${get('hour')}:${get('minute')}`;
}

/** Asserts that a list of instants is strictly ascending (so it holds no duplicates). */
function expectStrictlyAscending(dates: readonly Date[]): void {
  for (let i = 1; i < dates.length; i++) expect(dates[i]!.getTime()).toBeGreaterThan(dates[i - 1]!.getTime());
}

/** Calls `fn` and returns what it threw, failing the test when it did not throw. */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  expect.fail('expected the call to throw');
}

describe('Recurrence: construction and validation', () => {
  it('accepts 5-field, 6-field (seconds) and 7-field (year) cron expressions and nicknames', () => {
    const from = at('2026-01-01T00:00:00Z');
    expect(new Recurrence({ cron: '30 2 * * *' }).next(from)).toEqual(at('2026-01-01T02:30:00Z'));
    expect(new Recurrence({ cron: '15 30 2 * * *' }).next(from)).toEqual(at('2026-01-01T02:30:15Z'));
    expect(new Recurrence({ cron: '0 0 12 1 6 * 2027' }).next(from)).toEqual(at('2027-06-01T12:00:00Z'));
    expect(new Recurrence({ cron: '@daily' }).next(from)).toEqual(at('2026-01-02T00:00:00Z'));
    expect(new Recurrence({ cron: '0 9 * * MON' }).next(from)).toEqual(at('2026-01-05T09:00:00Z'));
  });

  it.each(['x', '* * *', '61 * * * *', '* * * * * * * *', 'L * * * *', '0 0 32 * *', '   '])(
    'rejects the malformed cron %j with an InvalidInputError whose cause is croner’s error',
    (cron) => {
      const error = thrown(() => new Recurrence({ cron }));
      expect(error).toBeInstanceOf(InvalidInputError);
      expect(error).toBeInstanceOf(HoraeError);
      expect((error as InvalidInputError).code).toBe('INVALID_INPUT');
      expect((error as InvalidInputError).message).toContain('cron');
      if (cron.trim() !== '') expect((error as InvalidInputError).cause).toBeInstanceOf(Error);
    },
  );

  it('rejects a cron expression that parses but can never fire', () => {
    const error = thrown(() => new Recurrence({ cron: '0 0 30 2 *' }));
    expect(error).toBeInstanceOf(InvalidInputError);
    expect((error as Error).message).toMatch(/matches no date/);
  });

  it('rejects an unknown timezone, keeping Intl’s error as cause', () => {
    const error = thrown(() => new Recurrence({ cron: '0 * * * *', timezone: 'Mars/Olympus_Mons' }));
    expect(error).toBeInstanceOf(InvalidInputError);
    expect((error as InvalidInputError).cause).toBeInstanceOf(RangeError);
    expect(() => new Recurrence({ cron: '0 * * * *', timezone: '' })).toThrow(InvalidInputError);
  });

  it('reads cron in UTC when no timezone is given, whatever the host zone', () => {
    const daily = new Recurrence({ cron: '0 0 * * *' });
    expect(daily.spec).toEqual({ cron: '0 0 * * *', timezone: DEFAULT_TIMEZONE });
    expect(DEFAULT_TIMEZONE).toBe('UTC');
    expect(daily.next(at('2026-06-01T12:00:00Z'))).toEqual(at('2026-06-02T00:00:00Z'));
    expect(daily.kind).toBe('cron');
    // aliases of UTC keep the name their author wrote and compute the same dates
    const etc = new Recurrence({ cron: '0 0 * * *', timezone: 'Etc/UTC' });
    expect(etc.spec).toEqual({ cron: '0 0 * * *', timezone: 'Etc/UTC' });
    const march = etc.occurrences(at('2026-03-01T00:00:00Z'), at('2026-04-01T00:00:00Z'));
    expect(march).toHaveLength(31); // no DST in UTC: every day of March at 00:00Z, the last one on April 1st
    expect(march.every((d) => d.getUTCHours() === 0 && d.getUTCMinutes() === 0)).toBe(true);
  });

  it('reads cron wall-clock times in the given IANA zone', () => {
    expect(new Recurrence({ cron: '0 9 * * *', timezone: 'Asia/Kolkata' }).next(at('2026-01-01T00:00:00Z'))).toEqual(
      at('2026-01-01T03:30:00Z'),
    );
    expect(new Recurrence({ cron: '0 9 * * *', timezone: 'America/New_York' }).next(at('2026-07-01T00:00:00Z'))).toEqual(
      at('2026-07-01T13:00:00Z'),
    );
  });

  it.each<[string, unknown]>([
    ['both cron and everyMs', { cron: '* * * * *', everyMs: 1000 }],
    ['neither', {}],
    ['null', null],
    ['a timezone on an interval', { everyMs: 1000, timezone: 'UTC' }],
    ['an anchor on cron', { cron: '* * * * *', anchor: new Date(0) }],
    ['everyMs 0', { everyMs: 0 }],
    ['everyMs -5', { everyMs: -5 }],
    ['everyMs 1.5', { everyMs: 1.5 }],
    ['everyMs NaN', { everyMs: Number.NaN }],
    ['everyMs Infinity', { everyMs: Number.POSITIVE_INFINITY }],
    ['everyMs as a string', { everyMs: '1000' }],
    ['an invalid anchor', { everyMs: 1000, anchor: new Date('nope') }],
    ['an anchor that is not a Date', { everyMs: 1000, anchor: '2026-01-01' }],
    ['a cron that is not a string', { cron: 5 }],
  ])('rejects a spec with %s', (_label, spec) => {
    expect(() => new Recurrence(spec as RecurrenceSpec)).toThrow(InvalidInputError);
  });

  it('validates the dates and counts passed to its methods', () => {
    const r = new Recurrence({ cron: '0 * * * *' });
    expect(() => r.next(new Date(Number.NaN))).toThrow(InvalidInputError);
    expect(() => r.next('2026-01-01' as unknown as Date)).toThrow(InvalidInputError);
    expect(() => r.occurrences(at('2026-01-01T00:00:00Z'), at('2026-01-02T00:00:00Z'), -1)).toThrow(InvalidInputError);
    expect(() => r.occurrences(at('2026-01-01T00:00:00Z'), at('2026-01-02T00:00:00Z'), 1.5)).toThrow(InvalidInputError);
    expect(() => r.latest(at('2026-01-01T00:00:00Z'), new Date(Number.NaN), 1)).toThrow(InvalidInputError);
    expect(() => r.countBetween(at('2026-01-01T00:00:00Z'), at('2026-01-02T00:00:00Z'), -1)).toThrow(InvalidInputError);
  });
});

describe('Recurrence: cron next() and occurrences()', () => {
  it('next() is strictly after its argument, to the millisecond', () => {
    const hourly = new Recurrence({ cron: '0 * * * *' });
    expect(hourly.next(at('2026-01-01T10:00:00.000Z'))).toEqual(at('2026-01-01T11:00:00Z'));
    expect(hourly.next(at('2026-01-01T09:59:59.999Z'))).toEqual(at('2026-01-01T10:00:00Z'));
    expect(hourly.next(at('2026-01-01T10:00:00.001Z'))).toEqual(at('2026-01-01T11:00:00Z'));
    const everySecond = new Recurrence({ cron: '* * * * * *' });
    expect(everySecond.next(at('2026-01-01T10:00:00.400Z'))).toEqual(at('2026-01-01T10:00:01Z'));
  });

  it('supports L, W and # where croner allows them', () => {
    const from = at('2026-02-01T00:00:00Z');
    expect(new Recurrence({ cron: '0 0 L * *' }).next(from)).toEqual(at('2026-02-28T00:00:00Z'));
    expect(new Recurrence({ cron: '0 0 L * *' }).next(at('2028-02-01T00:00:00Z'))).toEqual(at('2028-02-29T00:00:00Z'));
    // 2026-03-15 is a Sunday: the nearest weekday is Monday the 16th
    expect(new Recurrence({ cron: '0 0 15W * *' }).next(at('2026-03-01T00:00:00Z'))).toEqual(at('2026-03-16T00:00:00Z'));
    expect(new Recurrence({ cron: '0 0 * * 5#L' }).next(from)).toEqual(at('2026-02-27T00:00:00Z'));
    expect(new Recurrence({ cron: '0 0 * * MON#2' }).next(from)).toEqual(at('2026-02-09T00:00:00Z'));
  });

  it('next() returns null once a year-bounded expression is exhausted', () => {
    const once = new Recurrence({ cron: '0 0 0 1 1 * 2020' });
    expect(once.next(at('2019-06-01T00:00:00Z'))).toEqual(at('2020-01-01T00:00:00Z'));
    expect(once.next(at('2026-01-01T00:00:00Z'))).toBeNull();
    expect(once.occurrences(at('2026-01-01T00:00:00Z'), at('2030-01-01T00:00:00Z'))).toEqual([]);
  });

  it('occurrences() covers (from, to]: from excluded, to included', () => {
    const hourly = new Recurrence({ cron: '0 * * * *' });
    expect(isos(hourly.occurrences(at('2026-01-01T10:00:00Z'), at('2026-01-01T13:00:00Z'), 10))).toEqual([
      '2026-01-01T11:00:00.000Z',
      '2026-01-01T12:00:00.000Z',
      '2026-01-01T13:00:00.000Z',
    ]);
  });

  it('occurrences() keeps the earliest `limit`, and is empty for an empty window or limit 0', () => {
    const hourly = new Recurrence({ cron: '0 * * * *' });
    const from = at('2026-01-01T00:00:00Z');
    const to = at('2026-01-02T00:00:00Z');
    expect(isos(hourly.occurrences(from, to, 2))).toEqual(['2026-01-01T01:00:00.000Z', '2026-01-01T02:00:00.000Z']);
    expect(hourly.occurrences(from, to)).toHaveLength(24);
    expect(hourly.occurrences(from, to, 0)).toEqual([]);
    expect(hourly.occurrences(to, from, 10)).toEqual([]);
    expect(hourly.occurrences(from, from, 10)).toEqual([]);
  });

  it('chaining next() gives the same list as occurrences()', () => {
    const r = new Recurrence({ cron: '*/20 1-3 * * *', timezone: 'Europe/Berlin' });
    const from = at('2026-03-28T00:00:00Z');
    const list = r.occurrences(from, at('2026-03-31T00:00:00Z'), 100);
    const chained: Date[] = [];
    let cursor = from;
    for (;;) {
      const next = r.next(cursor);
      if (next === null || next > at('2026-03-31T00:00:00Z')) break;
      chained.push(next);
      cursor = next;
    }
    expect(chained).toEqual(list);
    expect(list.length).toBeGreaterThan(20);
  });
});

describe('Recurrence: daylight saving time', () => {
  /** The occurrences of a daily job during the local days `firstDay`..`lastDay`, as local wall-clock strings. */
  function localRuns(cron: string, timeZone: string, fromIso: string, toIso: string): string[] {
    return new Recurrence({ cron, timezone: timeZone }).occurrences(at(fromIso), at(toIso), 100).map((d) => wallClock(d, timeZone));
  }

  describe('America/New_York (spring forward 2026-03-08 02:00 → 03:00, fall back 2026-11-01 02:00 → 01:00)', () => {
    const zone = 'America/New_York';

    it('a 02:30 job runs once on the spring-forward day, at 03:30 EDT (02:30 does not exist)', () => {
      const r = new Recurrence({ cron: '30 2 * * *', timezone: zone });
      const runs = r.occurrences(at('2026-03-07T00:00:00Z'), at('2026-03-10T12:00:00Z'), 100);
      expect(isos(runs)).toEqual(['2026-03-07T07:30:00.000Z', '2026-03-08T07:30:00.000Z', '2026-03-09T06:30:00.000Z', '2026-03-10T06:30:00.000Z']);
      expect(runs.map((d) => wallClock(d, zone))).toEqual(['2026-03-07 02:30', '2026-03-08 03:30', '2026-03-09 02:30', '2026-03-10 02:30']);
    });

    it('a 02:30 job runs once on the fall-back day, not twice', () => {
      const runs = localRuns('30 2 * * *', zone, '2026-10-31T00:00:00Z', '2026-11-02T12:00:00Z');
      expect(runs).toEqual(['2026-10-31 02:30', '2026-11-01 02:30', '2026-11-02 02:30']);
      const r = new Recurrence({ cron: '30 2 * * *', timezone: zone });
      expect(r.next(at('2026-11-01T04:00:00Z'))).toEqual(at('2026-11-01T07:30:00Z'));
      expect(r.next(at('2026-11-01T07:30:00Z'))).toEqual(at('2026-11-02T07:30:00Z'));
    });

    it('a 01:30 job (the ambiguous hour) runs once on the fall-back day, at its first occurrence (EDT)', () => {
      const r = new Recurrence({ cron: '30 1 * * *', timezone: zone });
      const runs = r.occurrences(at('2026-11-01T04:00:00Z'), at('2026-11-02T05:00:00Z'), 100);
      expect(isos(runs)).toEqual(['2026-11-01T05:30:00.000Z']);
      // the second 01:30 (EST, 06:30Z) is not an occurrence
      expect(r.next(at('2026-11-01T05:30:00Z'))).toEqual(at('2026-11-02T06:30:00Z'));
      expect(r.next(at('2026-11-01T06:00:00Z'))).toEqual(at('2026-11-02T06:30:00Z'));
    });

    it('an hourly job has 23 distinct occurrences on the spring-forward day: one per existing local hour', () => {
      const runs = new Recurrence({ cron: '0 * * * *', timezone: zone }).occurrences(
        at('2026-03-08T05:00:00Z'), // local midnight, excluded
        at('2026-03-09T04:00:00Z'), // next local midnight, included
        100,
      );
      expect(runs).toHaveLength(23);
      expectStrictlyAscending(runs);
      const hours = runs.map((d) => wallClock(d, zone).slice(11, 13));
      expect(new Set(hours).size).toBe(23);
      expect(hours).not.toContain('02');
      expect(wallClock(runs[runs.length - 1]!, zone)).toBe('2026-03-09 00:00');
      // no two occurrences closer than an hour (02:00 folds into 03:00 EDT instead of duplicating it)
      for (let i = 1; i < runs.length; i++) expect(runs[i]!.getTime() - runs[i - 1]!.getTime()).toBe(HOUR);
    });

    it('an hourly job has 24 distinct occurrences on the fall-back day: the repeated 01:00 runs once', () => {
      const runs = new Recurrence({ cron: '0 * * * *', timezone: zone }).occurrences(
        at('2026-11-01T04:00:00Z'),
        at('2026-11-02T05:00:00Z'),
        100,
      );
      expect(runs).toHaveLength(24);
      expectStrictlyAscending(runs);
      const hours = runs.map((d) => wallClock(d, zone).slice(11, 13));
      expect(new Set(hours).size).toBe(24);
      expect(runs.filter((d) => wallClock(d, zone).endsWith('01:00')).map((d) => d.toISOString())).toEqual(['2026-11-01T05:00:00.000Z']);
    });

    it('a quarter-hourly job never runs twice at one instant across both DST days', () => {
      const r = new Recurrence({ cron: '*/15 * * * *', timezone: zone });
      const spring = r.occurrences(at('2026-03-08T05:00:00Z'), at('2026-03-09T04:00:00Z'), 200);
      const fall = r.occurrences(at('2026-11-01T04:00:00Z'), at('2026-11-02T05:00:00Z'), 200);
      expectStrictlyAscending(spring);
      expectStrictlyAscending(fall);
      expect(spring).toHaveLength(92); // 23 local hours × 4
      expect(fall).toHaveLength(96); // 24 distinct local hours × 4
    });
  });

  describe('Europe/Berlin (spring forward 2026-03-29 02:00 → 03:00, fall back 2026-10-25 03:00 → 02:00)', () => {
    const zone = 'Europe/Berlin';

    it('a 02:30 job runs once on the spring-forward day, at 03:30 CEST', () => {
      const r = new Recurrence({ cron: '30 2 * * *', timezone: zone });
      const runs = r.occurrences(at('2026-03-28T00:00:00Z'), at('2026-03-30T12:00:00Z'), 100);
      expect(isos(runs)).toEqual(['2026-03-28T01:30:00.000Z', '2026-03-29T01:30:00.000Z', '2026-03-30T00:30:00.000Z']);
      expect(runs.map((d) => wallClock(d, zone))).toEqual(['2026-03-28 02:30', '2026-03-29 03:30', '2026-03-30 02:30']);
    });

    it('a 02:30 job (the ambiguous hour in Berlin) runs once on the fall-back day, at its first occurrence (CEST)', () => {
      const r = new Recurrence({ cron: '30 2 * * *', timezone: zone });
      const runs = r.occurrences(at('2026-10-24T12:00:00Z'), at('2026-10-26T12:00:00Z'), 100);
      expect(isos(runs)).toEqual(['2026-10-25T00:30:00.000Z', '2026-10-26T01:30:00.000Z']);
      // the second 02:30 (CET, 01:30Z) is not an occurrence
      expect(r.next(at('2026-10-25T01:00:00Z'))).toEqual(at('2026-10-26T01:30:00Z'));
    });

    it('the same job written with a seconds field behaves the same', () => {
      const five = new Recurrence({ cron: '30 2 * * *', timezone: zone });
      const six = new Recurrence({ cron: '0 30 2 * * *', timezone: zone });
      const from = at('2026-03-27T00:00:00Z');
      const to = at('2026-10-27T00:00:00Z');
      expect(six.occurrences(from, to, 400)).toEqual(five.occurrences(from, to, 400));
    });

    it('hourly: 23 occurrences on the spring-forward day, 24 on the fall-back day, no duplicates', () => {
      const r = new Recurrence({ cron: '0 * * * *', timezone: zone });
      const spring = r.occurrences(at('2026-03-28T23:00:00Z'), at('2026-03-29T22:00:00Z'), 100);
      const fall = r.occurrences(at('2026-10-24T22:00:00Z'), at('2026-10-25T23:00:00Z'), 100);
      expect(spring).toHaveLength(23);
      expect(fall).toHaveLength(24);
      expectStrictlyAscending(spring);
      expectStrictlyAscending(fall);
      expect(new Set(fall.map((d) => wallClock(d, zone))).size).toBe(24);
    });
  });
  it('asked from just after the gap, a 02:30 job still has that day’s shifted run ahead (03:30 EDT)', () => {
    const r = new Recurrence({ cron: '30 2 * * *', timezone: 'America/New_York' });
    // 07:10Z is 03:10 EDT, after the gap but before the shifted occurrence
    expect(r.next(at('2026-03-08T07:10:00Z'))).toEqual(at('2026-03-08T07:30:00Z'));
    expect(r.next(at('2026-03-08T07:30:00Z'))).toEqual(at('2026-03-09T06:30:00Z'));
    // a weekly Sunday 02:30 job asked days ahead lands on the shifted instant too
    expect(new Recurrence({ cron: '30 2 * * SUN', timezone: 'America/New_York' }).next(at('2026-03-02T00:00:00Z'))).toEqual(
      at('2026-03-08T07:30:00Z'),
    );
  });

  it('a per-second job across the fall-back hour runs each wall-clock second once: 7200 runs in 3 real hours', () => {
    const r = new Recurrence({ cron: '* * * * * *', timezone: 'America/New_York' });
    const runs = r.occurrences(at('2026-11-01T04:59:59Z'), at('2026-11-01T07:59:59Z'), 20_000);
    expect(runs).toHaveLength(7200);
    expectStrictlyAscending(runs);
    // nothing during the second pass of 01:00–02:00 (06:00Z–07:00Z)
    expect(runs.some((d) => d >= at('2026-11-01T06:00:00Z') && d < at('2026-11-01T07:00:00Z'))).toBe(false);
    // and asked from inside the second pass, next() jumps to its end at once
    expect(r.next(at('2026-11-01T06:00:00Z'))).toEqual(at('2026-11-01T07:00:00Z'));
  });

  describe('next() from any instant agrees with the chained list, also from inside the repeated hour', () => {
    // croner alone answers a past instant when asked from the second pass of a fall-back overlap (and would
    // answer it forever); next() must still return the first later occurrence of the chained list.
    it.each<[string, string, string, string]>([
      ['30 1 * * *', 'America/New_York', '2026-10-31T22:00:00Z', '2026-11-02T12:00:00Z'],
      ['0 * * * *', 'America/New_York', '2026-11-01T00:00:00Z', '2026-11-01T12:00:00Z'],
      ['30,50 1,2 * * *', 'America/New_York', '2026-11-01T00:00:00Z', '2026-11-02T12:00:00Z'],
      ['*/15 * * * *', 'America/New_York', '2026-03-08T04:00:00Z', '2026-03-08T10:00:00Z'],
      ['30 2 * * *', 'Europe/Berlin', '2026-10-24T20:00:00Z', '2026-10-26T04:00:00Z'],
      ['*/20 * * * * *', 'Europe/Berlin', '2026-10-24T23:30:00Z', '2026-10-25T02:30:00Z'],
      ['30 1 * * *', 'Europe/London', '2026-10-24T20:00:00Z', '2026-10-26T04:00:00Z'],
      ['*/30 * * * *', 'Europe/London', '2026-03-28T20:00:00Z', '2026-03-29T06:00:00Z'],
      // southern hemisphere: Sydney falls back on 2026-04-05 03:00 → 02:00, springs forward on 2026-10-04
      ['30 2 * * *', 'Australia/Sydney', '2026-04-03T20:00:00Z', '2026-04-05T20:00:00Z'],
      ['0 * * * *', 'Australia/Sydney', '2026-10-03T10:00:00Z', '2026-10-04T10:00:00Z'],
      // Chile changes its clocks at midnight: 00:00 does not exist on the spring-forward day
      ['0 0 * * *', 'America/Santiago', '2026-09-04T00:00:00Z', '2026-09-08T00:00:00Z'],
      ['0 0 * * *', 'America/Santiago', '2026-04-03T00:00:00Z', '2026-04-07T00:00:00Z'],
      ['*/20 * * * *', 'America/Santiago', '2026-04-05T00:00:00Z', '2026-04-05T06:00:00Z'],
      // asked from just after the New York gap (03:10 EDT), the shifted 02:30 → 03:30 occurrence is still ahead
      ['30 2 * * *', 'America/New_York', '2026-03-07T20:00:00Z', '2026-03-09T12:00:00Z'],
      ['30 2 * * 0', 'America/New_York', '2026-03-01T20:00:00Z', '2026-03-16T12:00:00Z'],
      // Lord Howe Island shifts by 30 minutes: back 02:00 → 01:30 on 2026-04-05, forward 02:00 → 02:30 on 2026-10-04
      ['45 1 * * *', 'Australia/Lord_Howe', '2026-04-04T12:00:00Z', '2026-04-05T18:00:00Z'],
      ['*/10 * * * *', 'Australia/Lord_Howe', '2026-04-04T13:00:00Z', '2026-04-04T16:00:00Z'],
      ['15 2 * * *', 'Australia/Lord_Howe', '2026-10-03T00:00:00Z', '2026-10-05T00:00:00Z'],
      // Troll station (Antarctica) shifts by two hours
      ['*/30 * * * *', 'Antarctica/Troll', '2026-03-28T22:00:00Z', '2026-03-29T04:00:00Z'],
      ['*/30 * * * *', 'Antarctica/Troll', '2026-10-24T22:00:00Z', '2026-10-25T04:00:00Z'],
    ])('%s in %s', (cron, timezone, fromIso, toIso) => {
      const r = new Recurrence({ cron, timezone });
      const list = r.occurrences(at(fromIso), at(toIso), 5000);
      expect(list.length).toBeGreaterThan(0);
      expectStrictlyAscending(list);
      const last = list[list.length - 1]!.getTime();
      for (let ms = at(fromIso).getTime(); ms < last; ms += 7 * 60_000 + 13_000) {
        const expected = list.find((d) => d.getTime() > ms)!;
        expect(r.next(new Date(ms))).toEqual(expected);
      }
    });
  });
});

describe('Recurrence: everyMs intervals', () => {
  it('aligns to the Unix epoch by default, so every node computes the same occurrences', () => {
    const minutely = new Recurrence({ everyMs: 60_000 });
    expect(minutely.kind).toBe('interval');
    expect(minutely.spec).toEqual({ everyMs: 60_000, anchor: new Date(0) });
    expect(minutely.next(at('2026-01-01T10:00:30.500Z'))).toEqual(at('2026-01-01T10:01:00Z'));
    expect(minutely.next(at('2026-01-01T10:01:00Z'))).toEqual(at('2026-01-01T10:02:00Z'));
  });

  it('starts at the anchor: nothing before it, the anchor itself is the first occurrence', () => {
    const anchor = at('2026-05-01T12:00:00.250Z');
    const r = new Recurrence({ everyMs: 7_000, anchor });
    expect(r.next(at('2020-01-01T00:00:00Z'))).toEqual(anchor);
    expect(r.next(new Date(anchor.getTime() - 1))).toEqual(anchor);
    expect(r.next(anchor)).toEqual(new Date(anchor.getTime() + 7_000));
    expect(r.occurrences(at('2020-01-01T00:00:00Z'), new Date(anchor.getTime() + 14_000), 10)).toEqual([
      anchor,
      new Date(anchor.getTime() + 7_000),
      new Date(anchor.getTime() + 14_000),
    ]);
    // the spec keeps a copy: mutating the caller's Date does not move the schedule
    anchor.setTime(0);
    expect(r.spec).toEqual({ everyMs: 7_000, anchor: at('2026-05-01T12:00:00.250Z') });
  });

  it('works with intervals longer than 2^31-1 ms (24.8 days): pure date arithmetic', () => {
    const every40Days = 40 * DAY;
    expect(every40Days).toBeGreaterThan(2 ** 31 - 1);
    const anchor = at('2026-01-01T00:00:00Z');
    const r = new Recurrence({ everyMs: every40Days, anchor });
    const runs = r.occurrences(anchor, at('2026-12-31T00:00:00Z'), 100);
    expect(runs).toHaveLength(9);
    runs.forEach((d, i) => expect(d.getTime()).toBe(anchor.getTime() + (i + 1) * every40Days));
    // far ahead: computed, not iterated
    expect(r.next(at('2100-01-01T00:00:00Z'))!.getTime()).toBe(anchor.getTime() + Math.floor((Date.parse('2100-01-01T00:00:00Z') - anchor.getTime()) / every40Days + 1) * every40Days);
  });

  it('is unaffected by DST: every 60 real minutes gives 23 runs on a 23-hour local day', () => {
    const r = new Recurrence({ everyMs: HOUR });
    expect(r.occurrences(at('2026-03-08T05:00:00Z'), at('2026-03-09T04:00:00Z'), 100)).toHaveLength(23);
    expect(r.occurrences(at('2026-11-01T04:00:00Z'), at('2026-11-02T05:00:00Z'), 100)).toHaveLength(25);
  });

  it('returns null past the largest Date instead of an invalid one', () => {
    // 8.64e15 is not a multiple of a week, so the occurrence after the last one that fits lies beyond it
    const r = new Recurrence({ everyMs: 7 * DAY });
    const lastThatFits = Math.floor(8.64e15 / (7 * DAY)) * 7 * DAY;
    expect(r.next(new Date(lastThatFits - 1))).toEqual(new Date(lastThatFits));
    expect(r.next(new Date(lastThatFits))).toBeNull();
  });
});

describe('Recurrence.latest() and countBetween()', () => {
  it('latest() of an interval computes the tail of a huge window without iterating it', () => {
    const everyMs = new Recurrence({ everyMs: 1 });
    const to = at('2026-01-01T00:00:00Z');
    // 1.7e12 occurrences in the window: iterating them would never finish
    expect(everyMs.latest(new Date(0), to, 3)).toEqual([new Date(to.getTime() - 2), new Date(to.getTime() - 1), to]);
    expect(everyMs.countBetween(new Date(0), to)).toEqual({ count: to.getTime(), exact: true });
    expect(new Recurrence({ everyMs: 60_000 }).countBetween(new Date(0), to)).toEqual({ count: 29_453_760, exact: true });
  });

  it('latest() returns the whole window, oldest first, when it holds fewer than `count`', () => {
    const r = new Recurrence({ everyMs: HOUR, anchor: at('2026-01-01T00:00:00Z') });
    expect(isos(r.latest(at('2025-12-31T00:00:00Z'), at('2026-01-01T02:30:00Z'), 10))).toEqual([
      '2026-01-01T00:00:00.000Z',
      '2026-01-01T01:00:00.000Z',
      '2026-01-01T02:00:00.000Z',
    ]);
    expect(r.latest(at('2026-01-01T02:30:00Z'), at('2026-01-01T02:40:00Z'), 10)).toEqual([]);
    expect(r.latest(at('2026-01-01T00:00:00Z'), at('2026-01-01T05:00:00Z'), 0)).toEqual([]);
  });

  it.each<[string, string]>([
    ['0 * * * *', 'America/New_York'],
    ['*/15 * * * *', 'America/New_York'],
    ['30 2 * * *', 'Europe/Berlin'],
    ['0 0 L * *', 'UTC'],
  ])('latest() of cron %s in %s is exactly the tail of occurrences(), across DST days', (cron, timezone) => {
    const r = new Recurrence({ cron, timezone });
    const windows: [string, string][] = [
      ['2026-03-07T00:00:00Z', '2026-03-09T12:00:00Z'],
      ['2026-10-24T00:00:00Z', '2026-11-02T12:00:00Z'],
      ['2026-01-01T00:00:00Z', '2026-01-01T00:00:00.001Z'],
    ];
    for (const [fromIso, toIso] of windows) {
      const all = r.occurrences(at(fromIso), at(toIso), 2000);
      for (const count of [1, 5, 30]) expect(r.latest(at(fromIso), at(toIso), count)).toEqual(all.slice(-count));
    }
  });

  it('latest() of cron includes an occurrence exactly at `to` and excludes one exactly at `from`', () => {
    const r = new Recurrence({ cron: '0 * * * *' });
    expect(isos(r.latest(at('2026-01-01T10:00:00Z'), at('2026-01-01T12:00:00Z'), 5))).toEqual([
      '2026-01-01T11:00:00.000Z',
      '2026-01-01T12:00:00.000Z',
    ]);
  });

  it('latest() of an every-second cron over a year does bounded work', () => {
    const r = new Recurrence({ cron: '* * * * * *' });
    const to = at('2026-06-01T00:00:00.500Z');
    expect(isos(r.latest(at('2025-06-01T00:00:00Z'), to, 3))).toEqual([
      '2026-05-31T23:59:58.000Z',
      '2026-05-31T23:59:59.000Z',
      '2026-06-01T00:00:00.000Z',
    ]);
  });

  it('countBetween() of cron is exact within its budget and a lower bound beyond it', () => {
    const r = new Recurrence({ cron: '* * * * * *' });
    const from = at('2026-01-01T00:00:00Z');
    expect(r.countBetween(from, at('2026-01-01T00:00:50Z'))).toEqual({ count: 50, exact: true });
    expect(r.countBetween(from, at('2026-01-01T00:00:50Z'), 50)).toEqual({ count: 50, exact: true });
    expect(r.countBetween(from, at('2026-01-01T00:00:51Z'), 50)).toEqual({ count: 50, exact: false });
    expect(r.countBetween(from, at('2026-01-01T01:00:00Z'), 100)).toEqual({ count: 100, exact: false });
    expect(r.countBetween(at('2026-01-01T01:00:00Z'), from)).toEqual({ count: 0, exact: true });
  });

  it('countBetween() of an hourly cron matches the DST day lengths', () => {
    const r = new Recurrence({ cron: '0 * * * *', timezone: 'America/New_York' });
    expect(r.countBetween(at('2026-03-08T05:00:00Z'), at('2026-03-09T04:00:00Z'))).toEqual({ count: 23, exact: true });
    expect(r.countBetween(at('2026-11-01T04:00:00Z'), at('2026-11-02T05:00:00Z'))).toEqual({ count: 24, exact: true });
  });
});

describe('occurrenceKey', () => {
  it('is schedule:<name>:<ISO time>, with milliseconds', () => {
    expect(occurrenceKey('nightly-report', at('2026-03-08T07:30:00Z'))).toBe('schedule:nightly-report:2026-03-08T07:30:00.000Z');
    expect(occurrenceKey('tick', at('2026-03-08T07:30:00.123Z'))).toBe('schedule:tick:2026-03-08T07:30:00.123Z');
  });

  it('is stable: the same (name, instant) gives the same key, however the Date was made', () => {
    const a = occurrenceKey('s', at('2026-03-08T07:30:00Z'));
    const b = occurrenceKey('s', new Date(Date.UTC(2026, 2, 8, 7, 30)));
    const c = occurrenceKey('s', new Recurrence({ cron: '30 2 * * *', timezone: 'America/New_York' }).next(at('2026-03-07T12:00:00Z'))!);
    expect(a).toBe(b);
    expect(a).toBe(c);
  });

  it('separates distinct schedules and distinct instants, including names that contain colons', () => {
    const t = at('2026-01-01T00:00:00Z');
    const keys = new Set([
      occurrenceKey('a', t),
      occurrenceKey('b', t),
      occurrenceKey('a', new Date(t.getTime() + 1)),
      occurrenceKey('a:b', t),
      occurrenceKey('a:2026-01-01T00:00:00.000Z', t),
    ]);
    expect(keys.size).toBe(5);
  });

  it('rejects an empty name, an invalid date and years outside 0–9999', () => {
    expect(() => occurrenceKey('', at('2026-01-01T00:00:00Z'))).toThrow(InvalidInputError);
    expect(() => occurrenceKey(42 as unknown as string, at('2026-01-01T00:00:00Z'))).toThrow(InvalidInputError);
    expect(() => occurrenceKey('s', new Date(Number.NaN))).toThrow(InvalidInputError);
    expect(() => occurrenceKey('s', new Date(8.64e15))).toThrow(InvalidInputError);
  });
});

describe('validateTimezone and validateOverlapPolicy', () => {
  it('validateTimezone keeps a known zone as written and rejects unknown ones', () => {
    expect(validateTimezone('Europe/Berlin')).toBe('Europe/Berlin');
    expect(validateTimezone('UTC')).toBe('UTC');
    expect(() => validateTimezone('Europe/Atlantis')).toThrow(InvalidInputError);
    expect(() => validateTimezone(undefined)).toThrow(InvalidInputError);
  });

  it('validateOverlapPolicy accepts allow / skip / wait only', () => {
    expect(OVERLAP_POLICIES).toEqual(['allow', 'skip', 'wait']);
    for (const policy of OVERLAP_POLICIES) expect(validateOverlapPolicy(policy)).toBe(policy);
    expect(() => validateOverlapPolicy('queue')).toThrow(InvalidInputError);
    expect(() => validateOverlapPolicy(undefined)).toThrow(InvalidInputError);
  });
});
