import { InvalidInputError } from '@horae/core';
import { MongoNetworkError, MongoNetworkTimeoutError, MongoServerError, MongoTopologyClosedError } from 'mongodb';
import { describe, expect, it } from 'vitest';
import { LeaseLostError, RepositoryError } from '@horae/storage';
import { UNIQUE_KEY_INDEX } from '../src/schema.js';
import { duplicateKeyIndex, isDuplicateKeyError, translateMongoError } from '../src/translate-error.js';

const duplicate = (fields: Record<string, unknown>): MongoServerError => new MongoServerError({ message: 'E11000 duplicate key error', code: 11000, ...fields });

describe('translateMongoError', () => {
  it('turns a duplicate key (11000) into InvalidInputError with the driver error as cause', () => {
    const cause = duplicate({ keyPattern: { _id: 1 } });
    const error = translateMongoError(cause, 'insert a task');
    expect(error).toBeInstanceOf(InvalidInputError);
    expect((error as InvalidInputError).cause).toBe(cause);
    expect(isDuplicateKeyError(cause)).toBe(true);
  });

  it('turns network and server-selection failures into RepositoryError with the cause', () => {
    for (const cause of [new MongoNetworkError('connection reset'), new MongoNetworkTimeoutError('timed out'), new MongoTopologyClosedError(), new MongoServerError({ message: 'not primary', code: 10107 })]) {
      const error = translateMongoError(cause, 'claim task 1');
      expect(error, cause.name).toBeInstanceOf(RepositoryError);
      expect((error as RepositoryError).code).toBe('REPOSITORY_UNAVAILABLE');
      expect((error as RepositoryError).cause).toBe(cause);
      expect((error as Error).message).toContain('claim task 1');
    }
  });

  it('turns an over-large document into InvalidInputError', () => {
    expect(translateMongoError(new MongoServerError({ message: 'BSONObjectTooLarge', code: 10334 }), 'insert a task')).toBeInstanceOf(InvalidInputError);
  });

  it('passes Horae errors and programming errors through unchanged', () => {
    const lost = new LeaseLostError('t');
    expect(translateMongoError(lost, 'x')).toBe(lost);
    const bug = new TypeError('x is undefined');
    expect(translateMongoError(bug, 'x')).toBe(bug);
  });
});

describe('duplicateKeyIndex', () => {
  it('reads the index from the key pattern', () => {
    expect(duplicateKeyIndex(duplicate({ keyPattern: { _id: 1 } }), UNIQUE_KEY_INDEX)).toBe('id');
    expect(duplicateKeyIndex(duplicate({ keyPattern: { uniqueKey: 1 } }), UNIQUE_KEY_INDEX)).toBe('uniqueKey');
  });

  it('falls back on the index name in the message (older servers)', () => {
    expect(duplicateKeyIndex(new MongoServerError({ message: `E11000 duplicate key error collection: db.horae_tasks index: ${UNIQUE_KEY_INDEX} dup key: { uniqueKey: "k" }`, code: 11000 }), UNIQUE_KEY_INDEX)).toBe('uniqueKey');
    expect(duplicateKeyIndex(new MongoServerError({ message: 'E11000 duplicate key error collection: db.horae_tasks index: _id_ dup key: { _id: "x" }', code: 11000 }), UNIQUE_KEY_INDEX)).toBe('id');
    expect(duplicateKeyIndex(new MongoServerError({ message: 'E11000', code: 11000 }), UNIQUE_KEY_INDEX)).toBe('unknown');
  });
});
