/**
 * `pg` and `mongodb` are peer dependencies: an application that forgot to install one must be told which
 * package to install, in a HoraeError, when it loads the adapter. Each case builds an application folder in a
 * temp dir whose node_modules holds the built adapter (copied, so the driver cannot be found beside it in the
 * workspace) and links to @horae/core and @horae/storage, with or without the driver, and loads the adapter in
 * a child on plain Node, from CommonJS and from ESM.
 */
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildPackagesForChildren } from '../support/built-packages.js';

const run = promisify(execFile);
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const folders: string[] = [];

beforeAll(() => buildPackagesForChildren(['repo-postgres', 'repo-mongo']), 120_000);
afterAll(() => {
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

/** What a child saw when it loaded a module. */
interface Outcome {
  /** Whether the driver could be resolved from the adapter's folder (false is the premise of the missing cases). */
  driverResolvable: boolean;
  /** The error the load threw, or null when it loaded. */
  error: { name: string; code: unknown; message: string; isHoraeError: boolean } | null;
}

/**
 * An application folder: node_modules/@horae/{core,storage} link to the workspace, the adapter's package.json and
 * dist are copied in, and the driver is linked only when `withDriver`.
 */
function applicationFolder(adapter: 'repo-postgres' | 'repo-mongo', driver: string, withDriver: boolean): string {
  const folder = mkdtempSync(join(tmpdir(), 'horae-peer-'));
  folders.push(folder);
  const scope = join(folder, 'node_modules', '@horae');
  mkdirSync(scope, { recursive: true });
  for (const linked of ['core', 'storage']) symlinkSync(join(root, 'packages', linked), join(scope, linked), 'dir');
  cpSync(join(root, 'packages', adapter, 'package.json'), join(scope, adapter, 'package.json'));
  cpSync(join(root, 'packages', adapter, 'dist'), join(scope, adapter, 'dist'), { recursive: true });
  if (withDriver) symlinkSync(join(root, 'node_modules', driver), join(folder, 'node_modules', driver), 'dir');
  return folder;
}

/**
 * Loads `target` (a package name, or an absolute path to one file) in a child started in `folder`, by
 * `require()` or by `import()`.
 */
async function load(folder: string, target: string, driver: string, adapterDir: string, how: 'require' | 'import'): Promise<Outcome> {
  const body = `
    let driverResolvable = true;
    try { require.resolve(${JSON.stringify(driver)}, { paths: [${JSON.stringify(adapterDir)}] }); } catch { driverResolvable = false; }
    let error = null;
    try {
      ${how === 'require' ? `require(${JSON.stringify(target)});` : `await import(${JSON.stringify(target)});`}
    } catch (e) {
      const { HoraeError } = require('@horae/core');
      error = { name: e.name, code: e.code, message: e.message, isHoraeError: e instanceof HoraeError };
    }
    process.stdout.write(JSON.stringify({ driverResolvable, error }));
  `;
  const source =
    how === 'require'
      ? body
      : `import { createRequire } from 'node:module'; const require = createRequire(${JSON.stringify(join(folder, 'app.js'))});\n${body}`;
  const { stdout } = await run(process.execPath, [`--input-type=${how === 'require' ? 'commonjs' : 'module'}`, '-e', source], {
    cwd: folder,
    timeout: 30_000,
  });
  return JSON.parse(stdout) as Outcome;
}

const ADAPTERS = [
  { adapter: 'repo-postgres', pkg: '@horae/repo-postgres', driver: 'pg', driverModule: 'pg-driver.js' },
  { adapter: 'repo-mongo', pkg: '@horae/repo-mongo', driver: 'mongodb', driverModule: 'mongodb-driver.js' },
] as const;

describe.each(ADAPTERS)('$pkg without its peer dependency $driver', ({ adapter, pkg, driver, driverModule }) => {
  const expected = {
    name: 'HoraeError',
    code: 'MISSING_DEPENDENCY',
    message: `${pkg} needs the '${driver}' package: npm install ${driver}`,
    isHoraeError: true,
  };

  it.for(['require', 'import'] as const)('loading the package by %s() throws MISSING_DEPENDENCY naming the install', async (how) => {
    const folder = applicationFolder(adapter, driver, false);
    const outcome = await load(folder, pkg, driver, join(folder, 'node_modules', pkg), how);
    expect(outcome).toEqual({ driverResolvable: false, error: expected });
  });

  it(`loading its driver module (dist/${driverModule}) by require() throws MISSING_DEPENDENCY naming the install`, async () => {
    const folder = applicationFolder(adapter, driver, false);
    const adapterDir = join(folder, 'node_modules', pkg);
    const outcome = await load(folder, join(adapterDir, 'dist', driverModule), driver, adapterDir, 'require');
    expect(outcome).toEqual({ driverResolvable: false, error: expected });
  });

  it(`the same folder with ${driver} installed loads the package (the folder is sound; only the driver was missing)`, async () => {
    const folder = applicationFolder(adapter, driver, true);
    const outcome = await load(folder, pkg, driver, join(folder, 'node_modules', pkg), 'require');
    expect(outcome).toEqual({ driverResolvable: true, error: null });
  });
});
