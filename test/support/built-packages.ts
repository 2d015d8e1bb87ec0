/**
 * Tests that run real child processes give them the BUILT packages (dist): a child runs on plain Node, not on
 * vitest's TypeScript sources. One place builds them and names their entry points.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The file URL of a package's built entry point, for a child's `import()`. */
export function builtPackageUrl(pkg: string): string {
  return pathToFileURL(join(root, 'packages', pkg, 'dist', 'index.js')).href;
}

/**
 * Builds `packages` (and what they reference) with `tsc -b`: incremental, so seconds when little changed.
 *
 * @param packages - the package folders the children import, e.g. `['repo-sqlite']`
 * @throws Error when a package's dist (or a referenced core/storage dist) is missing after the build
 */
export function buildPackagesForChildren(packages: readonly string[]): void {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  try {
    execFileSync(process.execPath, [tsc, '-b', ...packages.map((pkg) => `packages/${pkg}`)], { cwd: root, stdio: 'pipe' });
  } catch {
    // Type errors elsewhere in the workspace still emit; the check below is what matters.
  }
  for (const pkg of new Set(['core', 'storage', ...packages])) {
    if (!existsSync(join(root, 'packages', pkg, 'dist', 'index.js'))) throw new Error(`packages/${pkg}/dist is missing after tsc -b: run npx tsc -b`);
  }
}
