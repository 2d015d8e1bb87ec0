/**
 * `catchUp: 'once'` runs one occurrence for a whole downtime (issue 10, defect 7): the latest missed one, or, when an
 * occurrence is on time (exactly now, or within the grace), that one alone, since it runs anyway.
 */
import { Recurrence, catchUpOccurrences } from '@horae/core';
import { describe, expect, it } from 'vitest';

const hourly = new Recurrence({ cron: '0 * * * *' });
const at = (iso: string): Date => new Date(iso);
const isos = (dates: readonly Date[]): string[] => dates.map((d) => d.toISOString());

describe("catchUpOccurrences: 'once' is one run for the downtime", () => {
  it('with an occurrence on time, it runs that one alone and skips every missed one', () => {
    const result = catchUpOccurrences({ recurrence: hourly, lastOccurrence: at('2026-01-01T09:00:00Z'), now: at('2026-01-01T12:00:00Z'), policy: 'once' });
    expect(isos(result.occurrences)).toEqual(['2026-01-01T12:00:00.000Z']);
    expect(result).toMatchObject({ missed: 2, skipped: 2, dropped: 0 });
  });

  it('the same when the on-time occurrence is late but within the grace', () => {
    const result = catchUpOccurrences({ recurrence: hourly, lastOccurrence: at('2026-01-01T09:00:00Z'), now: at('2026-01-01T12:00:40Z'), policy: 'once', graceMs: 60_000 });
    expect(isos(result.occurrences)).toEqual(['2026-01-01T12:00:00.000Z']);
    expect(result).toMatchObject({ missed: 2, skipped: 2 });
  });

  it('with none on time, it runs the latest missed one', () => {
    const result = catchUpOccurrences({ recurrence: hourly, lastOccurrence: at('2026-01-01T09:00:00Z'), now: at('2026-01-01T12:30:00Z'), policy: 'once', graceMs: 60_000 });
    expect(isos(result.occurrences)).toEqual(['2026-01-01T12:00:00.000Z']);
    expect(result).toMatchObject({ missed: 3, skipped: 2 });
  });

  it("'all' still runs every missed one and the on-time one", () => {
    const result = catchUpOccurrences({ recurrence: hourly, lastOccurrence: at('2026-01-01T09:00:00Z'), now: at('2026-01-01T12:00:40Z'), policy: 'all', graceMs: 60_000 });
    expect(isos(result.occurrences)).toEqual(['2026-01-01T10:00:00.000Z', '2026-01-01T11:00:00.000Z', '2026-01-01T12:00:00.000Z']);
  });
});
