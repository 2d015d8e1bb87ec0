// Issue 10, defect 5: schedule() during a database outage is bounded, can be given up, and reports the outage
// without a flood. The outage is MemoryRepository's own switch (setUnavailable: every call fails with a
// RepositoryError, as a database that is down); the "reply lost" case wraps it to land an insert and then fail.
import { ScheduleAbortedError, ScheduleTimeoutError } from '@horae/core';
import type { VirtualClock } from '@horae/core/testing';
import {
  BackpressureError,
  RepositoryError,
  TaskNotFoundError,
  WorkRegistry,
  type NewTask,
  type RepositoryErrorEvent,
  type RepositoryRecoveredEvent,
} from '@horae/storage';
import { describe, expect, it } from 'vitest';
import { allTasks, fixture, startNode, type TestNode } from './storage-helpers.js';

/** Settles `promise` into an inspectable box, so that a test can advance the clock and look. */
function track<T>(promise: Promise<T>): { settled: boolean; value?: T; error?: unknown } {
  const box: { settled: boolean; value?: T; error?: unknown } = { settled: false };
  promise.then(
    (value) => Object.assign(box, { settled: true, value }),
    (error: unknown) => Object.assign(box, { settled: true, error }),
  );
  return box;
}

function errorsOf(node: TestNode): RepositoryErrorEvent[] {
  return node.events.filter(([name]) => name === 'repository:error').map(([, payload]) => payload as RepositoryErrorEvent);
}

/** Makes the outage known to the node: one call's try fails. */
async function learnOutage(node: TestNode, clock: VirtualClock): Promise<ReturnType<typeof track>> {
  const first = track(node.scheduler.schedule({ workId: 'w', param: 0 }));
  await clock.advance(0);
  expect(errorsOf(node).length).toBeGreaterThan(0);
  return first;
}

