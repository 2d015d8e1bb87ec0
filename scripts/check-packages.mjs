// Checks what each published package would ship, as the registry would receive it (npm pack), with the two
// tools the ecosystem uses: publint (package.json fields against the packed files: exports, types, files,
// engines) and are-the-types-wrong (how TypeScript resolves each export under each module resolution mode).
// Exits non-zero on any publint error or warning, or any attw problem. Expects dist built: run it through
// `npm run lint:packages`, which builds first.
//
// attw profile: `node16` with the rule `cjs-resolves-to-esm` ignored. Horae is ESM only and needs Node >= 20.19,
// where require() of an ES module without top-level await works, so "a require() call resolves to ESM" is not
// a fault for us (test/packaging/require.test.ts proves each package loads that way). The `esm-only` profile
// would hide the same warning but also skip the whole "node16 from CJS" column, so a CommonJS TypeScript
// project that could not resolve our types at all would pass unseen; `node16` still checks that column and
// only leaves out `node10` (TypeScript's pre-exports resolution, which cannot read an exports map).
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { publint } from 'publint';
import { formatMessage } from 'publint/utils';

const run = promisify(execFile);
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// attw's own package (@arethetypeswrong/cli) exports no entry point, only its package.json: its bin is found through that.
const attwManifest = createRequire(import.meta.url).resolve('@arethetypeswrong/cli/package.json');
const attwBin = join(dirname(attwManifest), JSON.parse(readFileSync(attwManifest, 'utf8')).bin.attw);

// Every package that is published (the root package is private and is never packed).
const PACKAGES = ['core', 'storage', 'repo-sqlite', 'repo-postgres', 'repo-mongo', 'horae', 'cli'];

/** Runs both checks on one package; returns its report lines and whether it passed. */
async function check(dir) {
  const pkgDir = join(root, 'packages', dir);
  const lines = [];
  let ok = true;

  const { messages, pkg } = await publint({ pkgDir, level: 'suggestion', pack: 'npm' });
  for (const message of messages) {
    // Suggestions are printed but do not fail the check; errors and warnings do.
    if (message.type !== 'suggestion') ok = false;
    lines.push(`  publint ${message.type}: ${formatMessage(message, pkg)}`);
  }
  if (messages.length === 0) lines.push('  publint: all good');

  // attw runs after publint, not beside it: --pack writes a tarball into the package folder.
  const args = [attwBin, '--pack', pkgDir, '--profile', 'node16', '--ignore-rules', 'cjs-resolves-to-esm', '--format', 'table-flipped', '--no-color'];
  try {
    await run(process.execPath, args, { cwd: root, maxBuffer: 16 * 1024 * 1024 });
    lines.push('  attw: no problems (profile node16, cjs-resolves-to-esm ignored)');
  } catch (error) {
    ok = false;
    lines.push(`  attw: problems found\n${error.stdout ?? ''}${error.stderr ?? ''}`);
  }
  return { dir, name: pkg.name, ok, lines };
}

const started = Date.now();
// Packages are independent, so they are checked side by side.
const results = await Promise.all(PACKAGES.map(check));
for (const { name, ok, lines } of results) {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}`);
  for (const line of lines) console.log(line);
}
const failed = results.filter((result) => !result.ok);
console.log(`${results.length - failed.length}/${results.length} packages pass publint and attw (${((Date.now() - started) / 1000).toFixed(1)} s)`);
process.exit(failed.length === 0 ? 0 : 1);
