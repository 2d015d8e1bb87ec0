import { describeRepositoryConformance, describeRepositoryModel } from '@horae/storage/testing';
import { createPgFixture } from './pg-fixture.js';
import { postgresHistoryTests } from './postgres-history.js';
import { postgresOnlyTests } from './postgres-only.js';

describeRepositoryConformance('PostgresRepository', () => createPgFixture(), {
  additionalTests: (fixture) => {
    postgresOnlyTests(fixture);
    postgresHistoryTests(fixture);
  },
});

// Fewer sequences than on SQLite: each opens a schema and three pools, so that the model adds about 10-20 s here.
describeRepositoryModel('PostgresRepository', () => createPgFixture(), { runs: 15 });
