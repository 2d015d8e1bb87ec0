import { InvalidInputError } from '@horae/core';
import { expect } from 'vitest';
import type { Repository } from '../../contract/repository.js';
import { isScheduleStore } from '../../schedules/schedule-store.js';
import type { NewTask } from '../../contract/task-info.js';
import {
  DEFAULT_MAX_PARAM_BYTES,
  MAX_ERROR_MESSAGE_LENGTH,
  MAX_ERROR_NAME_LENGTH,
  MAX_NODE_ID_LENGTH,
  MAX_SCHEDULE_NAME_LENGTH,
  MAX_TASK_ID_LENGTH,
  MAX_UNIQUE_KEY_LENGTH,
  MAX_WORK_ID_LENGTH,
} from '../../contract/validation.js';
import { future, newTask, settle, totalCount } from '../helpers.js';
import type { SuiteContext } from '../suite-context.js';

/** The longest message a refusal may have, whatever the size of the input it refuses. */
const MAX_MESSAGE_LENGTH = 400;

/**
 * A key of `length` characters that takes as many bytes as a key can (3 bytes of UTF-8 each) and that no
 * compression shrinks (CJK characters from a seeded generator): the worst case of every index that holds it.
 */
function widestKey(length: number, seed: number): string {
  let state = seed;
  let out = '';
  for (let i = 0; i < length; i++) {
    state = (state * 1_103_515_245 + 12_345) % 2_147_483_648;
    out += String.fromCharCode(0x4e00 + (state % 0x5000));
  }
  return out;
}

/** The param bound of `repo`: its own, or the default. */
function maxParamBytes(repo: Repository): number {
  return repo.maxParamBytes ?? DEFAULT_MAX_PARAM_BYTES;
}

/** Expects `promise` to reject with an InvalidInputError whose message names `words` and stays short. */
async function expectRefused(promise: Promise<unknown>, ...words: string[]): Promise<void> {
  const result = await settle(promise);
  expect(result.ok, 'the call was refused').toBe(false);
  const error = (result as { error: unknown }).error;
  expect(error).toBeInstanceOf(InvalidInputError);
  const message = (error as Error).message;
  for (const word of words) expect(message).toContain(word);
  expect(message.length, 'a refusal quotes a short prefix of its input').toBeLessThanOrEqual(MAX_MESSAGE_LENGTH);
}

/**
 * Bounds (issue 10, defects 1 and 6): every key has a documented maximum length and every param a maximum size,
 * checked before any write, so that no value reaches the database that it could refuse forever; refusals quote a
 * short prefix of the input.
 */
