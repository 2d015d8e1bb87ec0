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

// Fewer sequences than on SQLite: each opens a schema and three pools; 20 add 3.5-12 s here, with the machine's load.
describeRepositoryModel('PostgresRepository', () => createPgFixture(), { runs: 20 });
