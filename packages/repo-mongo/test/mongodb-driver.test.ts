import { MongoClient as MongoClientFromImport } from 'mongodb';
import { describe, expect, it } from 'vitest';
import { MongoClient } from '../src/mongodb-driver.js';

describe('mongodb-driver: the peer dependency mongodb', () => {
  it('is the same class an ESM import of mongodb gives, so a client the caller built and ours are alike', () => {
    expect(MongoClient).toBe(MongoClientFromImport);
  });
});