export function limitRules({ group, rule, repo }: SuiteContext): void {
  group('key and param limits', () => {
    rule('an id, workId, uniqueKey or scheduleName one character over its limit is refused, naming the field and the limit; nothing is stored', async () => {
      const over: [keyof NewTask, number][] = [
        ['id', MAX_TASK_ID_LENGTH],
        ['workId', MAX_WORK_ID_LENGTH],
        ['uniqueKey', MAX_UNIQUE_KEY_LENGTH],
        ['scheduleName', MAX_SCHEDULE_NAME_LENGTH],
      ];
      for (const [field, max] of over) {
        await expectRefused(repo().insert(newTask({ [field]: 'k'.repeat(max + 1) })), field, String(max));
        await expectRefused(repo().insertMany([newTask(), newTask({ [field]: 'k'.repeat(max + 1) })]), field, String(max));
      }
      expect(await totalCount(repo())).toBe(0);
    });

    rule('keys of exactly the maximum length, in the widest characters, work through a whole run', async () => {
      const id = widestKey(MAX_TASK_ID_LENGTH, 1);
      const workId = widestKey(MAX_WORK_ID_LENGTH, 2);
      const uniqueKey = widestKey(MAX_UNIQUE_KEY_LENGTH, 3);
      const owner = widestKey(MAX_NODE_ID_LENGTH, 4);
      const inserted = await repo().insert(newTask({ id, workId, uniqueKey }));
      expect(inserted).toMatchObject({ created: true, task: { id, workId, uniqueKey } });
      // The uniqueKey index holds it: a second insert with the key returns the first task.
      expect(await repo().insert(newTask({ workId, uniqueKey }))).toMatchObject({ created: false, task: { id } });
      const [claimed] = await repo().claimDue({ owner, leaseMs: 60_000, limit: 10, workIds: [workId] });
      expect(claimed).toMatchObject({ id, state: 'Working', lease: { owner } });
      await repo().markAsStarted(id, claimed!.lease!.token);
      await repo().markAsDone(id, claimed!.lease!.token);
      expect((await repo().getById(id)).state).toBe('Done');
      expect((await repo().list({ workId })).tasks.map((t) => t.id)).toEqual([id]);
      expect((await repo().listAttempts(id)).map((a) => [a.node, a.outcome])).toEqual([[owner, 'succeeded']]);
    });

    rule('a scheduleName of exactly the maximum length works', async () => {
      const scheduleName = widestKey(MAX_SCHEDULE_NAME_LENGTH, 5);
      const { task } = await repo().insert(newTask({ scheduleName }));
      expect((await repo().getById(task.id)).scheduleName).toBe(scheduleName);
    });

    rule('a claim whose owner is over its limit is refused; nothing changes', async () => {
      const { task } = await repo().insert(newTask());
      const owner = 'n'.repeat(MAX_NODE_ID_LENGTH + 1);
      await expectRefused(repo().claim(task.id, { owner, leaseMs: 60_000 }), 'owner', String(MAX_NODE_ID_LENGTH));
      await expectRefused(repo().claimDue({ owner, leaseMs: 60_000, limit: 10 }), 'owner', String(MAX_NODE_ID_LENGTH));
      expect((await repo().getById(task.id)).state).toBe('Initialized');
    });

    rule('a param of exactly maxParamBytes of JSON works; one byte more is refused and nothing is stored', async () => {
      const max = maxParamBytes(repo());
      // A JSON string takes its characters and two quotes.
      const { task } = await repo().insert(newTask({ param: 'p'.repeat(max - 2) }));
      expect(((await repo().getById(task.id)).param as string).length).toBe(max - 2);
      await expectRefused(repo().insert(newTask({ param: 'p'.repeat(max - 1) })), 'param', String(max));
      await expectRefused(repo().insertMany([newTask(), newTask({ param: ['p'.repeat(max)] })]), 'param');
      expect(await totalCount(repo())).toBe(1);
    });

    rule('a param is measured in UTF-8 bytes of its JSON text', async () => {
      const max = maxParamBytes(repo());
      const fits = Math.floor((max - 2) / 3);
      // '€' takes 3 bytes of UTF-8: the most that fit, then one more.
      await repo().insert(newTask({ param: '€'.repeat(fits) }));
      await expectRefused(repo().insert(newTask({ param: '€'.repeat(fits + 1) })), 'param');
      expect(await totalCount(repo())).toBe(1);
    });

    rule('an update whose param is over maxParamBytes is refused; the stored param stays', async () => {
      const { task } = await repo().insert(newTask({ scheduledAt: future(), param: { n: 1 } }));
      await expectRefused(repo().update(task.id, { param: { blob: 'p'.repeat(maxParamBytes(repo())) } }), 'param');
      expect((await repo().getById(task.id)).param).toEqual({ n: 1 });
    });

    rule('a 1 MB key or a 50 MB param is refused with a short message', async () => {
      const huge = 'h'.repeat(1_000_000);
      await expectRefused(repo().insert(newTask({ workId: huge })), 'workId');
      await expectRefused(repo().insert(newTask({ id: huge })), 'id');
      await expectRefused(repo().insert(newTask({ param: { items: Array.from({ length: 1_000 }, () => 'x'.repeat(50_000)) } })), 'param');
      expect(await totalCount(repo())).toBe(0);
    });

    rule('a lookup of a 1 MB id answers TaskNotFoundError with a short message', async () => {
      const result = await settle(repo().getById('i'.repeat(1_000_000)));
      expect(result.ok).toBe(false);
      const error = (result as { error: unknown }).error as Error & { code?: string };
      expect(error.code).toBe('TASK_NOT_FOUND');
      expect(error.message.length).toBeLessThanOrEqual(MAX_MESSAGE_LENGTH);
    });

    rule('a stored error keeps at most the bounded lengths of its message, name and code', async () => {
      const { task } = await repo().insert(newTask());
      const huge = 'e'.repeat(1_000_000);
      const failed = await repo().markAsFailed(task.id, { message: huge, name: huge, code: huge });
      expect(failed.lastError?.message.length).toBe(MAX_ERROR_MESSAGE_LENGTH);
      expect(failed.lastError?.name?.length).toBe(MAX_ERROR_NAME_LENGTH);
      expect(failed.lastError?.code?.length).toBe(MAX_ERROR_NAME_LENGTH);
      expect((await repo().getById(task.id)).lastError).toEqual(failed.lastError);
    });

    rule('schedules: a name, workId or param over its limit is refused; nothing is stored', async () => {
      const store = repo();
      if (!isScheduleStore(store)) return;
      const spec = { everyMs: 60_000 };
      await expectRefused(store.upsertSchedule({ name: 'n'.repeat(MAX_SCHEDULE_NAME_LENGTH + 1), spec, workId: 'w' }), 'name', String(MAX_SCHEDULE_NAME_LENGTH));
      await expectRefused(store.upsertSchedule({ name: 's', spec, workId: 'w'.repeat(MAX_WORK_ID_LENGTH + 1) }), 'workId', String(MAX_WORK_ID_LENGTH));
      await expectRefused(store.upsertSchedule({ name: 's', spec, workId: 'w', param: 'p'.repeat(maxParamBytes(store)) }), 'param');
      expect(await store.listSchedules()).toEqual([]);
      const name = widestKey(MAX_SCHEDULE_NAME_LENGTH, 6);
      const { schedule } = await store.upsertSchedule({ name, spec, workId: widestKey(MAX_WORK_ID_LENGTH, 7) });
      expect((await store.getSchedule(name)).name).toBe(schedule.name);
    });
  });
}
