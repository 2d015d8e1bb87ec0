import type { Repository } from '../contract/repository.js';

/**
 * What an adapter hands the conformance suite: a repository on a fresh store, and the means to open more
 * clients on that store and to drop it.
 *
 * ### Examples
 * ```ts
 * const fixture: RepositoryFixture = {
 *   repository: new MemoryRepository(),
 *   openPeer: () => Promise.resolve(fixture.repository.openPeer()),
 *   dispose: () => Promise.resolve(),
 * };
 * ```
 */
export interface RepositoryFixture {
  /** A repository on a fresh, empty store. */
  repository: Repository;
  /** Opens another client on the same store (a second connection/handle) for races between clients. */
  openPeer(): Promise<Repository>;
  /** Drops the store and closes every client it opened (including peers). */
  dispose(): Promise<void>;
}

/** Options of {@link describeRepositoryConformance}. */
export interface ConformanceOptions {
  /**
   * Names of rules (the `it` titles or group names) the adapter declares it cannot do; each is skipped with
   * that reason. A name that matches no rule fails the suite, so a typo cannot hide a rule.
   *
   * @defaultValue `{}`
   */
  skip?: Record<string, string>;
  /** Extra adapter-specific tests registered inside the same describe block. */
  additionalTests?: (fixture: () => RepositoryFixture) => void;
}

/**
 * How a group of rules registers itself: through `group` and `rule`, which honour the adapter's declared
 * skips, and `fixture`/`repo`, which read the fixture of the running test.
 */
export interface SuiteContext {
  /** The fixture of the running test. */
  fixture: () => RepositoryFixture;
  /** The repository of the running test's fixture. */
  repo: () => Repository;
  /** Registers a `describe` block, skipped when the adapter declared its name. */
  group: (name: string, body: () => void) => void;
  /** Registers an `it`, skipped when the adapter declared its title. */
  rule: (name: string, body: () => Promise<void>) => void;
}

/** A file of rules: registers its groups on the context. */
export type RuleGroup = (ctx: SuiteContext) => void;
