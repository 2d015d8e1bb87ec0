import { describe, expect, it } from 'vitest';
import { MAX_ERROR_MESSAGE_LENGTH, MAX_ERROR_STACK_LENGTH, RepositoryError } from '@horae/storage';
import type { JsonValue } from '@horae/storage';
import { decodeParam, encodeParam, sanitizeTaskError, toTaskAttempt, toTaskInfo } from '../src/task-document.js';
import type { AttemptDocument, TaskDocument } from '../src/task-document.js';

const NASTY: JsonValue = {
  $where: 'this.a == 1',
  $set: { 'a.b': { $gt: '' } },
  'x.y.z': [{ $in: [2] }, { '$$NOW': '$$ROOT' }],
  $: 'dollar',
  '.': 'dot',
  '': 'empty key',
  __proto__x: { constructor: 'c' },
  '键 🔑': 'ünïcødé \u2028\u2029',
  nested: [[[]], {}, null, true, false, 0, -1.5, 1e300],
};

describe('param encoding', () => {
  it('round-trips keys with $ and . and unicode exactly', () => {
    const stored = encodeParam(NASTY);
    expect(typeof stored).toBe('string');
    expect(decodeParam(stored)).toEqual(NASTY);
    // Key order is kept too.
    expect(Object.keys(decodeParam(stored) as object)).toEqual(Object.keys(NASTY as object));
  });

  it('round-trips scalars and null', () => {
    for (const value of [null, true, false, 0, -0.25, '', '$x', [], {}] as JsonValue[]) expect(decodeParam(encodeParam(value))).toEqual(value);
  });

  it('a stored value that is not Horae JSON text is a RepositoryError', () => {
    expect(() => decodeParam({ a: 1 })).toThrow(RepositoryError);
    expect(() => decodeParam('{oops')).toThrow(RepositoryError);
  });
});

describe('document mapping', () => {
  const at = (s: number): Date => new Date(Date.UTC(2030, 0, 1, 0, 0, s));
  const doc: TaskDocument = {
    _id: 'task-1',
    workId: 'w',
    param: encodeParam({ $a: [1] }),
    scheduledAt: at(1),
    state: 'Working',
    priority: 2,
    attempt: 1,
    claims: 4,
    unstartedClaims: 2,
    maxAttempts: 3,
    lease: { owner: 'n', until: at(9), token: 't', started: false },
    lastError: { message: 'm', code: 'C' },
    uniqueKey: 'k',
    progress: { completed: 1, total: 4, at: at(5) },
    createdAt: at(0),
    updatedAt: at(2),
    live: true,
    seq: 17,
    claimOrder: 20_000 - at(1).getTime(),
    kind: 'periodic',
    scheduleName: 'nightly',
  };

  it('maps every field and drops the storage-only ones', () => {
    expect(toTaskInfo(doc)).toEqual({
      id: 'task-1',
      workId: 'w',
      param: { $a: [1] },
      scheduledAt: at(1),
      state: 'Working',
      priority: 2,
      attempt: 1,
      claims: 4,
      unstartedClaims: 2,
      maxAttempts: 3,
      lease: { owner: 'n', until: at(9), token: 't', started: false },
      lastError: { message: 'm', code: 'C' },
      uniqueKey: 'k',
      progress: { completed: 1, total: 4, at: at(5) },
      createdAt: at(0),
      updatedAt: at(2),
      kind: 'periodic',
      scheduleName: 'nightly',
    });
  });

  it('a document written before schema version 2 reads as kind scheduled with no schedule', () => {
    const old = { ...doc } as Partial<TaskDocument>;
    delete old.kind;
    delete old.scheduleName;
    expect(toTaskInfo(old as TaskDocument)).toMatchObject({ kind: 'scheduled', scheduleName: null });
  });

  it('a document written before schema version 3 reads as claims = attempt, no unstarted claim, and a started lease', () => {
    const old = { ...doc, attempt: 2, lease: { owner: 'n', until: at(9), token: 't' } } as Partial<TaskDocument>;
    delete old.claims;
    delete old.unstartedClaims;
    delete old.claimOrder;
    const task = toTaskInfo(old as TaskDocument);
    expect(task).toMatchObject({ attempt: 2, claims: 2, unstartedClaims: 0, lease: { owner: 'n', until: at(9), token: 't', started: true } });
  });

  it('a stored lease keeps whether its run started; claims and unstarted claims are read as stored, even 0', () => {
    expect(toTaskInfo({ ...doc, lease: { owner: 'n', until: at(9), token: 't', started: true } }).lease?.started).toBe(true);
    expect(toTaskInfo({ ...doc, lease: { owner: 'n', until: at(9), token: 't', started: false } }).lease?.started).toBe(false);
    expect(toTaskInfo({ ...doc, attempt: 0, claims: 0, unstartedClaims: 0 })).toMatchObject({ attempt: 0, claims: 0, unstartedClaims: 0 });
    expect(toTaskInfo({ ...doc, attempt: 1, claims: 0 }).claims).toBe(0);
  });

  it('maps absent optional parts to null', () => {
    const bare = { ...doc, lease: null, lastError: null, progress: null, uniqueKey: null };
    expect(toTaskInfo(bare)).toMatchObject({ lease: null, lastError: null, progress: null, uniqueKey: null });
    const missing = { ...doc } as Partial<TaskDocument>;
    delete missing.uniqueKey;
    expect(toTaskInfo(missing as TaskDocument).uniqueKey).toBeNull();
  });

  it('returns a fresh param on every mapping', () => {
    const a = toTaskInfo(doc);
    (a.param as { $a: number[] }).$a.push(2);
    expect(toTaskInfo(doc).param).toEqual({ $a: [1] });
  });
});

