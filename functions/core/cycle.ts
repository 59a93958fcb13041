import type { BackendConfig, Config } from './config.js';
import { ConfigError, HaproxyError, describeError } from './errors.js';
import { act, emptyActResult } from './act.js';
import { observeBackends, type Observation } from './observe.js';
import { measure, type Measurement } from './measure.js';
import { imbalanceOf, planBackend } from './plan.js';
import { staticKey, type BackendReport, type CycleOutcome, type CycleReport, type LoadBalancerPlanReport, type LoadBalancerReport } from './report.js';
import type { BackendPlan, MetricSource, RuntimeRelay } from './types.js';

export { exitCodeFor, staticKey } from './report.js';
export type { ApplyResult, BackendReport, CycleOutcome, CycleReport, LoadBalancerPlanReport, LoadBalancerReport, ServerFailure } from './report.js';

export interface CycleDeps {
  readonly config: Config;
  readonly metrics: MetricSource;
  readonly relay: RuntimeRelay;
  /** Milliseconds since the epoch; injected so the core never reads the clock itself. */
  readonly now: () => number;
}

export interface CycleOptions {
  /** `plan` observes and decides but never writes. */
  readonly mode: 'plan' | 'apply';
  /** Restrict the cycle to these backends (names must exist in the config). */
  readonly backends?: readonly string[];
  /** Write every eligible weight even when unchanged. */
  readonly force?: boolean;
  /**
   * `backend@loadBalancer` pairs that refused every weight as a static algorithm in an earlier
   * cycle (map-based hashing, which `show stat` cannot tell from consistent hashing): skipped as
   * unsupported instead of being retried every cycle. The caller decides how long it remembers.
   */
  readonly knownStatic?: readonly string[];
}

/** How long a long-running caller remembers a static refusal before trying that backend again. */
export const STATIC_MEMORY_MS = 60 * 60_000;

/**
 * The memory a long-running caller (`run`, a warm Lambda) keeps between cycles so that a backend
 * refusing every weight is not retried every cycle, yet is tried again after an hour (the
 * operator may have switched it to consistent hashing). Time is passed in, never read.
 */
export function createStaticMemory(ttlMs = STATIC_MEMORY_MS): { current(now: number): string[]; remember(keys: readonly string[], now: number): void } {
  const until = new Map<string, number>();
  return {
    current(now) {
      for (const [key, t] of until) if (t <= now) until.delete(key);
      return [...until.keys()];
    },
    remember(keys, now) {
      for (const key of keys) until.set(key, now + ttlMs);
    },
  };
}

function selectBackends(config: Config, names: readonly string[] | undefined): readonly BackendConfig[] {
  if (names === undefined) return config.backends;
  const known = new Set(config.backends.map((b) => b.name));
  const unknown = names.filter((n) => !known.has(n));
  if (unknown.length > 0) {
    throw new ConfigError(`Unknown backend(s) ${unknown.map((n) => JSON.stringify(n)).join(', ')}; configured: ${[...known].join(', ')}`);
  }
  return config.backends.filter((b) => names.includes(b.name));
}

type MeasureResult = { readonly ok: true; readonly measurement: Measurement } | { readonly ok: false; readonly error: string };

/** Step 1: one round trip per load balancer reads every selected backend. */
function observe(relay: RuntimeRelay, backends: readonly BackendConfig[]): Promise<Map<string, Map<string, Observation> | Error>> {
  const names = backends.map((b) => b.name);
  return observeBackends(relay, new Map(relay.loadBalancers.map((lb) => [lb, names])));
}

/** Step 2: one Graphite render per backend, in parallel; a failure skips only that backend. */
async function measureAll(metrics: MetricSource, backends: readonly BackendConfig[]): Promise<Map<string, MeasureResult>> {
  const entries = await Promise.all(
    backends.map(async (b): Promise<[string, MeasureResult]> => {
      try {
        const series = await metrics.render(b.target, b.from, b.until);
        return [b.name, { ok: true, measurement: measure(series, b) }];
      } catch (error) {
        return [b.name, { ok: false, error: describeError(error) }];
      }
    }),
  );
  return new Map(entries);
}

function skippedPlan(backend: string, loadBalancer: string, reason: Extract<BackendPlan, { status: 'skipped' }>['reason'], message: string): BackendPlan {
  return { status: 'skipped', backend, loadBalancer, reason, message, actions: [] };
}

/**
 * One rebalance cycle: observe every load balancer, measure every backend, decide per load
 * balancer, write one batch per load balancer, parse every reply, report. Never throws for a
 * failure of Graphite or of a load balancer: those are in the report. Throws ConfigError only for
 * a bad request (unknown backend name).
 */
