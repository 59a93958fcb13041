import { defineConfig } from 'vitest/config';

// Integration tests start real HAProxy, carbon and graphite-web processes: give them room on a
// 2-core machine and keep unit tests fast by running them in the same pool.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    maxWorkers: 2,
  },
});