describe('schedule() during an outage: the calls that wait are bounded', () => {
  it('past maxPendingSchedules a call is refused at once with BackpressureError and writes nothing; the ones that waited land after', async () => {
    const { clock, repo } = fixture();
    const runs: unknown[] = [];
    const node = await startNode(repo, new WorkRegistry().register('w', (ctx) => void runs.push(ctx.param)), clock, { syncIntervalMs: 60_000, maxPendingSchedules: 3 });
    repo.setUnavailable(true);
    const first = await learnOutage(node, clock);
    const waiting = [track(node.scheduler.schedule({ workId: 'w', param: 1 })), track(node.scheduler.schedule({ workId: 'w', param: 2 }))];
    const refused = node.scheduler.schedule({ workId: 'w', param: 3 });
    await expect(refused).rejects.toBeInstanceOf(BackpressureError);
    await expect(refused).rejects.toMatchObject({ code: 'BACKPRESSURE', pending: 3, limit: 'maxPendingSchedules' });
    await expect(refused.catch((error: BackpressureError) => error.cause)).resolves.toBeInstanceOf(RepositoryError);

    repo.setUnavailable(false);
    await clock.advance(15_000);
    for (const call of [first, ...waiting]) {
      expect(call.settled).toBe(true);
      expect(call.error).toBeUndefined();
    }
    expect(runs.sort()).toEqual([0, 1, 2]);
    expect((await allTasks(repo)).map((t) => t.param).sort()).toEqual([0, 1, 2]);
    // The outage is over: calls are admitted again.
    await expect(node.scheduler.schedule({ workId: 'w', param: 4 })).resolves.toBeDefined();
  });

  it('past maxPendingScheduleBytes a call is refused the same way, counting the UTF-8 JSON of the params', async () => {
    const { clock, repo } = fixture();
    const node = await startNode(repo, new WorkRegistry().register('w', () => undefined), clock, { syncIntervalMs: 60_000, maxPendingScheduleBytes: 2_500 });
    repo.setUnavailable(true);
    await learnOutage(node, clock); // param 0: 1 byte
    track(node.scheduler.schedule({ workId: 'w', param: 'é'.repeat(1_000) })); // 2,002 bytes: "…" in UTF-8
    await expect(node.scheduler.schedule({ workId: 'w', param: 'x'.repeat(600) })).rejects.toMatchObject({ code: 'BACKPRESSURE', limit: 'maxPendingScheduleBytes', pendingBytes: 2_003 });
    // A small one still fits.
    const small = track(node.scheduler.schedule({ workId: 'w', param: 'x'.repeat(400) }));
    await clock.advance(0);
    expect(small.settled).toBe(false);
  });

  it('a burst made as the outage begins: the calls past the bound wait for a slot, untried, and are refused once the outage is known', async () => {
    const { clock, repo } = fixture();
    const node = await startNode(repo, new WorkRegistry().register('w', () => undefined), clock, { syncIntervalMs: 60_000, maxPendingSchedules: 5 });
    repo.setUnavailable(true);
    const calls = Array.from({ length: 20 }, (_, i) => track(node.scheduler.schedule({ workId: 'w', param: i, taskId: `t${i}` })));
    await clock.advance(0);
    const refused = calls.filter((c) => c.error instanceof BackpressureError);
    expect(refused).toHaveLength(15);
    expect(calls.slice(0, 5).every((c) => !c.settled)).toBe(true);
    repo.setUnavailable(false);
    await clock.advance(15_000);
    expect((await allTasks(repo)).map((t) => t.id).sort()).toEqual(['t0', 't1', 't2', 't3', 't4']);
  });

  it('a call waiting for a slot that its signal ends leaves the queue with ScheduleAbortedError, nothing written', async () => {
    const { clock, repo } = fixture();
    // One slot: `held` takes it, `queued` waits behind it until its insert landed.
    const node = await startNode(repo, new WorkRegistry().register('w', () => undefined), clock, { syncIntervalMs: 60_000, maxPendingSchedules: 1 });
    const controller = new AbortController();
    const held = track(node.scheduler.schedule({ workId: 'w', taskId: 'held', delayMs: 1_000 }));
    const queued = track(node.scheduler.schedule({ workId: 'w', taskId: 'queued' }, { signal: controller.signal }));
    const after = track(node.scheduler.schedule({ workId: 'w', taskId: 'after', delayMs: 1_000 }));
    controller.abort(new Error('not any more'));
    await clock.advance(0);
    expect(queued.error).toMatchObject({ code: 'SCHEDULE_ABORTED', mayHaveBeenWritten: false, taskId: 'queued' });
    expect(held).toMatchObject({ settled: true });
    expect(after).toMatchObject({ settled: true });
    expect(held.error ?? after.error).toBeUndefined();
    await expect(repo.getById('queued')).rejects.toBeInstanceOf(TaskNotFoundError);
  });

  it('storage.stop() waits for the calls queued for a slot: none of them writes after it', async () => {
    const { clock, repo } = fixture();
    const node = await startNode(repo, new WorkRegistry().register('w', () => undefined), clock, { syncIntervalMs: 60_000, maxPendingSchedules: 1 });
    const calls = Array.from({ length: 3 }, (_, i) => track(node.scheduler.schedule({ workId: 'w', taskId: `q${i}`, delayMs: 60_000 })));
    let rowsAtStop: number | undefined;
    const stopping = node.storage.stop().then(async () => {
      rowsAtStop = (await allTasks(repo)).length;
    });
    await clock.advance(0);
    await stopping;
    expect(rowsAtStop).toBe(3);
    expect(calls.every((c) => c.settled)).toBe(true);
  });

  it('a burst on a healthy database is never refused, whatever the bound', async () => {
    const { clock, repo } = fixture();
    const node = await startNode(repo, new WorkRegistry().register('w', () => undefined), clock, { syncIntervalMs: 60_000, maxPendingSchedules: 1 });
    const handles = await Promise.all(Array.from({ length: 50 }, (_, i) => node.scheduler.schedule({ workId: 'w', param: i, delayMs: 60_000 })));
    expect(handles).toHaveLength(50);
    expect(await allTasks(repo)).toHaveLength(50);
  });

  it('the options are checked: a bound below 1 is refused at construction', async () => {
    const { clock, repo } = fixture();
    await expect(startNode(repo, new WorkRegistry(), clock, { maxPendingSchedules: 0 })).rejects.toThrow(/maxPendingSchedules must be an integer ≥ 1/);
    await expect(startNode(repo, new WorkRegistry(), clock, { maxPendingScheduleBytes: 1.5 })).rejects.toThrow(/maxPendingScheduleBytes/);
    await expect(startNode(repo, new WorkRegistry(), clock, { repositoryErrorIntervalMs: -1 })).rejects.toThrow(/repositoryErrorIntervalMs/);
  });
});

