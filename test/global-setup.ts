/**
 * vitest globalSetup: one real Graphite (carbon-cache + graphite-web) for the whole test run,
 * because starting it takes seconds. Tests reach it through `sharedGraphite()` from
 * `test/harness/shared-graphite.ts` and keep apart by writing under `uniquePrefix(...)`.
 */
import type { TestProject } from 'vitest/node';
import { startGraphite, type GraphiteEndpoint, type GraphiteHandle } from './harness/graphite.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The shared Graphite of this test run. */
    graphite: GraphiteEndpoint;
  }
}

let graphite: GraphiteHandle | undefined;

export async function setup(project: TestProject): Promise<void> {
  graphite = await startGraphite();
  project.provide('graphite', { url: graphite.url, carbonPort: graphite.carbonPort });
}

export async function teardown(): Promise<void> {
  await graphite?.stop();
  graphite = undefined;
}
