import { defineConfig } from 'vitest/config';

// Tests run against the TypeScript sources through the "source" export condition, so no build is
// needed before `vitest`.
export default defineConfig({
  resolve: { conditions: ['source'] },
  ssr: { resolve: { conditions: ['source'] } },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Suites that talk to one shared database run their files one after another.
    fileParallelism: true,
  },
});
