import type { BackendConfig, Config } from './config.js';
import { ConfigError, HaproxyError, describeError } from './errors.js';
import { act, emptyActResult } from './act.js';
import { observeBackends, type Observation } from './observe.js';
import { measure, type Measurement } from './measure.js';
import { updateMemory, type BackendMemory, type ControlMemory } from './control-memory.js';
import { decideBackend, imbalanceOf, inService } from './plan.js';
import {
  REPORT_SCHEMA_VERSION,
  causeOf,
  graphiteProblemCode,
  outcomeOf,
  problem,
  staticKey,
  type ActionReport,
  type ApplyReport,
  type BackendReport,
  type CycleReport,
  type LoadBalancerPlanReport,
  type LoadBalancerReport,
  type PlanReport,
  type Problem,
} from './report.js';
import type { Action, BackendPlan, MetricSource, ObservedServer, RelayRunOptions, RuntimeRelay, Series } from './types.js';

export { exitCodeFor, staticKey } from './report.js';
export type { ApplyReport, BackendReport, CycleOutcome, CycleReport, LoadBalancerPlanReport, LoadBalancerReport, Problem, ProblemCode, ServerFailure } from './report.js';

export interface CycleDeps {
  readonly config: Config;
  readonly metrics: MetricSource;
  readonly relay: RuntimeRelay;
  /** Milliseconds since the epoch; injected so the core never reads the clock itself. */
  readonly now: () => number;
  /** The haproxy-weighter version, written into the report (the core reads no files). */
  readonly version: string;
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
  /**
   * What the control loop remembers of each backend on each load balancer between cycles (kept by
   * `run` and a warm Lambda, like the static memory): it tells a reload, a new server, and what
   * HAProxy placed since Graphite measured. Updated in place. Without it (a one-shot `apply`) the
   * policy decides from this cycle alone: it cannot tell a reload or a new server, and uses the
   * loads as measured.
   */
  readonly memory?: ControlMemory;
  /**
   * The cycle's time budget (the caller's clock and timers, never read here): the relay starts no
   * batch that cannot finish by `deadline` and stops waiting when `signal` aborts; what was not
   * written is in the report, as not sent. Graphite stops waiting on `signal` too: a backend
   * whose render it cuts short is skipped as Graphite failed.
   */
  readonly budget?: RelayRunOptions;
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

/** The configured backends a request names (all by default); a name not configured is a ConfigError. */
export function selectBackends(config: Config, names: readonly string[] | undefined): readonly BackendConfig[] {
  if (names === undefined) return config.backends;
  const known = new Set(config.backends.map((b) => b.name));
  const unknown = names.filter((n) => !known.has(n));
  if (unknown.length > 0) {
    throw new ConfigError(`Unknown backend(s) ${unknown.map((n) => JSON.stringify(n)).join(', ')}; configured: ${[...known].join(', ')}`);
  }
  return config.backends.filter((b) => names.includes(b.name));
}

type MeasureResult = { readonly ok: true; readonly measurement: Measurement } | { readonly ok: false; readonly error: unknown };

/** Step 1: one round trip per load balancer reads every selected backend. */
function observe(relay: RuntimeRelay, backends: readonly BackendConfig[], budget: RelayRunOptions): Promise<Map<string, Map<string, Observation> | Error>> {
  const names = backends.map((b) => b.name);
  return observeBackends(relay, new Map(relay.loadBalancers.map((lb) => [lb, names])), budget);
}

type RenderResult = { readonly ok: true; readonly series: readonly Series[] } | { readonly ok: false; readonly error: unknown };

/**
 * Step 2: one Graphite render per backend, in parallel, within the cycle's time budget; a failure
 * skips only that backend.
 */
async function renderAll(metrics: MetricSource, backends: readonly BackendConfig[], budget: RelayRunOptions): Promise<Map<string, RenderResult>> {
  const options = budget.signal === undefined ? {} : { signal: budget.signal };
  const entries = await Promise.all(
    backends.map(async (b): Promise<[string, RenderResult]> => {
      try {
        return [b.name, { ok: true, series: await metrics.render(b.target, b.from, b.until, options) }];
      } catch (error) {
        return [b.name, { ok: false, error }];
      }
    }),
  );
  return new Map(entries);
}

/** The servers of a backend on every load balancer that observed it; undefined when none did. */
function knownServers(observations: ReadonlyMap<string, Map<string, Observation> | Error>, backend: string): Set<string> | undefined {
  let known: Set<string> | undefined;
  for (const lbObs of observations.values()) {
    const obs = lbObs instanceof Map ? lbObs.get(backend) : undefined;
    if (obs?.ok !== true) continue;
    known ??= new Set<string>();
    for (const s of obs.backend.servers) known.add(s.name);
  }
  return known;
}

/**
 * Step 2b: each reply turned into loads, once the load balancers have answered: a series for a
 * server none of them has is only named (a reply may hold 150,000 of them).
 */
function measureAll(renders: ReadonlyMap<string, RenderResult>, backends: readonly BackendConfig[], observations: ReadonlyMap<string, Map<string, Observation> | Error>): Map<string, MeasureResult> {
  return new Map(
    backends.map((b): [string, MeasureResult] => {
      const rendered = renders.get(b.name);
      if (rendered === undefined) return [b.name, { ok: false, error: new Error('no reply') }];
      if (!rendered.ok) return [b.name, rendered];
      try {
        return [b.name, { ok: true, measurement: measure(rendered.series, b, knownServers(observations, b.name)) }];
      } catch (error) {
        return [b.name, { ok: false, error }];
      }
    }),
  );
}

function skippedPlan(backend: string, loadBalancer: string, reason: Extract<BackendPlan, { status: 'skipped' }>['reason'], message: string, algorithm: string | null = null): BackendPlan {
  return { status: 'skipped', backend, loadBalancer, reason, message, algorithm, actions: [] };
}

function actionReport(a: Action, plan: BackendPlan): ActionReport {
  const e = plan.status === 'planned' ? plan.explanations.get(a.server) : undefined;
  const why = e === undefined ? { sessions: null, loadNow: null, target: null, rule: null } : { sessions: e.sessions, loadNow: e.loadNow, target: e.target, rule: e.rule };
  switch (a.kind) {
    case 'set-weight':
      return { kind: a.kind, server: a.server, load: a.load, current: a.current, weight: a.weight, reason: null, detail: e?.detail ?? null, ...why };
    case 'unchanged':
      return { kind: a.kind, server: a.server, load: a.load, current: a.current, weight: null, reason: null, detail: e?.detail ?? null, ...why };
    case 'skip':
      return { kind: a.kind, server: a.server, load: a.load, current: a.current, weight: null, reason: a.reason, detail: a.detail, ...why };
  }
}

function planReport(plan: BackendPlan): PlanReport {
  const actions = plan.actions.map((a) => actionReport(a, plan));
  return plan.status === 'planned'
    ? { status: 'planned', reason: null, message: null, algorithm: plan.algorithm, imbalance: plan.imbalance, reload: plan.reload, actions }
    : { status: 'skipped', reason: plan.reason, message: plan.message, algorithm: plan.algorithm, imbalance: null, reload: null, actions };
}

/**
 * The backend's imbalance over the servers in service on every load balancer that observed them:
 * a server in MAINT, DRAIN, DOWN or at weight 0 anywhere holds less load on purpose.
 */
function imbalanceInService(loads: Readonly<Record<string, number>>, observed: readonly (readonly ObservedServer[])[]): number | null {
  const out = new Set<string>();
  for (const servers of observed) for (const s of servers) if (!inService(s)) out.add(s.name);
  return imbalanceOf(Object.entries(loads).flatMap(([server, load]) => (out.has(server) ? [] : [load])));
}

const NOT_RUN: ApplyReport = { status: 'not-run', changed: 0, failed: [], error: null, readBack: false };
const NOT_NEEDED: ApplyReport = { status: 'not-needed', changed: 0, failed: [], error: null, readBack: false };

/**
 * One rebalance cycle: observe every load balancer, measure every backend, decide per load
 * balancer, write one batch per load balancer, parse every reply, report. Never throws for a
 * failure of Graphite or of a load balancer: those are in the report. Throws ConfigError only for
 * a bad request (unknown backend name).
 */
export async function runCycle(deps: CycleDeps, options: CycleOptions): Promise<CycleReport> {
  const started = deps.now();
  const nowSeconds = started / 1000;
  const backends = selectBackends(deps.config, options.backends);
  const problems: Problem[] = [];

  const budget = options.budget ?? {};
  const [observations, renders] = await Promise.all([observe(deps.relay, backends, budget), renderAll(deps.metrics, backends, budget)]);
  const measurements = measureAll(renders, backends, observations);

  // What failed as a whole is reported once: a load balancer that could not be read, a backend Graphite failed for.
  for (const lb of deps.relay.loadBalancers) {
    const lbObs = observations.get(lb);
    if (!(lbObs instanceof Map)) problems.push(problem('observe-failed', { loadBalancer: lb }, 'cannot read the load balancer', causeOf(lbObs ?? new Error('no reply'))));
  }
  for (const b of backends) {
    const m = measurements.get(b.name);
    if (m?.ok !== true) {
      const error = m === undefined ? new Error('no reply') : m.error;
      problems.push(problem(graphiteProblemCode(error), { backend: b.name }, 'no weight changed because Graphite failed', causeOf(error)));
    } else if (m.measurement.mappedSeries > 0 && m.measurement.seriesWithPoints === 0) {
      problems.push(
        problem(
          'window-empty',
          { backend: b.name },
          `the render window (from: ${b.from}) holds no point in any of the ${m.measurement.mappedSeries} series: it is shorter than the metrics' delay; widen it (the default, -15min, survives a Graphite several minutes late)`,
          null,
          'warning',
        ),
      );
    }
  }

  // Step 3: decide, per backend and load balancer.
  const plans = new Map<string, Map<string, BackendPlan>>();
  for (const b of backends) {
    const m = measurements.get(b.name);
    const perLb = new Map<string, BackendPlan>();
    for (const lb of deps.relay.loadBalancers) {
      const lbObs = observations.get(lb);
      const obs = lbObs instanceof Map ? lbObs.get(b.name) : undefined;
      const place = { loadBalancer: lb, backend: b.name };
      // Every observation goes into the memory, whether or not Graphite answered: its history stays whole.
      let memory: BackendMemory | undefined;
      if (options.memory !== undefined && obs?.ok === true) {
        memory = updateMemory(options.memory.get(b.name, lb), obs.backend, nowSeconds, m?.ok === true ? m.measurement.loads : undefined);
        options.memory.set(b.name, lb, memory);
      }
      if (lbObs === undefined || lbObs instanceof Error) {
        perLb.set(lb, skippedPlan(b.name, lb, 'observe-failed', `cannot read ${lb}: ${describeError(lbObs ?? new Error('no reply'))}`));
      } else if (obs === undefined || !obs.ok) {
        const error = obs?.ok === false ? obs.error : new Error('no reply');
        const notFound = error instanceof HaproxyError && error.kind === 'no-such-backend';
        perLb.set(lb, skippedPlan(b.name, lb, notFound ? 'backend-not-found' : 'observe-failed', describeError(error)));
        problems.push(problem(notFound ? 'backend-not-found' : 'observe-failed', place, notFound ? 'the load balancer has no such backend' : 'cannot read the backend', causeOf(error)));
      } else if (options.knownStatic?.includes(staticKey(b.name, lb)) === true) {
        const message = `refused every weight in an earlier cycle (a static algorithm such as map-based hashing): not retried until the weighter restarts or its memory expires; use 'hash-type consistent'`;
        perLb.set(lb, skippedPlan(b.name, lb, 'unsupported-algorithm', message, obs.backend.algorithm));
        problems.push(problem('unsupported-algorithm', place, message));
      } else if (m === undefined || !m.ok) {
        perLb.set(lb, skippedPlan(b.name, lb, 'graphite-failed', `no weight changed because Graphite failed: ${describeError(m?.ok === false ? m.error : 'no reply')}`, obs.backend.algorithm));
      } else {
        const decision = decideBackend({
          backend: b,
          loadBalancer: lb,
          observed: obs.backend,
          measurement: m.measurement,
          force: options.force === true,
          now: nowSeconds,
          ...(memory === undefined ? {} : { memory }),
        });
        const plan = decision.plan;
        if (plan.status === 'skipped' && plan.reason !== 'graphite-failed') problems.push(problem(plan.reason, place, plan.message));
        if (decision.reload !== null) problems.push(problem('reload-detected', place, `a new HAProxy process took over (${decision.reload}): its sessions are not yet the connections that carry the load, so the deficits are scaled by the old process's connections`, null, 'warning'));
        for (const [server, e] of decision.explanations) {
          if (e.rule === 'sinkhole') problems.push(problem('sinkhole', { ...place, server }, `holds ${e.sessions} session(s) but reports a load of ${e.load ?? 0}: it may accept data and ingest none; new connections go elsewhere (weight at the lower bound) until it reports load again`, null, 'warning'));
        }
        perLb.set(lb, plan);
      }
    }
    plans.set(b.name, perLb);
  }

  // Step 4: act, in as few batches per load balancer as the relay carries, within the budget.
  const acted = options.mode === 'apply' ? await act(deps.relay, backends, plans, budget) : emptyActResult();
  const { applyResults, lbApply, lbErrors } = acted;
  const serversChanged = acted.serversChanged;
  problems.push(...acted.problems);

  // Step 5: report.
  const backendReports: BackendReport[] = backends.map((b) => {
    const m = measurements.get(b.name);
    const perLb = plans.get(b.name) ?? new Map<string, BackendPlan>();
    const loadBalancers: LoadBalancerPlanReport[] = [...perLb.entries()].map(([lb, plan]) => {
      const apply = applyResults.get(b.name)?.get(lb) ?? (options.mode === 'apply' && plan.status === 'planned' ? NOT_NEEDED : NOT_RUN);
      return { loadBalancer: lb, plan: planReport(plan), apply };
    });
    // Series for servers that no load balancer has are named (measure kept them out of the loads, and so of the imbalance).
    const loads = Object.fromEntries(m?.ok === true ? m.measurement.loads : []);
    const observedServers = deps.relay.loadBalancers.flatMap((lb) => {
      const lbObs = observations.get(lb);
      const obs = lbObs instanceof Map ? lbObs.get(b.name) : undefined;
      return obs?.ok === true ? [obs.backend.servers] : [];
    });
    return {
      backend: b.name,
      graphite:
        m?.ok === true
          ? { ok: true, error: null, unmapped: [...m.measurement.unmapped], unknownServers: [...m.measurement.unknownServers] }
          : { ok: false, error: describeError(m === undefined ? 'no reply' : m.error), unmapped: [], unknownServers: [] },
      loads,
      imbalance: imbalanceInService(loads, observedServers),
      loadBalancers,
    };
  });

  const loadBalancers: LoadBalancerReport[] = deps.relay.loadBalancers.map((name) => {
    const obs = observations.get(name);
    const apply = options.mode === 'plan' ? 'not-run' : (lbApply.get(name) ?? 'not-needed');
    const error = obs instanceof Error ? describeError(obs) : obs === undefined ? 'no reply' : (lbErrors.get(name) ?? null);
    return { name, observe: obs instanceof Map ? 'ok' : 'failed', apply, error };
  });
  const failedLoadBalancers = loadBalancers.filter((lb) => lb.observe === 'failed' || lb.apply === 'failed').map((lb) => lb.name);

  return {
    schemaVersion: REPORT_SCHEMA_VERSION,
    version: deps.version,
    mode: options.mode,
    force: options.force === true,
    startedAt: new Date(started).toISOString(),
    durationMs: Math.max(0, Math.round(deps.now() - started)),
    outcome: outcomeOf(problems, serversChanged),
    serversChanged,
    failedLoadBalancers,
    staticRefusals: acted.staticRefusals,
    problems,
    backends: backendReports,
    loadBalancers,
  };
}
