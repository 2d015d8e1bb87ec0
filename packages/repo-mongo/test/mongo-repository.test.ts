import { describe } from 'vitest';
import { WORK_LIMIT_GROUP, describeRepositoryConformance, describeRepositoryModel } from '@horae/storage/testing';
import { MONGODB_URI, SKIPPED_TITLE, createMongoFixture } from './mongo-fixture.js';
import { mongoOnlyTests } from './mongo-only.js';

if (MONGODB_URI === undefined) console.warn(SKIPPED_TITLE);

describe.skipIf(MONGODB_URI === undefined)(MONGODB_URI === undefined ? SKIPPED_TITLE : 'MongoDB server', () => {
  describeRepositoryConformance('MongoRepository', () => createMongoFixture(MONGODB_URI!), {
    additionalTests: mongoOnlyTests,
    skip: { [WORK_LIMIT_GROUP]: 'MongoRepository is not a WorkLimiter: counting the Working tasks of a work and claiming another document cannot be one atomic step without a multi-document transaction' },
  });
  // As many sequences as on PostgreSQL: each opens a database and three clients.
  describeRepositoryModel('MongoRepository', () => createMongoFixture(MONGODB_URI!), { runs: 15 });
});
