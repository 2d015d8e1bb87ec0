import pgFromImport from 'pg';
import { describe, expect, it } from 'vitest';
import { pg } from '../src/pg-driver.js';

describe('pg-driver: the peer dependency pg', () => {
  it('is the same module an ESM import of pg gives, so a pool the caller built and ours share classes', () => {
    expect(pg.Pool).toBe(pgFromImport.Pool);
    expect(pg.Client).toBe(pgFromImport.Client);
  });
});
