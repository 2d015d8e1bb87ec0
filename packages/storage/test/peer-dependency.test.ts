import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { HoraeError } from '@horae/core';
import { requirePeerDependency } from '@horae/storage';
import { describe, expect, it } from 'vitest';

function captureError(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected a throw');
}

describe('requirePeerDependency: a driver an adapter takes as a peer dependency', () => {
  it('loads an installed package as the module at `from` resolves it', () => {
    const loaded = requirePeerDependency<{ Pool: unknown }>('pg', '@horae/repo-postgres', import.meta.url);
    expect(typeof loaded.Pool).toBe('function');
  });

  it('a driver that is not installed is a HoraeError MISSING_DEPENDENCY naming the package and its install command', () => {
    const thrown = captureError(() => requirePeerDependency('horae-no-such-driver', '@horae/repo-postgres', import.meta.url));
    expect(thrown).toBeInstanceOf(HoraeError);
    expect(thrown).toMatchObject({
      code: 'MISSING_DEPENDENCY',
      message: "@horae/repo-postgres needs the 'horae-no-such-driver' package: npm install horae-no-such-driver",
    });
    // The resolver's own error stays reachable, with the paths it searched.
    expect((thrown as HoraeError).cause).toMatchObject({ code: 'MODULE_NOT_FOUND' });
  });

  it('a driver that is installed but fails while loading is rethrown as it is (installing it again would not help)', () => {
    // A module that resolves but throws while it loads.
    const dir = mkdtempSync(join(tmpdir(), 'horae-peer-'));
    try {
      writeFileSync(join(dir, 'broken-module.cjs'), "throw new Error('broken on load');\n");
      const thrown = captureError(() => requirePeerDependency('./broken-module.cjs', '@horae/repo-x', pathToFileURL(join(dir, 'adapter.js'))));
      expect(thrown).not.toBeInstanceOf(HoraeError);
      expect((thrown as Error).message).toMatch(/broken on load/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