describe('attempt mapping', () => {
  const at = (s: number): Date => new Date(Date.UTC(2030, 0, 1, 0, 0, s));
  const record: AttemptDocument = {
    run: 2,
    attempt: 1,
    node: 'n',
    startedAt: at(1),
    endedAt: at(3),
    outcome: 'retried',
    error: { message: 'boom', code: 'E' },
    checkIns: [{ at: at(2), message: 'half way' }],
  };

  it('maps every field and adds the task id', () => {
    expect(toTaskAttempt('t', record)).toEqual({
      taskId: 't',
      run: 2,
      attempt: 1,
      node: 'n',
      startedAt: at(1),
      endedAt: at(3),
      outcome: 'retried',
      error: { message: 'boom', code: 'E' },
      checkIns: [{ at: at(2), message: 'half way' }],
    });
  });

  it('maps a running record to endedAt and error null, and returns fresh check-ins', () => {
    const running = toTaskAttempt('t', { ...record, endedAt: null, outcome: 'running', error: null });
    expect(running).toMatchObject({ endedAt: null, outcome: 'running', error: null });
    running.checkIns.push({ at: at(9), message: 'x' });
    expect(record.checkIns).toHaveLength(1);
  });

  it('bounds a stored error that was edited by hand', () => {
    const mapped = toTaskAttempt('t', { ...record, error: { message: 'm'.repeat(MAX_ERROR_MESSAGE_LENGTH + 1), code: undefined } });
    expect(mapped.error).toEqual({ message: 'm'.repeat(MAX_ERROR_MESSAGE_LENGTH) });
  });
});

describe('sanitizeTaskError', () => {
  it('bounds message and stack and keeps only present string fields', () => {
    const error = sanitizeTaskError({ message: 'm'.repeat(MAX_ERROR_MESSAGE_LENGTH + 5), stack: 's'.repeat(MAX_ERROR_STACK_LENGTH + 5), name: 'E', code: undefined });
    expect(error.message).toHaveLength(MAX_ERROR_MESSAGE_LENGTH);
    expect(error.stack).toHaveLength(MAX_ERROR_STACK_LENGTH);
    expect(error).toEqual({ message: error.message, name: 'E', stack: error.stack });
    expect(Object.keys(error)).not.toContain('code');
  });
});
