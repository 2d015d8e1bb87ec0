import { describeRepositoryConformance, describeRepositoryModel } from '@horae/storage/testing';
import { createFileFixture } from './temp-database.js';

describeRepositoryConformance('SqliteRepository', () => createFileFixture());

describeRepositoryConformance('SqliteRepository without group commit', () => createFileFixture({ groupCommit: false }));

describeRepositoryModel('SqliteRepository', () => createFileFixture());

describeRepositoryModel('SqliteRepository without group commit', () => createFileFixture({ groupCommit: false }));
