import { MongoClient as MongoClientFromImport } from 'mongodb';
import { HoraeError } from '@horae/core';
import { describe, expect, it } from 'vitest';
import { MongoClient, requireDriver } from '../src/mongodb-driver.js';

describe('mongodb-driver: the peer dependency mongodb', () => {
  it('is the same class an ESM import of mongodb gives, so a client the caller built and ours are alike', () => {
    expect(MongoClient).toBe(MongoClientFromImport);
  });

  it('a driver that is not installed is a HoraeError MISSING_DEPENDENCY naming the package and its install command', () => {
    const thrown = captureError(() => requireDriver('horae-no-such-driver', '@horae/repo-mongo'));
    expect(thrown).toBeInstanceOf(HoraeError);
    expect(thrown).toMatchObject({
      code: 'MISSING_DEPENDENCY',
      message: "@horae/repo-mongo needs the 'horae-no-such-driver' package: npm install horae-no-such-driver",
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
