import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '@horae/repo-sqlite';
import { POSITIONAL_ORDER, STATEMENT_SQL, positionalSql, type PositionalName } from '../src/statements.js';

// The hot statements run with anonymous parameters (positionalSql); query-plan.test.ts explains their named text. The
// two must be the same statement: the same text but for the parameters, and the same plan.
const VALUES: Record<string, unknown> = { owner: 'o', until: 1, newToken: 't', now: 0, seq: 1, id: 'x', ifScheduledAt: null, knownSeq: 1, token: 't', run: 1, attempt: 1, outcome: 'succeeded', error: null };

let db: Database.Database;
beforeAll(() => {
  db = new Database(':memory:');
  migrate(db);
});
afterAll(() => db.close());

describe('statements bound in order', () => {
  for (const name of Object.keys(POSITIONAL_ORDER) as PositionalName[]) {
    it(`${name}: the named text with anonymous parameters, and the same plan`, () => {
      const sql = positionalSql(name);
      expect(sql).toBe(STATEMENT_SQL[name].replace(/@\w+/g, '?'));
      const named = db.prepare(`EXPLAIN QUERY PLAN ${STATEMENT_SQL[name]}`).all(VALUES);
      const positional = db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...POSITIONAL_ORDER[name].map((key) => VALUES[key]));
      expect(positional).toEqual(named);
    });
  }

  it('an order that is not the statement’s is refused when the repository prepares it', () => {
    const order = POSITIONAL_ORDER as unknown as Record<string, string[]>;
    const saved = order.closeAttempt!;
    order.closeAttempt = [...saved].reverse();
    try {
      expect(() => positionalSql('closeAttempt')).toThrow(/not the order its callers use/);
    } finally {
      order.closeAttempt = saved;
    }
  });
});
