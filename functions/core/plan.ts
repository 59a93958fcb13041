import type { BackendConfig } from './config.js';
import { isStaticAlgorithm } from './haproxy-protocol.js';
import type { Measurement } from './measure.js';
import type { Action, BackendPlan, ObservedBackend, ObservedServer, WeightingInput } from './types.js';
import { MAX_WEIGHT, MIN_SET_WEIGHT } from './runtime-grammar.js';
import { computeWeights } from './weighting.js';

export interface PlanInput {
  readonly backend: BackendConfig;
  readonly loadBalancer: string;
  readonly observed: ObservedBackend;
  readonly measurement: Pick<Measurement, 'loads' | 'empty' | 'ambiguous'>;
  /** Write every eligible weight even when it equals the current one (e.g. after a reload). */
  readonly force?: boolean;
}


/** max/mean of the loads; null when undefined (no loads, or all zero). */
export function imbalanceOf(loads: Iterable<number>): number | null {
  let max = 0;
  let sum = 0;
  let n = 0;
  for (const load of loads) {
    max = Math.max(max, load);
    sum += load;
    n++;
  }
  return n === 0 || sum === 0 ? null : max / (sum / n);
}

const GUARD_DETAIL = {
  maint: 'in MAINT: operator state is never touched',
  drain: 'in DRAIN: operator state is never touched',
  'weight-zero': 'weight 0 set by an operator: never touched',
} as const;

function guardReason(server: ObservedServer): keyof typeof GUARD_DETAIL | null {
  // Operator decisions win: MAINT, DRAIN and weight 0 are how humans take a server out.
  if (server.admin === 'maint') return 'maint';
  if (server.admin === 'drain') return 'drain';
  if (server.weight === 0) return 'weight-zero';
  return null;
}

function clampChange(current: number, target: number, maxChange: number | undefined): number {
  const limited = maxChange === undefined ? target : Math.min(current + maxChange, Math.max(current - maxChange, target));
  return Math.min(MAX_WEIGHT, Math.max(MIN_SET_WEIGHT, Math.round(limited)));
}

/**
 * Decides the weights of one backend on one load balancer, from what that load balancer reports
 * and what Graphite measured. Pure: the same inputs always give the same plan. Fail static: a
 * doubt about the backend as a whole (static algorithm, too few servers with data) skips it, and a
 * doubt about one server keeps that server's weight.
 */
export function planBackend(input: PlanInput): BackendPlan {
  const { backend, loadBalancer, observed, measurement } = input;
  const base = { backend: backend.name, loadBalancer };

  const guarded: Action[] = [];
  const eligible: { server: ObservedServer; load: number }[] = [];
  let withoutData = 0;
  // Sets, not lists: a backend of 10,000 servers without data must not cost 10,000 x 10,000.
  const ambiguous = new Set(measurement.ambiguous);
  const empty = new Set(measurement.empty);
  for (const server of observed.servers) {
    const load = measurement.loads.get(server.name);
    // A server the runtime API cannot address is left alone, and only it: not its backend.
    if (server.unaddressable !== undefined) {
      guarded.push({ kind: 'skip', server: server.name, load: load ?? null, current: server.weight, reason: 'unaddressable', detail: server.unaddressable });
      continue;
    }
    const reason = guardReason(server);
    if (reason !== null) {
      guarded.push({ kind: 'skip', server: server.name, load: load ?? null, current: server.weight, reason, detail: GUARD_DETAIL[reason] });
      continue;
    }
    if (load === undefined) {
      withoutData++;
      const detail = ambiguous.has(server.name)
        ? 'several Graphite series map to this server: keeps its weight'
        : empty.has(server.name)
          ? 'only null points in the window: keeps its weight'
          : 'no Graphite series for this server: keeps its weight';
      guarded.push({ kind: 'skip', server: server.name, load: null, current: server.weight, reason: 'no-data', detail });
      continue;
    }
    eligible.push({ server, load });
  }

  const observedOnly = (): Action[] => {
    const guardedByServer = new Map(guarded.map((a) => [a.server, a]));
    return observed.servers.map((s) => {
      const done = guardedByServer.get(s.name);
      if (done !== undefined) return done;
      return { kind: 'unchanged', server: s.name, load: measurement.loads.get(s.name) ?? 0, current: s.weight };
    });
  };

  if (isStaticAlgorithm(observed.algorithm)) {
    return {
      ...base,
      status: 'skipped',
      reason: 'unsupported-algorithm',
      message: `uses '${observed.algorithm}', a static algorithm that only accepts weights 0% and 100%: use leastconn, roundrobin, random, first or consistent hashing`,
      algorithm: observed.algorithm,
      actions: observedOnly(),
    };
  }
  const candidates = eligible.length + withoutData;
  if (candidates === 0) {
    return { ...base, status: 'skipped', reason: 'no-servers', message: 'has no server we may weight', algorithm: observed.algorithm, actions: observedOnly() };
  }
  if (eligible.length / candidates < backend.quorum) {
    return {
      ...base,
      status: 'skipped',
      reason: 'no-quorum',
      message: `only ${eligible.length} of ${candidates} servers have data, quorum is ${Math.round(backend.quorum * 100)}%: no weight changed`,
      algorithm: observed.algorithm,
      actions: observedOnly(),
    };
  }

  const inputs: WeightingInput[] = eligible.map(({ server, load }) => ({ load, weight: server.weight, sessions: server.sessions }));
  const targets = computeWeights(inputs, backend.weighting);
  const decided = new Map<string, Action>();
  eligible.forEach(({ server, load }, i) => {
    const weight = clampChange(server.weight, targets[i] ?? server.weight, backend.maxChangePerCycle);
    decided.set(
      server.name,
      weight === server.weight && input.force !== true
        ? { kind: 'unchanged', server: server.name, load, current: server.weight }
        : { kind: 'set-weight', server: server.name, load, current: server.weight, weight },
    );
  });
  for (const a of guarded) decided.set(a.server, a);

  const actions = observed.servers.flatMap((s) => {
    const a = decided.get(s.name);
    return a === undefined ? [] : [a];
  });
  return { ...base, status: 'planned', algorithm: observed.algorithm, imbalance: imbalanceOf(eligible.map((e) => e.load)), actions };
}
