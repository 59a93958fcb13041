/**
 * The Graphite a test should use: the one the vitest global setup started for the whole run
 * (`test/global-setup.ts`), or, when a run has no global setup, one private instance per test
 * worker that dies with the worker.
 */
import { inject } from 'vitest';
import { connectGraphite, startGraphite, type GraphiteClient, type GraphiteHandle } from './graphite.js';

let privateInstance: Promise<GraphiteHandle> | undefined;

function providedEndpoint(): { url: string; carbonPort: number } | undefined {
  // Typed as always present, but absent at run time when the run has no global setup.
  const provided: unknown = inject('graphite');
  if (typeof provided !== 'object' || provided === null) return undefined;
  const url: unknown = Reflect.get(provided, 'url');
  const carbonPort: unknown = Reflect.get(provided, 'carbonPort');
  if (typeof url !== 'string' || typeof carbonPort !== 'number') throw new Error(`the provided graphite endpoint is malformed: ${JSON.stringify(provided)}`);
  return { url, carbonPort };
}

export async function sharedGraphite(): Promise<GraphiteClient> {
  const endpoint = providedEndpoint();
  if (endpoint !== undefined) return connectGraphite(endpoint);
  // The process exit hook of the harness kills it when the worker ends.
  privateInstance ??= startGraphite();
  return privateInstance;
}
