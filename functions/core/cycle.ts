import type { BackendConfig, Config } from './config.js';
import { ConfigError, HaproxyError, RelayError, describeError, type HaproxyErrorKind } from './errors.js';
import {
  observeCommands,
  parseObservedBackend,
  parseServerStates,
  parseSetWeightReply,
  restoreWeightCommand,
  serversStateCommand,
  setWeightCommand,
  splitReplies,
  type ServerGuardState,
} from './haproxy-protocol.js';
import { measure, type Measurement } from './measure.js';
import { imbalanceOf, planBackend } from './plan.js';
import type { BackendPlan, MetricSource, ObservedBackend, RelayRequest, RelayResult, RuntimeRelay } from './types.js';

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

/** The key of `knownStatic` and `staticRefusals`. */
export const staticKey = (backend: string, loadBalancer: string): string => `${backend}@${loadBalancer}`;

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

/** What happened to the batch sent to one load balancer for one backend. */
export type ApplyResult =
  | { readonly status: 'not-needed' }
  | { readonly status: 'applied'; readonly changed: number }
  | { readonly status: 'failed'; readonly applied: number; readonly failed: readonly ServerFailure[]; readonly error?: string };

export interface ServerFailure {
  readonly server: string;
  readonly weight: number;
  readonly error: string;
  /** The HAProxy error class when HAProxy answered; absent when the batch itself failed. */
  readonly kind?: HaproxyErrorKind;
}

/** One line per load balancer and backend: the failed servers, and each distinct cause once. */
function describeFailures(lb: string, backend: string, failed: readonly ServerFailure[], batchError: string | undefined, readBack = false): string {
  const servers = failed.map((f) => f.server).join(', ');
  if (batchError !== undefined) {
    const held = readBack ? `; read back: ${failed.map((f) => `${f.server}=${/holds weight (\S+)/.exec(f.error)?.[1] ?? '?'}`).join(', ')}` : '; weights could not be read back';
    return `${lb}: backend ${backend}: ${failed.length} weight(s) not confirmed (${servers}): ${batchError}${held}`;
  }
  const causes = [...new Set(failed.map((f) => f.error.replace(`${backend}/${f.server}`, `${backend}/<server>`)))];
  return `${lb}: backend ${backend}: ${failed.length} weight(s) refused (${servers}): ${causes.join('; ')}`;
}

function hashAlgo(plans: ReadonlyMap<string, ReadonlyMap<string, BackendPlan>>, backend: string, lb: string): string {
  const plan = plans.get(backend)?.get(lb);
  return plan?.status === 'planned' ? plan.algorithm : 'unknown';
}

export interface LoadBalancerPlanReport {
  readonly loadBalancer: string;
  readonly plan: BackendPlan;
  readonly apply?: ApplyResult;
}

export interface BackendReport {
  readonly backend: string;
  readonly graphite: { readonly ok: true; readonly unmapped: readonly string[] } | { readonly ok: false; readonly error: string };
  /** Aggregated load per server, as measured this cycle. */
  readonly loads: Readonly<Record<string, number>>;
  /** max/mean of the measured loads, or null. */
  readonly imbalance: number | null;
  readonly loadBalancers: readonly LoadBalancerPlanReport[];
}

export interface LoadBalancerReport {
  readonly name: string;
  readonly observe: 'ok' | 'failed';
  readonly apply: 'ok' | 'failed' | 'not-needed' | 'not-run';
  readonly error?: string;
}

export type CycleOutcome = 'ok' | 'partial' | 'failed';

export interface CycleReport {
  readonly mode: 'plan' | 'apply';
  readonly force: boolean;
  readonly startedAt: string;
  readonly durationMs: number;
  /** ok: nothing went wrong; partial: some weights written and something failed; failed: nothing written and something failed. */
  readonly outcome: CycleOutcome;
  readonly backends: readonly BackendReport[];
  readonly loadBalancers: readonly LoadBalancerReport[];
  readonly failedLoadBalancers: readonly string[];
  readonly serversChanged: number;
  readonly problems: readonly string[];
  /** `backend@loadBalancer` pairs that refused every weight as a static algorithm this cycle (always present; optional for reports of older versions). */
  readonly staticRefusals?: readonly string[];
}

