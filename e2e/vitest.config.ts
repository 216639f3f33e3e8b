import { defineConfig } from 'vitest/config';

// The end-to-end suite: its own config, so the root `vitest run` (make test) never picks it up.
// Files run one after another: each starts three service processes and a worker, and this
// machine may have two cores shared with other test runs.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['./src/global-setup.ts'],
    testTimeout: 90_000,
    hookTimeout: 120_000,
    pool: 'forks',
    fileParallelism: false,
    reporters: ['default'],
  },
});
