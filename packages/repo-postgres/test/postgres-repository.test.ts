import { describeRepositoryConformance } from '@horae/storage/testing';
import { createPgFixture } from './pg-fixture.js';
import { postgresHistoryTests } from './postgres-history.js';
import { postgresOnlyTests } from './postgres-only.js';

describeRepositoryConformance('PostgresRepository', () => createPgFixture(), {
  additionalTests: (fixture) => {
    postgresOnlyTests(fixture);
    postgresHistoryTests(fixture);
  },
});
