/**
 * Errors that no retry can cure are answers, not outages (issue 10, defect 1), on MongoDB: a key too large to index
 * (17280, servers before 4.2), a value the server refuses (2 BadValue, 14 TypeMismatch), a document that fails a
 * validator (121), a document the driver cannot send (MongoInvalidArgumentError) or encode (BSONError). Each was a
 * RepositoryError, retried forever by the durable writer. There is no MongoDB server here: the errors are the
 * driver's own classes, built as the driver builds them.
 */
import { BSON, MongoBulkWriteError, MongoInvalidArgumentError, MongoNetworkError, MongoServerError } from 'mongodb';
import { VirtualClock } from '@horae/core/testing';
import { DurableWriter, RepositoryError, ValueRefusedError } from '@horae/storage';
import { describe, expect, it } from 'vitest';
import { isRefusal, translateMongoError } from '../src/translate-error.js';

const server = (code: number, message: string): MongoServerError => new MongoServerError({ message, code });

describe('MongoDB refusals that no retry can cure', () => {
  it('turns each refusal into a ValueRefusedError naming the server code or the driver error', () => {
    const cases: [unknown, string][] = [
      [server(17280, 'WiredTigerIndex::insert: key too large to index'), '17280'],
      [server(2, 'BadValue'), '2'],
      [server(14, 'TypeMismatch'), '14'],
      [server(121, 'Document failed validation'), '121'],
      [server(10334, 'BSONObj size: 16793601 is invalid'), '10334'],
      [new MongoInvalidArgumentError('Document is larger than the maximum size 16777216'), 'MongoInvalidArgumentError'],
      [new BSON.BSONError('cannot encode'), 'BSONError'],
    ];
    for (const [cause, driverCode] of cases) {
      const error = translateMongoError(cause, 'insert a task');
      expect(error, driverCode).toBeInstanceOf(ValueRefusedError);
      expect((error as ValueRefusedError).driverCode).toBe(driverCode);
      expect((error as ValueRefusedError).cause).toBe(cause);
      expect(isRefusal(cause)).toBe(true);
    }
  });

  it('reads the code of a bulk write from its first failed write', () => {
    const bulk = new MongoBulkWriteError(
      { message: 'write failed', code: undefined, writeErrors: [{ index: 0, code: 17280, errmsg: 'key too large to index' }] } as never,
      { insertedCount: 0, matchedCount: 0, modifiedCount: 0, deletedCount: 0, upsertedCount: 0, insertedIds: {}, upsertedIds: {} } as never,
    );
    expect(isRefusal(bulk)).toBe(true);
  });

  it('keeps network errors, elections and missing privileges as outages', () => {
    for (const cause of [new MongoNetworkError('connection reset'), server(10107, 'not primary'), server(13, 'Unauthorized'), server(91, 'ShutdownInProgress')]) {
      expect(translateMongoError(cause, 'claim task 1'), cause.message).toBeInstanceOf(RepositoryError);
    }
  });

  it('the durable writer throws a refusal at once instead of retrying it', async () => {
    let calls = 0;
    let retried = false;
    const writer = new DurableWriter({ clock: new VirtualClock(), onError: () => void (retried = true) });
    const error = await writer
      .run('insert', 't', async () => {
        calls++;
        await Promise.resolve();
        throw translateMongoError(server(17280, 'key too large to index'), 'insert a task');
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValueRefusedError);
    expect(calls).toBe(1);
    expect(retried).toBe(false);
  });

  it('quotes at most 200 characters of the driver message', () => {
    const error = translateMongoError(server(2, `bad value ${'x'.repeat(1_000_000)}`), 'insert a task') as Error;
    expect(error.message.length).toBeLessThan(400);
  });
});
