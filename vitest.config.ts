import { defineConfig } from 'vitest/config';

// Two projects: unit tests (test/unit) need no service and start nothing; integration tests
// (test/integration) get one real Graphite from the global setup and room to start real HAProxy,
// carbon and graphite-web processes on a 2-core machine. `vitest run` runs both;
// `--project unit` runs the unit tests alone.
export default defineConfig({
  test: {
    pool: 'forks',
    maxWorkers: 2,
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          // Generous for a loaded machine: a few unit tests spawn a shell.
          testTimeout: 30_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          globalSetup: ['test/global-setup.ts'],
          testTimeout: 60_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
