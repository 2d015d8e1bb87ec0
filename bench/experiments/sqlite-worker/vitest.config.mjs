// Runs the repository conformance suite (and the error-mapping checks) against the worker proxy, on the BUILT packages:
// the proxy rebuilds errors with the classes of packages/*/dist, so the tests must see those same classes (no "source"
// export condition here, unlike the workspace's vitest.config.ts).
//
// Usage (from the repository root, after `npx tsc -b packages/repo-sqlite`):
//   npx vitest run --config bench/experiments/sqlite-worker/vitest.config.mjs
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    root: fileURLToPath(new URL('.', import.meta.url)),
    include: ['*.test.mjs'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