describe('schedule(options, { signal, timeoutMs })', () => {
  it('a timeout that passes while the insert waits between tries rejects with ScheduleTimeoutError, frees its place, and the task never runs', async () => {
    const { clock, repo } = fixture();
    const runs: unknown[] = [];
    const node = await startNode(repo, new WorkRegistry().register('w', (ctx) => void runs.push(ctx.param)), clock, { syncIntervalMs: 1_000, maxPendingSchedules: 1 });
    repo.setUnavailable(true);
    const call = track(node.scheduler.schedule({ workId: 'w', param: 'late', taskId: 'late' }, { timeoutMs: 5_000 }));
    await clock.advance(4_999);
    expect(call.settled).toBe(false);
    await clock.advance(1);
    expect(call.error).toBeInstanceOf(ScheduleTimeoutError);
    expect(call.error).toMatchObject({ code: 'SCHEDULE_TIMEOUT', timeoutMs: 5_000, taskId: 'late', mayHaveBeenWritten: true });
    // Its place is free: another call waits instead of being refused.
    const next = track(node.scheduler.schedule({ workId: 'w', param: 'next' }));
    await clock.advance(0);
    expect(next.settled).toBe(false);

    repo.setUnavailable(false);
    await clock.advance(30_000);
    expect(next.settled).toBe(true);
    expect(next.error).toBeUndefined();
    expect(runs).toEqual(['next']);
    // No try of the given-up insert had landed: no task has its id.
    await expect(repo.getById('late')).rejects.toBeInstanceOf(TaskNotFoundError);
  });

  it('an abort while the insert waits rejects with ScheduleAbortedError whose cause is the reason, and no later try writes it', async () => {
    const { clock, repo } = fixture();
    const node = await startNode(repo, new WorkRegistry().register('w', () => undefined), clock, { syncIntervalMs: 60_000 });
    repo.setUnavailable(true);
    const controller = new AbortController();
    const call = track(node.scheduler.schedule({ workId: 'w', taskId: 'gone' }, { signal: controller.signal }));
    await clock.advance(1_000);
    const reason = new Error('the request was cancelled');
    controller.abort(reason);
    await clock.advance(0);
    expect(call.error).toBeInstanceOf(ScheduleAbortedError);
    expect(call.error).toMatchObject({ code: 'SCHEDULE_ABORTED', taskId: 'gone', mayHaveBeenWritten: true, cause: reason });
    repo.setUnavailable(false);
    await clock.advance(60_000);
    await expect(repo.getById('gone')).rejects.toBeInstanceOf(TaskNotFoundError);
  });

  it('a signal aborted already rejects at once and writes nothing, database up or down', async () => {
    const { clock, repo } = fixture();
    const node = await startNode(repo, new WorkRegistry().register('w', () => undefined), clock, { syncIntervalMs: 60_000 });
    const reason = new Error('no');
    await expect(node.scheduler.schedule({ workId: 'w' }, { signal: AbortSignal.abort(reason) })).rejects.toMatchObject({ code: 'SCHEDULE_ABORTED', mayHaveBeenWritten: false, cause: reason });
    expect(await allTasks(repo)).toEqual([]);
    await expect(node.scheduler.schedule({ workId: 'w' }, { timeoutMs: -1 })).rejects.toThrow(/timeoutMs must be a number of ms/);
  });

  it('on a healthy database the bounds change nothing: the call resolves with its handle and the timer is dropped', async () => {
    const { clock, repo } = fixture();
    const node = await startNode(repo, new WorkRegistry().register('w', () => 'ok'), clock, { syncIntervalMs: 0 });
    const armed = clock.pendingTimers;
    const handle = await node.scheduler.schedule({ workId: 'w', delayMs: 60_000 }, { timeoutMs: 1_000, signal: new AbortController().signal });
    // One timer for the task's due time; the call's timeout timer is gone.
    expect(clock.pendingTimers).toBe(armed + 1);
    await clock.advance(60_000);
    await expect(handle.result).resolves.toBe('ok');
  });

  it('a try that landed but whose reply was lost: the given-up task is cancelled once the database answers, and never runs', async () => {
    const { clock, repo } = fixture();
    // A "reply lost" fault: the insert lands, then the call fails as an outage would.
    let loseReplies = true;
    const lossy = new Proxy(repo, {
      get(target, property, receiver) {
        if (property === 'insert') {
          return async (task: NewTask) => {
            const result = await target.insert(task);
            if (loseReplies) throw new RepositoryError('the connection dropped before the reply');
            return result;
          };
        }
        const value: unknown = Reflect.get(target, property, receiver);
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });
    const runs: unknown[] = [];
    const node = await startNode(lossy, new WorkRegistry().register('w', (ctx) => void runs.push(ctx.taskId)), clock, { syncIntervalMs: 500 });
    // Take the database down right after the first try landed and failed, as a connection lost mid-reply would.
    const call = track(node.scheduler.schedule({ workId: 'w', taskId: 'ghost' }, { timeoutMs: 50 }));
    await clock.advance(0);
    repo.setUnavailable(true);
    await clock.advance(50);
    expect(call.error).toMatchObject({ code: 'SCHEDULE_TIMEOUT', mayHaveBeenWritten: true, taskId: 'ghost' });
    loseReplies = false;
    repo.setUnavailable(false);
    await clock.advance(30_000);
    const row = await repo.getById('ghost');
    expect(row.state).toBe('Cancelled');
    expect(runs).toEqual([]);
  });
});

describe('outage reports are rate-limited', () => {
  it('one repository:error per operation per interval, with the count of the others; the end reported once', async () => {
    const { clock, repo } = fixture();
    const node = await startNode(repo, new WorkRegistry().register('w', () => undefined), clock, { syncIntervalMs: 1_000 });
    repo.setUnavailable(true);
    for (let i = 0; i < 200; i++) track(node.scheduler.schedule({ workId: 'w', param: i }));
    await clock.advance(60_000);
    const errors = errorsOf(node);
    const inserts = errors.filter((e) => e.operation === 'insert');
    // 200 calls each tried about once a 5-10 s for a minute: some 1,500 failures of insert, in at most 7 reports.
    expect(inserts.length).toBeGreaterThanOrEqual(6);
    expect(inserts.length).toBeLessThanOrEqual(7);
    expect(inserts[0]!.suppressed).toBe(0);
    const insertFailures = inserts.reduce((sum, e) => sum + 1 + e.suppressed, 0);
    expect(insertFailures).toBeGreaterThan(1_000);
    const operations = new Set(errors.map((e) => e.operation));
    expect(errors.length).toBeLessThanOrEqual(operations.size * 7);
    expect(node.events.filter(([name]) => name === 'repository:recovered')).toEqual([]);

    const recovered = node.storage.events.once('repository:recovered');
    repo.setUnavailable(false);
    await clock.advance(15_000);
    const end: RepositoryRecoveredEvent = await recovered;
    expect(end.downMs).toBeGreaterThanOrEqual(60_000);
    expect(end.failures).toBeGreaterThanOrEqual(insertFailures);
    expect(end.reported).toBe(errorsOf(node).length);
    // A new outage is reported at once, from its first failure.
    const before = errorsOf(node).length;
    repo.setUnavailable(true);
    track(node.scheduler.schedule({ workId: 'w', param: 'again' }));
    await clock.advance(0);
    expect(errorsOf(node).slice(before)).toMatchObject([{ operation: 'insert', suppressed: 0, attempt: 1 }]);
  });
});

describe('storage.start() while the database is down', () => {
  it('rejects with the RepositoryError at once, starts nothing, and may be called again once the database is back', async () => {
    const { clock, repo } = fixture();
    await repo.insert({ id: 'stored', workId: 'w', scheduledAt: new Date(clock.now() + 1_000) });
    const runs: string[] = [];
    const node = await startNode(repo, new WorkRegistry().register('w', (ctx) => void runs.push(ctx.taskId)), clock, { noStart: true, syncIntervalMs: 1_000 });
    repo.setUnavailable(true);
    const first = track(node.storage.start(node.scheduler));
    await clock.advance(0);
    expect(first.error).toBeInstanceOf(RepositoryError);
    // No loop was armed: nothing tries the repository while it is down.
    await clock.advance(30_000);
    expect(errorsOf(node)).toEqual([]);
    repo.setUnavailable(false);
    await expect(node.storage.start(node.scheduler)).resolves.toMatchObject({ scheduled: 1 });
    node.scheduler.start();
    await clock.advance(1_000);
    expect(runs).toEqual(['stored']);
  });
});
