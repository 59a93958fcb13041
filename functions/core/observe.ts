import { describeError } from './errors.js';
import { observeCommands, parseObservedBackend, splitReplies } from './haproxy-protocol.js';
import type { ObservedBackend, RelayRequest, RelayRunOptions, RuntimeRelay } from './types.js';

/** One backend as one load balancer reported it, or why it could not be read. */
export type Observation = { readonly ok: true; readonly backend: ObservedBackend } | { readonly ok: false; readonly error: Error };

const asError = (error: unknown): Error => (error instanceof Error ? error : new Error(describeError(error)));

/**
 * Reads backends from load balancers: one round trip per load balancer, `show stat` and `show
 * servers state` for each of its backends in one batch. A load balancer that fails gives an Error;
 * a backend that fails on a load balancer that answered gives a failed Observation, and never
 * hides the others.
 */
export async function observeBackends(
  relay: RuntimeRelay,
  backendsPerLoadBalancer: ReadonlyMap<string, readonly string[]>,
  budget: RelayRunOptions = {},
): Promise<Map<string, Map<string, Observation> | Error>> {
  const requests: RelayRequest[] = [...backendsPerLoadBalancer].map(([loadBalancer, backends]) => ({ loadBalancer, commands: backends.flatMap((b) => observeCommands(b)) }));
  const out = new Map<string, Map<string, Observation> | Error>();
  if (requests.length === 0) return out;
  const results = await relay.run(requests, budget);
  for (const result of results) {
    const req = requests.find((r) => r.loadBalancer === result.loadBalancer);
    const backends = backendsPerLoadBalancer.get(result.loadBalancer);
    if (req === undefined || backends === undefined) continue;
    if (!result.ok) {
      out.set(result.loadBalancer, result.error);
      continue;
    }
    try {
      out.set(result.loadBalancer, observationsFrom(backends, splitReplies(req.commands, result.reply), result.loadBalancer));
    } catch (error) {
      out.set(result.loadBalancer, asError(error));
    }
  }
  return out;
}

/**
 * Each backend's observation from the replies to its observeCommands (`blocks`, in the backends'
 * order): one that cannot be parsed is a failed Observation and never hides the others.
 */
export function observationsFrom(backends: readonly string[], blocks: readonly string[], loadBalancer: string): Map<string, Observation> {
  const perBackend = new Map<string, Observation>();
  backends.forEach((b, i) => {
    try {
      perBackend.set(b, { ok: true, backend: parseObservedBackend(b, blocks[2 * i] ?? '', blocks[2 * i + 1] ?? '', { loadBalancer }) });
    } catch (error) {
      perBackend.set(b, { ok: false, error: asError(error) });
    }
  });
  return perBackend;
}
