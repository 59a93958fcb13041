/**
 * vitest globalSetup of the integration project: one real Graphite (carbon-cache + graphite-web)
 * for the whole test run, because starting it takes seconds, and one CLI bundle built from the
 * current source with the options of `npm run build`, which the spawned CLI runs (a bundle starts
 * in a third of the time `--import tsx` takes). Tests reach Graphite through `sharedGraphite()`
 * from `test/harness/shared-graphite.ts` and keep apart by writing under `uniquePrefix(...)`; the
 * bundle's path reaches the test workers as the environment variable CLI_BUNDLE_ENV names.
 */
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { bundleCli } from '../scripts/bundle.mjs';
import { CLI_BUNDLE_ENV } from './harness/cli.js';
import { startGraphite, type GraphiteEndpoint, type GraphiteHandle } from './harness/graphite.js';
import { makeTempDir, removeTempDir } from './harness/processes.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The shared Graphite of this test run. */
    graphite: GraphiteEndpoint;
  }
}

let graphite: GraphiteHandle | undefined;
let bundleDir: string | undefined;

export async function setup(project: TestProject): Promise<void> {
  bundleDir = makeTempDir('hw-cli-bundle');
  const bundle = join(bundleDir, 'cli.mjs');
  await bundleCli(bundle);
  chmodSync(bundle, 0o755);
  // Set before any test worker starts: every worker inherits it.
  process.env[CLI_BUNDLE_ENV] = bundle;
  graphite = await startGraphite();
  project.provide('graphite', { url: graphite.url, carbonPort: graphite.carbonPort });
}

export async function teardown(): Promise<void> {
  await graphite?.stop();
  graphite = undefined;
  if (bundleDir !== undefined) removeTempDir(bundleDir);
  bundleDir = undefined;
}