export async function runCycle(deps: CycleDeps, options: CycleOptions): Promise<CycleReport> {
  const started = deps.now();
  const backends = selectBackends(deps.config, options.backends);
  const problems: string[] = [];

  const [observations, measurements] = await Promise.all([observe(deps.relay, backends), measureAll(deps.metrics, backends)]);

  // Step 3: decide, per backend and load balancer.
  const plans = new Map<string, Map<string, BackendPlan>>();
  for (const b of backends) {
    const m = measurements.get(b.name);
    const perLb = new Map<string, BackendPlan>();
    for (const lb of deps.relay.loadBalancers) {
      const lbObs = observations.get(lb);
      const obs = lbObs instanceof Map ? lbObs.get(b.name) : undefined;
      if (lbObs === undefined || lbObs instanceof Error) {
        perLb.set(lb, skippedPlan(b.name, lb, 'observe-failed', `cannot read ${lb}: ${describeError(lbObs ?? new Error('no reply'))}`));
      } else if (obs === undefined || !obs.ok) {
        const error = obs?.ok === false ? obs.error : new Error('no reply');
        const reason = error instanceof HaproxyError && error.kind === 'no-such-backend' ? 'backend-not-found' : 'observe-failed';
        perLb.set(lb, skippedPlan(b.name, lb, reason, `${lb}: backend ${b.name}: ${describeError(error)}`));
      } else if (options.knownStatic?.includes(staticKey(b.name, lb)) === true) {
        perLb.set(
          lb,
          skippedPlan(b.name, lb, 'unsupported-algorithm', `${lb}: backend ${b.name} refused every weight in an earlier cycle (a static algorithm such as map-based hashing): not retried until the weighter restarts or its memory expires; use 'hash-type consistent'`),
        );
      } else if (m === undefined || !m.ok) {
        perLb.set(lb, skippedPlan(b.name, lb, 'graphite-failed', `backend ${b.name}: no weight changed because Graphite failed: ${m?.ok === false ? m.error : 'no reply'}`));
      } else {
        perLb.set(lb, planBackend({ backend: b, loadBalancer: lb, observed: obs.backend, measurement: m.measurement, force: options.force === true }));
      }
    }
    plans.set(b.name, perLb);
  }

  // Step 4: act, one batch per load balancer holding every backend's changes.
  const acted = options.mode === 'apply' ? await act(deps.relay, backends, plans) : emptyActResult();
  const { applyResults, lbApply, lbErrors } = acted;
  const serversChanged = acted.serversChanged;
  problems.push(...acted.problems);

  // Step 5: report.
  const backendReports: BackendReport[] = backends.map((b) => {
    const m = measurements.get(b.name);
    const perLb = plans.get(b.name) ?? new Map<string, BackendPlan>();
    const loadBalancers: LoadBalancerPlanReport[] = [...perLb.entries()].map(([lb, plan]) => {
      if (plan.status === 'skipped') problems.push(plan.message);
      const apply = applyResults.get(b.name)?.get(lb) ?? (options.mode === 'apply' && plan.status === 'planned' ? { status: 'not-needed' as const } : undefined);
      return apply === undefined ? { loadBalancer: lb, plan } : { loadBalancer: lb, plan, apply };
    });
    // Series for servers that no load balancer has: named, and kept out of the imbalance.
    const known = new Set<string>();
    let observedAny = false;
    for (const lb of deps.relay.loadBalancers) {
      const lbObs = observations.get(lb);
      const obs = lbObs instanceof Map ? lbObs.get(b.name) : undefined;
      if (obs?.ok !== true) continue;
      observedAny = true;
      for (const s of obs.backend.servers) known.add(s.name);
    }
    const measured = m?.ok === true ? [...m.measurement.loads] : [];
    const strangers = observedAny ? measured.filter(([server]) => !known.has(server)).map(([server]) => server) : [];
    const loads = Object.fromEntries(measured.filter(([server]) => !strangers.includes(server)));
    return {
      backend: b.name,
      graphite:
        m?.ok === true
          ? { ok: true, unmapped: [...m.measurement.unmapped, ...strangers.map((s) => `${s} (no load balancer has this server)`)] }
          : { ok: false, error: m?.error ?? 'no reply' },
      loads,
      imbalance: imbalanceOf(Object.values(loads)),
      loadBalancers,
    };
  });

  const loadBalancers: LoadBalancerReport[] = deps.relay.loadBalancers.map((name) => {
    const obs = observations.get(name);
    const observeOk = obs instanceof Map;
    const apply = options.mode === 'plan' ? 'not-run' : (lbApply.get(name) ?? 'not-needed');
    const error = obs instanceof Error ? describeError(obs) : lbErrors.get(name);
    return error === undefined ? { name, observe: observeOk ? 'ok' : 'failed', apply } : { name, observe: observeOk ? 'ok' : 'failed', apply, error };
  });
  const failedLoadBalancers = loadBalancers.filter((lb) => lb.observe === 'failed' || lb.apply === 'failed').map((lb) => lb.name);
  const uniqueProblems = [...new Set(problems)];
  const outcome: CycleOutcome = uniqueProblems.length === 0 ? 'ok' : serversChanged > 0 ? 'partial' : 'failed';

  return {
    mode: options.mode,
    force: options.force === true,
    startedAt: new Date(started).toISOString(),
    durationMs: Math.max(0, deps.now() - started),
    outcome,
    backends: backendReports,
    loadBalancers,
    failedLoadBalancers,
    serversChanged,
    problems: uniqueProblems,
    staticRefusals: acted.staticRefusals,
  };
}
