import { describe } from 'vitest';
import { describeRepositoryConformance } from '@horae/storage/testing';
import { MONGODB_URI, SKIPPED_TITLE, createMongoFixture } from './mongo-fixture.js';
import { mongoOnlyTests } from './mongo-only.js';

if (MONGODB_URI === undefined) console.warn(SKIPPED_TITLE);

describe.skipIf(MONGODB_URI === undefined)(MONGODB_URI === undefined ? SKIPPED_TITLE : 'MongoDB server', () => {
  describeRepositoryConformance('MongoRepository', () => createMongoFixture(MONGODB_URI!), { additionalTests: mongoOnlyTests });
});