/** CLI exit codes: 0 all good, 1 failed and nothing written, 3 partial. (2 is for usage errors.) */
export function exitCodeFor(report: Pick<CycleReport, 'outcome'>): 0 | 1 | 3 {
  return report.outcome === 'ok' ? 0 : report.outcome === 'partial' ? 3 : 1;
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

type Observation = { readonly ok: true; readonly backend: ObservedBackend } | { readonly ok: false; readonly error: Error };
type MeasureResult = { readonly ok: true; readonly measurement: Measurement } | { readonly ok: false; readonly error: string };

/** Step 1: one round trip per load balancer reads every selected backend. */
async function observe(relay: RuntimeRelay, backends: readonly BackendConfig[]): Promise<Map<string, Map<string, Observation> | Error>> {
  const commandsPerBackend = backends.map((b) => observeCommands(b.name));
  const requests: RelayRequest[] = relay.loadBalancers.map((loadBalancer) => ({ loadBalancer, commands: commandsPerBackend.flat() }));
  const results = await relay.run(requests);
  const out = new Map<string, Map<string, Observation> | Error>();
  for (const result of results) {
    if (!result.ok) {
      out.set(result.loadBalancer, result.error);
      continue;
    }
    try {
      const blocks = splitReplies(requests[0]?.commands ?? [], result.reply);
      const perBackend = new Map<string, Observation>();
      backends.forEach((b, i) => {
        const stat = blocks[2 * i] ?? '';
        const state = blocks[2 * i + 1] ?? '';
        try {
          perBackend.set(b.name, { ok: true, backend: parseObservedBackend(b.name, stat, state, { loadBalancer: result.loadBalancer }) });
        } catch (error) {
          perBackend.set(b.name, { ok: false, error: error instanceof Error ? error : new Error(String(error)) });
        }
      });
      out.set(result.loadBalancer, perBackend);
    } catch (error) {
      out.set(result.loadBalancer, error instanceof Error ? error : new Error(String(error)));
    }
  }
  return out;
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

interface Owner {
  readonly backend: string;
  readonly server: string;
  readonly weight: number;
}

interface ActResult {
  readonly applyResults: Map<string, Map<string, ApplyResult>>;
  readonly lbApply: Map<string, LoadBalancerReport['apply']>;
  readonly lbErrors: Map<string, string>;
  readonly serversChanged: number;
  readonly problems: string[];
  readonly staticRefusals: string[];
}

function emptyActResult(): ActResult {
  return { applyResults: new Map(), lbApply: new Map(), lbErrors: new Map(), serversChanged: 0, problems: [], staticRefusals: [] };
}

interface BackendTally {
  applied: number;
  failed: ServerFailure[];
  error?: string;
}

/** One write batch: the guard state of every backend it touches, then the weights. */
interface WriteRequest {
  readonly loadBalancer: string;
  readonly commands: string[];
  readonly owners: Owner[];
  /** Backends whose `show servers state` leads the batch: their state at the instant of the write. */
  readonly guarded: string[];
}

/** A server an operator took out (MAINT, DRAIN, weight 0) between our observation and our write. */
interface Conflict {
  readonly backend: string;
  readonly server: string;
  /** The weight it had just before our write: the one to put back. */
  readonly weight: number;
  readonly why: string;
}

function guardConflict(state: ServerGuardState | undefined): string | null {
  if (state === undefined) return null;
  if (state.admin === 'maint') return 'was put in MAINT';
  if (state.admin === 'drain') return 'was put in DRAIN';
  return state.weight === 0 ? 'was given weight 0' : null;
}

/** Reads the batch's reply per command: which weights HAProxy took, which it refused, and which hit a server an operator had just taken out. */
function tally(req: WriteRequest, result: RelayResult | undefined): { perBackend: Map<string, BackendTally>; batchError?: string; conflicts: Conflict[]; unchecked: string[] } {
  const perBackend = new Map<string, BackendTally>();
  const conflicts: Conflict[] = [];
  const unchecked: string[] = [];
  let blocks: string[] | null = null;
  let batchError: string | undefined;
  if (result === undefined || !result.ok) {
    batchError =
      result === undefined
        ? 'no result from relay'
        : `${describeError(result.error)}${result.error instanceof RelayError && result.error.mayHaveRun ? '; the batch may have been partly applied' : ''}`;
  } else {
    try {
      blocks = splitReplies(req.commands, result.reply);
    } catch (error) {
      batchError = `${describeError(error)}; the batch may have been partly applied`;
    }
  }
  const states = new Map<string, Map<string, ServerGuardState>>();
  if (blocks !== null) {
    const read = blocks;
    req.guarded.forEach((backend, i) => {
      try {
        states.set(backend, parseServerStates(backend, read[i] ?? '', { loadBalancer: req.loadBalancer }));
      } catch (error) {
        unchecked.push(`${req.loadBalancer}: backend ${backend}: the operator state could not be checked at write time: ${describeError(error)}`);
      }
    });
  }
  const offset = req.guarded.length;
  req.owners.forEach((o, i) => {
    const e = perBackend.get(o.backend) ?? { applied: 0, failed: [] };
    perBackend.set(o.backend, e);
    if (blocks === null) {
      e.failed.push({ server: o.server, weight: o.weight, error: batchError ?? 'unknown' });
      e.error = batchError;
      return;
    }
    const err = parseSetWeightReply(blocks[offset + i] ?? '', { backend: o.backend, server: o.server, loadBalancer: req.loadBalancer });
    if (err !== null) {
      e.failed.push({ server: o.server, weight: o.weight, error: err.message, kind: err.kind });
      return;
    }
    const before = states.get(o.backend)?.get(o.server);
    const why = guardConflict(before);
    if (before !== undefined && why !== null) conflicts.push({ backend: o.backend, server: o.server, weight: before.weight, why });
    else e.applied++;
  });
  return batchError === undefined ? { perBackend, conflicts, unchecked } : { perBackend, batchError, conflicts, unchecked };
}

/**
 * HAProxy has no conditional write: a server an operator takes out between our observation and
 * our write gets our weight anyway (measured: 2.6 accepts weights on MAINT and DRAIN servers).
 * The batch read its state at the instant of the write, so its previous weight is known exactly
 * and is put back at once, and the report says so.
 */
async function putBack(relay: RuntimeRelay, conflicts: ReadonlyMap<string, readonly Conflict[]>): Promise<{ problems: string[]; failed: Set<string> }> {
  const problems: string[] = [];
  const failed = new Set<string>();
  const requests: RelayRequest[] = [...conflicts].map(([loadBalancer, list]) => ({ loadBalancer, commands: list.map((c) => restoreWeightCommand(c.backend, c.server, c.weight)) }));
  if (requests.length === 0) return { problems, failed };
  const results = await relay.run(requests);
  for (const req of requests) {
    const list = conflicts.get(req.loadBalancer) ?? [];
    const result = results.find((r) => r.loadBalancer === req.loadBalancer);
    let blocks: string[] | null = null;
    let error: string | undefined;
    if (result === undefined || !result.ok) error = result === undefined ? 'no result from relay' : describeError(result.error);
    else {
      try {
        blocks = splitReplies(req.commands, result.reply);
      } catch (e) {
        error = describeError(e);
      }
    }
    list.forEach((c, i) => {
      const refused = blocks === null ? null : parseSetWeightReply(blocks[i] ?? '', { backend: c.backend, server: c.server, loadBalancer: req.loadBalancer });
      const head = `${req.loadBalancer}: backend ${c.backend}: server ${c.server} ${c.why} while the cycle was writing its weight`;
      if (blocks !== null && refused === null) {
        problems.push(`${head}: its weight was put back to ${c.weight}`);
        return;
      }
      failed.add(req.loadBalancer);
      problems.push(`${head}: putting its weight back to ${c.weight} FAILED (${refused?.message ?? error ?? 'unknown'}): run "set server ${c.backend}/${c.server} weight ${c.weight}"`);
    });
  }
  return { problems, failed };
}

/**
 * After a batch whose outcome is unknown (connection lost, reply cut short), reads the weights back
 * so the report can say exactly what each load balancer holds instead of guessing.
 */
async function readBack(relay: RuntimeRelay, unknown: ReadonlyMap<string, readonly string[]>): Promise<Map<string, Map<string, ObservedBackend>>> {
  const requests: RelayRequest[] = [...unknown].map(([loadBalancer, backends]) => ({ loadBalancer, commands: backends.flatMap((b) => observeCommands(b)) }));
  const out = new Map<string, Map<string, ObservedBackend>>();
  if (requests.length === 0) return out;
  const results = await relay.run(requests);
  for (const result of results) {
    const backends = unknown.get(result.loadBalancer);
    const req = requests.find((r) => r.loadBalancer === result.loadBalancer);
    if (!result.ok || backends === undefined || req === undefined) continue;
    try {
      const blocks = splitReplies(req.commands, result.reply);
      const perBackend = new Map<string, ObservedBackend>();
      backends.forEach((b, i) => perBackend.set(b, parseObservedBackend(b, blocks[2 * i] ?? '', blocks[2 * i + 1] ?? '', { loadBalancer: result.loadBalancer })));
      out.set(result.loadBalancer, perBackend);
    } catch {
      // The read-back is best effort: without it the report keeps saying "not confirmed".
    }
  }
  return out;
}

async function act(relay: RuntimeRelay, backends: readonly BackendConfig[], plans: ReadonlyMap<string, ReadonlyMap<string, BackendPlan>>): Promise<ActResult> {
  const result = emptyActResult();
  const requests: WriteRequest[] = [];
  for (const lb of relay.loadBalancers) {
    const owners: Owner[] = [];
    for (const b of backends) {
      const plan = plans.get(b.name)?.get(lb);
      if (plan?.status !== 'planned') continue;
      for (const a of plan.actions) if (a.kind === 'set-weight') owners.push({ backend: b.name, server: a.server, weight: a.weight });
    }
    if (owners.length === 0) result.lbApply.set(lb, 'not-needed');
    else {
      const guarded = [...new Set(owners.map((o) => o.backend))];
      requests.push({
        loadBalancer: lb,
        commands: [...guarded.map(serversStateCommand), ...owners.map((o) => setWeightCommand(o.backend, o.server, o.weight))],
        owners,
        guarded,
      });
    }
  }
  const replies = requests.length === 0 ? [] : await relay.run(requests);
  const tallies = requests.map((req) => ({ req, ...tally(req, replies.find((r) => r.loadBalancer === req.loadBalancer)) }));

  const unknown = new Map<string, string[]>();
  for (const t of tallies) if (t.batchError !== undefined) unknown.set(t.req.loadBalancer, [...t.perBackend.keys()]);
  const actual = await readBack(relay, unknown);
  const conflicts = new Map(tallies.filter((t) => t.conflicts.length > 0).map((t) => [t.req.loadBalancer, t.conflicts] as const));
  const restored = await putBack(relay, conflicts);
  for (const t of tallies) result.problems.push(...t.unchecked);
  result.problems.push(...restored.problems);

  let serversChanged = 0;
  for (const { req, perBackend, batchError } of tallies) {
    let anyFailed = false;
    for (const [backend, e] of perBackend) {
      const seen = actual.get(req.loadBalancer)?.get(backend);
      if (seen !== undefined) {
        // Weights read back after an unknown outcome: count what landed, keep the rest as failures.
        const now = new Map(seen.servers.map((s) => [s.name, s.weight]));
        const landed = e.failed.filter((f) => now.get(f.server) === f.weight);
        e.applied += landed.length;
        e.failed = e.failed
          .filter((f) => now.get(f.server) !== f.weight)
          .map((f) => ({ ...f, error: `${f.error}; HAProxy now holds weight ${now.get(f.server) ?? 'unknown (server gone)'}` }));
        if (e.failed.length === 0) delete e.error;
      }
      serversChanged += e.applied;
      const res: ApplyResult =
        e.failed.length === 0
          ? { status: 'applied', changed: e.applied }
          : { status: 'failed', applied: e.applied, failed: e.failed, ...(e.error === undefined ? {} : { error: e.error }) };
      if (res.status === 'failed') {
        anyFailed = true;
        const allStatic = e.applied === 0 && e.failed.every((f) => f.kind === 'static-algorithm');
        if (allStatic) result.staticRefusals.push(staticKey(backend, req.loadBalancer));
        result.problems.push(
          allStatic
            ? `${req.loadBalancer}: backend ${backend} refused every weight: it uses a static algorithm (map-based hashing shows as '${hashAlgo(plans, backend, req.loadBalancer)}'); use 'hash-type consistent' or a dynamic balance algorithm`
            : describeFailures(req.loadBalancer, backend, e.failed, e.error, seen !== undefined),
        );
      }
      const map = result.applyResults.get(backend) ?? new Map<string, ApplyResult>();
      map.set(req.loadBalancer, res);
      result.applyResults.set(backend, map);
    }
    result.lbApply.set(req.loadBalancer, anyFailed || restored.failed.has(req.loadBalancer) ? 'failed' : 'ok');
    if (batchError !== undefined) result.lbErrors.set(req.loadBalancer, batchError);
  }
  return { ...result, serversChanged };
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
