import { RepositoryError } from '@horae/storage';
import { describe, expect, it } from 'vitest';
import { HOUR, world } from './schedules-helpers.js';

describe('MemoryRepository as a ScheduleStore', () => {
  it('reads createdAt, updatedAt and "now" from its clock', async () => {
    const { repo, clock } = world('2026-01-01T00:30:00.000Z');
    const { schedule } = await repo.upsertSchedule({ name: 'h', spec: { everyMs: HOUR }, workId: 'w' });
    expect(schedule.createdAt).toEqual(new Date('2026-01-01T00:30:00.000Z'));
    expect(schedule.nextRunAt).toEqual(new Date('2026-01-01T01:00:00.000Z'));
    await clock.advance(5 * HOUR);
    const pulled = await repo.pullScheduleForward('h', 0);
    // Already due: pulling it forward writes nothing.
    expect(pulled.version).toBe(1);
    expect(pulled.updatedAt).toEqual(new Date('2026-01-01T00:30:00.000Z'));
    const paused = await repo.setSchedulePaused('h', true);
    expect(paused.updatedAt).toEqual(new Date('2026-01-01T05:30:00.000Z'));
    expect((await repo.setSchedulePaused('h', false)).nextRunAt).toEqual(new Date('2026-01-01T06:00:00.000Z'));
  });

  it('peers share the schedules; an unavailable client fails and writes nothing', async () => {
    const { repo } = world();
    const peer = repo.openPeer();
    await repo.upsertSchedule({ name: 'h', spec: { everyMs: HOUR }, workId: 'w' });
    expect((await peer.getSchedule('h')).name).toBe('h');
    peer.setUnavailable(true);
    await expect(peer.upsertSchedule({ name: 'other', spec: { everyMs: HOUR }, workId: 'w' })).rejects.toBeInstanceOf(RepositoryError);
    await expect(peer.removeSchedule('h')).rejects.toBeInstanceOf(RepositoryError);
    expect((await repo.listSchedules()).map((s) => s.name)).toEqual(['h']);
  });
});
