import { describeRepositoryConformance } from '@horae/storage/testing';
import { createPgFixture } from './pg-fixture.js';
import { postgresOnlyTests } from './postgres-only.js';

describeRepositoryConformance('PostgresRepository', () => createPgFixture(), { additionalTests: postgresOnlyTests });
