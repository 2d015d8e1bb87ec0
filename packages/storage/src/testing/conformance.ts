import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { changeRules } from './rules/change-rules.js';
import { claimAheadRules } from './rules/claim-ahead-rules.js';
import { claimRules } from './rules/claim-rules.js';
import { historyRules } from './rules/history-rules.js';
import { hookOutboxRules } from './rules/hook-outbox-rules.js';
import { hookSubscriptionRules } from './rules/hook-subscription-rules.js';
import { insertRules } from './rules/insert-rules.js';
import { leaseRules } from './rules/lease-rules.js';
import { limitRules } from './rules/limit-rules.js';
import { listRules } from './rules/list-rules.js';
import { notFoundRules } from './rules/not-found-rules.js';
import { paramRules } from './rules/param-rules.js';
import { scheduleRules } from './rules/schedule-rules.js';
import { searchRules } from './rules/search-rules.js';
import { startRaceRules } from './rules/start-race-rules.js';
import { terminalRules } from './rules/terminal-rules.js';
import { transitionRules } from './rules/transition-rules.js';
import { uniqueKeyRules } from './rules/unique-key-rules.js';
import { unstartedClaimRules } from './rules/unstarted-claim-rules.js';
import { workLimitRules } from './rules/work-limit-rules.js';
import type { ConformanceOptions, RepositoryFixture, RuleGroup, SuiteContext } from './suite-context.js';

/** Every group of rules, in the order they are registered. */
const RULE_GROUPS: readonly RuleGroup[] = [
  insertRules,
  paramRules,
  notFoundRules,
  claimRules,
  claimAheadRules,
  unstartedClaimRules,
  leaseRules,
  terminalRules,
  transitionRules,
  changeRules,
  uniqueKeyRules,
  listRules,
  scheduleRules,
  historyRules,
  startRaceRules,
  workLimitRules,
  hookOutboxRules,
  hookSubscriptionRules,
  searchRules,
  limitRules,
];

/**
 * Registers the repository conformance suite: every rule of the {@link @horae/storage!index.Repository | Repository} contract as a vitest
 * test, each on a fresh fixture (created before and disposed after every test).
 *
 * Rule: an adapter passes when every rule it does not declare in `options.skip` passes; a declared skip
 * names the rule (its `it` title) or its group (its `describe` title) and says why. A skip that names no
 * rule fails the suite.
 *
 * The suite uses no sleeps: it expires leases with `leaseMs: 0`, and keeps its due times minutes away from
 * now, so a database clock a little off this process's clock does not matter. Strings never contain NUL,
 * which PostgreSQL's jsonb cannot hold.
 *
 * ### Examples
 * ```ts
 * import { describeRepositoryConformance } from '@horae/storage/testing';
 *
 * describeRepositoryConformance('SqliteRepository', async () => {
 *   const db = new Database(':memory:');
 *   const repository = new SqliteRepository({ db });
 *   return { repository, openPeer: async () => new SqliteRepository({ db }), dispose: async () => db.close() };
 * });
 * ```
 *
 * @param name - the adapter's name, the title of the outer describe block
 * @param createFixture - opens a repository on a fresh, empty store
 * @param options - declared skips and adapter-specific tests
 */
export function describeRepositoryConformance(name: string, createFixture: () => Promise<RepositoryFixture>, options: ConformanceOptions = {}): void {
  const skip = options.skip ?? {};
  const known = new Set<string>();

  describe(`${name}: Repository conformance`, () => {
    let current: RepositoryFixture | undefined;
    beforeEach(async () => {
      current = await createFixture();
    });
    afterEach(async () => {
      const fixture = current;
      current = undefined;
      await fixture?.dispose();
    });

    const fixture = (): RepositoryFixture => {
      // A harness misuse (reading the fixture outside a test), not a Horae failure.
      if (current === undefined) throw new Error('the repository fixture is only available inside a running test');
      return current;
    };
    const ctx: SuiteContext = {
      fixture,
      repo: () => fixture().repository,
      group: (groupName, body) => {
        known.add(groupName);
        const reason = skip[groupName];
        if (reason === undefined) describe(groupName, body);
        else describe.skip(`${groupName} [skipped: ${reason}]`, body);
      },
      rule: (ruleName, body) => {
        known.add(ruleName);
        const reason = skip[ruleName];
        if (reason === undefined) it(ruleName, body);
        else it.skip(`${ruleName} [skipped: ${reason}]`, body);
      },
    };
    for (const register of RULE_GROUPS) register(ctx);
    options.additionalTests?.(fixture);

    it('every declared skip names a rule of the suite', () => {
      expect(Object.keys(skip).filter((key) => !known.has(key))).toEqual([]);
    });
  });
}
