/**
 * `@horae/storage/testing`: the repository conformance suite. Every adapter runs it in one line; it needs
 * vitest (an optional peer dependency of `@horae/storage`).
 *
 * @packageDocumentation
 */
export { describeRepositoryConformance } from './conformance.js';
export type { ConformanceOptions, RepositoryFixture } from './suite-context.js';
export { WORK_LIMIT_GROUP } from './rules/work-limit-rules.js';
export { DEFAULT_MODEL_SEED, describeRepositoryModel } from './model/describe-repository-model.js';
export type { RepositoryModelOptions } from './model/describe-repository-model.js';
