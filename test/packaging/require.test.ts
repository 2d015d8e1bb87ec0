/**
 * Every published package can be `require()`d from CommonJS on Node >= 20.19, where `require()` of an ES module
 * works as long as its module graph has no top-level await. A child process on plain Node requires each built
 * package from the repository root (where node_modules/@horae/* and node_modules/horae link to the workspace), the
 * way an application's CommonJS code would, and reports the types of a few named exports.
 */
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildPackagesForChildren } from '../support/built-packages.js';

const run = promisify(execFile);
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Each entry point users may require, the package that ships it, the file it must resolve to and a few exports. */
const ENTRY_POINTS: readonly { specifier: string; pkg: string; file: string; names: readonly string[] }[] = [
  { specifier: '@horae/core', pkg: '@horae/core', file: 'packages/core/dist/index.js', names: ['Scheduler', 'HoraeError', 'createKey'] },
  { specifier: '@horae/core/testing', pkg: '@horae/core', file: 'packages/core/dist/testing/index.js', names: ['VirtualClock', 'nextEvent'] },
  { specifier: '@horae/storage', pkg: '@horae/storage', file: 'packages/storage/dist/index.js', names: ['MemoryRepository', 'WorkRegistry', 'RepositoryError'] },
  // Imports vitest (its optional peer) when loaded, which works outside a test run as long as vitest is installed.
  { specifier: '@horae/storage/testing', pkg: '@horae/storage', file: 'packages/storage/dist/testing/index.js', names: ['describeRepositoryConformance', 'describeRepositoryModel'] },
  { specifier: '@horae/repo-sqlite', pkg: '@horae/repo-sqlite', file: 'packages/repo-sqlite/dist/index.js', names: ['SqliteRepository', 'migrate'] },
  { specifier: '@horae/repo-postgres', pkg: '@horae/repo-postgres', file: 'packages/repo-postgres/dist/index.js', names: ['PostgresRepository', 'migrate'] },
  { specifier: '@horae/repo-mongo', pkg: '@horae/repo-mongo', file: 'packages/repo-mongo/dist/index.js', names: ['MongoRepository', 'migrate'] },
  { specifier: 'horae', pkg: 'horae', file: 'packages/horae/dist/index.js', names: ['createHorae', 'defineWork', 'SqliteRepository', 'Scheduler'] },
  { specifier: 'horae/testing', pkg: 'horae', file: 'packages/horae/dist/testing.js', names: ['VirtualClock', 'nextEvent'] },
  { specifier: '@horae/cli', pkg: '@horae/cli', file: 'packages/cli/dist/index.js', names: [] },
];

beforeAll(() => buildPackagesForChildren(['core', 'storage', 'repo-sqlite', 'repo-postgres', 'repo-mongo', 'horae', 'cli']), 120_000);

describe('each package can be require()d from CommonJS (no top-level await anywhere in its graph)', () => {
  it.each(ENTRY_POINTS)('require($specifier)', async ({ specifier, pkg, file, names }) => {
    // A CommonJS script, whatever the type of the package.json around the working directory.
    const source = `
      const m = require(${JSON.stringify(specifier)});
      const manifest = require(${JSON.stringify(`${pkg}/package.json`)});
      const types = Object.fromEntries(${JSON.stringify(names)}.map((name) => [name, typeof m[name]]));
      process.stdout.write(JSON.stringify({ resolved: require.resolve(${JSON.stringify(specifier)}), name: manifest.name, types }));
    `;
    let stdout: string;
    try {
      ({ stdout } = await run(process.execPath, ['--input-type=commonjs', '-e', source], { cwd: root, timeout: 30_000 }));
    } catch (error) {
      // ERR_REQUIRE_ASYNC_MODULE (a top-level await) lands here: show the child's own words.
      throw new Error(`require(${specifier}) failed in a CommonJS child:\n${(error as { stderr?: string }).stderr ?? String(error)}`);
    }
    const report = JSON.parse(stdout) as { resolved: string; name: string; types: Record<string, string> };
    // require() takes the "default" condition: the built file, never the TypeScript source.
    expect(report.resolved).toBe(join(root, file));
    expect(report.name).toBe(pkg);
    expect(report.types).toEqual(Object.fromEntries(names.map((name) => [name, 'function'])));
  });
});
