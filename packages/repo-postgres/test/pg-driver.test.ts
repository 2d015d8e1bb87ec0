import pgFromImport from 'pg';
import { HoraeError } from '@horae/core';
import { describe, expect, it } from 'vitest';
import { pg, requireDriver } from '../src/pg-driver.js';

describe('pg-driver: the peer dependency pg', () => {
  it('is the same module an ESM import of pg gives, so a pool the caller built and ours share classes', () => {
    expect(pg.Pool).toBe(pgFromImport.Pool);
    expect(pg.Client).toBe(pgFromImport.Client);
  });

  it('a driver that is not installed is a HoraeError MISSING_DEPENDENCY naming the package and its install command', () => {
    const thrown = captureError(() => requireDriver('horae-no-such-driver', '@horae/repo-postgres'));
    expect(thrown).toBeInstanceOf(HoraeError);
    expect(thrown).toMatchObject({
      code: 'MISSING_DEPENDENCY',
      message: "@horae/repo-postgres needs the 'horae-no-such-driver' package: npm install horae-no-such-driver",
    });
    // The resolver's own error stays reachable, with the paths it searched.
    expect((thrown as HoraeError).cause).toMatchObject({ code: 'MODULE_NOT_FOUND' });
  });
});

function captureError(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected a throw');
}
