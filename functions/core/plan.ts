import type { BackendConfig } from './config.js';
import { cyclesPerLifetime, type BackendMemory, type ObservationRecord } from './control-memory.js';
import { isStaticAlgorithm } from './haproxy-protocol.js';
import type { MeasuredSpan, Measurement } from './measure.js';
import { MAX_WEIGHT, MIN_SET_WEIGHT } from './runtime-grammar.js';
import type { Action, BackendPlan, ObservedBackend, ObservedServer, WeightExplanation, WeightingInput, WeightRule } from './types.js';
import { computeWeights } from './weighting.js';
import { feedbackDecision } from './weighting-feedback.js';

export interface PlanInput {
  readonly backend: BackendConfig;
  readonly loadBalancer: string;
  readonly observed: ObservedBackend;
  readonly measurement: Pick<Measurement, 'loads' | 'empty' | 'ambiguous'> & Partial<Pick<Measurement, 'spans'>>;
  /** Write every eligible weight even when it equals the current one (e.g. after a reload). */
  readonly force?: boolean;
  /** Epoch seconds; needed only with `memory`. */
  readonly now?: number;
  /**
   * What the caller remembers of this backend on this load balancer, already updated with this
   * observation (control-memory.ts `updateMemory`). Absent for a one-shot `apply`.
   */
  readonly memory?: BackendMemory;
}

/** Rescale to 256 when the largest weight would fall below this (resolution). */
const RESCALE_BELOW = 128;
/**
 * A server holding at least this share of the mean sessions (and 2) while reporting at most this
 * share of the mean load is taken for a sinkhole: it accepts connections and ingests nothing.
 */
export const SINKHOLE = { load: 0.05, sessions: 0.1, minSessions: 2 } as const;

/**
 * The rules (`WeightRule`): deficit, deadband, follow-sessions, balanced (feedback, see
 * weighting-feedback.ts); function (a seed function); no-sessions (the sessions were too few to
 * trust: the weights follow the loads gently); bound (clamped to the bounds relative to the mean
 * weight); sinkhole (sessions but (near) zero load: drained to the lower bound, never more
 * weight or share than it has); new-server (new to the backend and without data yet: the configured share of the mean);
 * keep-share (without data, or out of service: keeps its share of new connections while the others
 * move); guard (MAINT, DRAIN or weight 0: the operator's, never touched).
 */
export type { WeightExplanation, WeightRule };

export interface Decision {
  readonly plan: BackendPlan;
  /** Per server, in observation order; empty for a skipped backend. */
  readonly explanations: ReadonlyMap<string, WeightExplanation>;
  /** Set when the memory saw a new HAProxy process at this cycle. */
  readonly reload: string | null;
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

/**
 * True when the server takes new connections: not MAINT, DRAIN or weight 0, and not DOWN (failed
 * health checks) or NOLB. Imbalance is measured over these only: a server out of service holds no
 * load on purpose, and counting it would raise a false alarm during every maintenance.
 */
export function inService(server: ObservedServer): boolean {
  return guardReason(server) === null && !/^(DOWN|NOLB|MAINT|DRAIN)\b/.test(server.status);
}

function clampChange(current: number, target: number, maxChange: number | undefined): number {
  const limited = maxChange === undefined ? target : Math.min(current + maxChange, Math.max(current - maxChange, target));
  return Math.min(MAX_WEIGHT, Math.max(MIN_SET_WEIGHT, Math.round(limited)));
}

interface Weighed {
  readonly server: ObservedServer;
  readonly load: number;
}

/**
 * The load of each server now rather than over the time Graphite measured: the measured load plus
 * the part of what the connections placed since brought that the measurement did not see, minus
 * the same for the ones that left. Between two observations r_{k-1} and r_k the memory knows how
 * many connections each server took (stot) and lost (sessions before + placed − sessions after),
 * not when; they are taken at the middle of the interval. A measurement that averages [start, end)
 * saw a connection placed at p for (end − p) / (end − start) of its load, so the part it missed is
 * the rest. A new connection brings the mean load per connection, one that leaves takes its
 * server's mean (with `others` connections per server this process does not hold: the old
 * process's after a reload, or the padding of too few sessions). With Graphite at 10 s and a
 * cycle a minute, every placement of the last interval is already in the measurement: the
 * correction is for metrics older than a cycle (a slow Graphite), where without it a deficit
 * already filled would be asked for again every cycle until the metric caught up.
 * Null (the measured load stands) without memory, timestamps or stot.
 */
export function estimateLoadsNow(servers: readonly Weighed[], spans: ReadonlyMap<string, MeasuredSpan> | undefined, records: readonly ObservationRecord[], now: number | undefined, others: number): (number | null)[] {
  if (spans === undefined || now === undefined || records.length < 2) return servers.map(() => null);
  const totalLoad = servers.reduce((a, s) => a + s.load, 0);
  const totalCount = servers.reduce((a, s) => a + s.server.sessions + others, 0);
  if (!(totalCount > 0)) return servers.map(() => null);
  const meanRate = totalLoad / totalCount;
  return servers.map(({ server, load }) => {
    const span = spans.get(server.name);
    if (span === undefined || !(span.end > span.start)) return null;
    const missed = (p: number): number => Math.min(1, Math.max(0, (p - span.start) / (span.end - span.start)));
    let count = 0;
    let added = 0;
    let removed = 0;
    let known = false;
    for (let k = 1; k < records.length; k++) {
      const before = records[k - 1]?.servers.get(server.name);
      const after = records[k]?.servers.get(server.name);
      const t0 = records[k - 1]?.at;
      const t1 = records[k]?.at;
      if (before?.totalSessions === undefined || after?.totalSessions === undefined || t0 === undefined || t1 === undefined) continue;
      const f = missed((t0 + t1) / 2);
      if (f === 0) continue;
      known = true;
      if (count === 0) count = before.sessions + others;
      const placed = Math.max(0, after.totalSessions - before.totalSessions);
      const left = Math.max(0, before.sessions + placed - after.sessions);
      const perConnection = count > 0 ? load / count : meanRate;
      added += f * meanRate * placed;
      removed += f * perConnection * left;
    }
    return known ? Math.max(0, load + added - removed) : null;
  });
}

/**
 * The bounds of one server's weight relative to the mean weight. Under leastconn a weight is a
 * target count, and the configured bounds hold it within [min, max] times the mean. Under
 * roundrobin a weight is the share of the connections placed until the next cycle, which moves a
 * server's count only 1/ℓ of the way to it (ℓ cycles per connection lifetime): a share s relative
 * to an even one leaves the server holding c · (1 − 1/ℓ) + s/ℓ times the mean count, c being its
 * count relative to the mean now. So that the bounds mean the same under both algorithms, under
 * roundrobin they hold that count within [min, max] times the mean:
 *
 *     s >= ℓ · min − c · (ℓ − 1),   s <= ℓ · max − c · (ℓ − 1)
 *
 * The configured bounds as weight bounds would keep feeding an overloaded server a quarter of an
 * even share for as long as it stays overloaded, which balanced worse on the simulator's roundrobin
 * scenario (seeds 201-240, outside the contest's). Without a known lifetime or count, the
 * configured bounds as they are.
 */
export function boundsOf(bounds: BackendConfig['bounds'], algorithm: string, lifetime: number | undefined, relativeCount: number): { min: number; max: number } {
  if (algorithm !== 'roundrobin' || lifetime === undefined || !(lifetime > 1) || !Number.isFinite(relativeCount)) return { min: bounds.min, max: bounds.max };
  const kept = relativeCount * (lifetime - 1);
  return { min: Math.max(0, lifetime * bounds.min - kept), max: Math.max(bounds.min, lifetime * bounds.max - kept) };
}

/**
 * Decides the weights of one backend on one load balancer, from what that load balancer reports,
 * what Graphite measured and (when the caller keeps it) what the previous cycles saw. Pure: the
 * same inputs always give the same plan. Fail static: a doubt about the backend as a whole
 * (static algorithm, too few servers with data) skips it, and a doubt about one server keeps its
 * share of new connections.
 */
export function decideBackend(input: PlanInput): Decision {
  const { backend, loadBalancer, observed, measurement, memory } = input;
  const base = { backend: backend.name, loadBalancer };
  const reload = memory?.reloadedNow === true && memory.reload !== null ? memory.reload.why : null;
  const noExplanations = new Map<string, WeightExplanation>();

  const guarded = new Map<string, Action>();
  const weighed: Weighed[] = [];
  /** In service without data, or out of service (DOWN, NOLB): weighed by share. */
  const byShare: ObservedServer[] = [];
  const isNew = new Set<string>();
  let withoutData = 0;
  for (const server of observed.servers) {
    const load = measurement.loads.get(server.name);
    // A server the runtime API cannot address is left alone, and only it: not its backend.
    if (server.unaddressable !== undefined) {
      guarded.set(server.name, { kind: 'skip', server: server.name, load: load ?? null, current: server.weight, reason: 'unaddressable', detail: server.unaddressable });
      continue;
    }
    const reason = guardReason(server);
    if (reason !== null) {
      guarded.set(server.name, { kind: 'skip', server: server.name, load: load ?? null, current: server.weight, reason, detail: GUARD_DETAIL[reason] });
      continue;
    }
    if (!inService(server)) {
      byShare.push(server);
      continue;
    }
    if (load === undefined) {
      withoutData++;
      byShare.push(server);
      if (memory?.newServers.has(server.name) === true) isNew.add(server.name);
      continue;
    }
    weighed.push({ server, load });
  }

  // Sets, not lists: a backend of 10,000 servers without data must not cost 10,000 x 10,000.
  const ambiguous = new Set(measurement.ambiguous);
  const empty = new Set(measurement.empty);
  const noDataDetail = (name: string): string =>
    ambiguous.has(name) ? 'several Graphite series map to this server' : empty.has(name) ? 'only null points in the window' : 'no Graphite series for this server';

  const observedOnly = (): Action[] =>
    observed.servers.map((s) => {
      const done = guarded.get(s.name);
      if (done !== undefined) return done;
      const load = measurement.loads.get(s.name);
      if (load === undefined && inService(s)) return { kind: 'skip', server: s.name, load: null, current: s.weight, reason: 'no-data', detail: `${noDataDetail(s.name)}: keeps its weight` };
      return { kind: 'unchanged', server: s.name, load: load ?? null, current: s.weight };
    });
  const skipped = (reason: Extract<BackendPlan, { status: 'skipped' }>['reason'], message: string): Decision => ({
    plan: { ...base, status: 'skipped', reason, message, algorithm: observed.algorithm, actions: observedOnly() },
    explanations: noExplanations,
    reload,
  });

  if (isStaticAlgorithm(observed.algorithm)) {
    return skipped(
      'unsupported-algorithm',
      `uses '${observed.algorithm}', a static algorithm that only accepts weights 0% and 100%: use leastconn, roundrobin, random, first or consistent hashing`,
    );
  }
  const candidates = weighed.length + withoutData;
  if (candidates === 0) return skipped('no-servers', 'has no server we may weight');
  if (weighed.length / candidates < backend.quorum) {
    return skipped(
      'no-quorum',
      `only ${weighed.length} of ${candidates} servers have data, quorum is ${Math.round(backend.quorum * 100)}%: no weight changed`,
    );
  }

  // Sinkholes: connections but (near) zero load. They would look like the least loaded servers and
  // attract everything.
  const meanLoad = weighed.reduce((a, w) => a + w.load, 0) / weighed.length;
  const meanSessions = weighed.reduce((a, w) => a + w.server.sessions, 0) / weighed.length;
  const sinkholes = new Set(
    weighed
      .filter((w) => meanLoad > 0 && w.load <= SINKHOLE.load * meanLoad && w.server.sessions >= Math.max(SINKHOLE.minSessions, SINKHOLE.sessions * meanSessions))
      .map((w) => w.server.name),
  );
  const controlled = weighed.filter((w) => !sinkholes.has(w.server.name));

  // The controller: proposals in weight units, unrounded.
  const proposal = new Map<string, number>();
  const explanations = new Map<string, WeightExplanation>();
  const weighting = backend.weighting;
  let loadsNow: (number | null)[] = controlled.map(() => null);
  const countScale = memory?.reload?.countScale;
  const ownMean = controlled.length === 0 ? 0 : controlled.reduce((a, w) => a + w.server.sessions, 0) / controlled.length;
  // Connections carrying the load beyond this process's own: padding, or the old process's.
  const others = Math.max(0, (countScale ?? (weighting.function === 'feedback' ? weighting.minSessions : 0)) - ownMean);
  // After a reload the new process has lost nothing yet: its own records would say connections live a cycle or two.
  const lifetime = memory?.reload != null ? memory.reload.cyclesPerLifetime : cyclesPerLifetime(memory?.records ?? [], new Set(controlled.map((w) => w.server.name)));
  if (controlled.length > 0) {
    if (weighting.function === 'feedback') {
      loadsNow = estimateLoadsNow(controlled, measurement.spans, memory?.records ?? [], input.now, others);
      const inputs: WeightingInput[] = controlled.map((w, i) => ({ load: loadsNow[i] ?? w.load, weight: w.server.weight, sessions: w.server.sessions }));
      const decision = feedbackDecision(inputs, weighting, {
        algorithm: observed.algorithm,
        ...(countScale === undefined ? {} : { countScale }),
        ...(lifetime === undefined ? {} : { cyclesPerLifetime: lifetime }),
      });
      controlled.forEach((w, i) => {
        const target = decision.raw[i] ?? w.server.weight;
        proposal.set(w.server.name, target);
        const rule = decision.rules[i] ?? 'balanced';
        explanations.set(w.server.name, {
          rule: decision.fewSessions && rule === 'deficit' ? 'no-sessions' : rule,
          load: w.load,
          loadNow: loadsNow[i] ?? null,
          sessions: w.server.sessions,
          target,
        });
      });
    } else {
      const targets = computeWeights(
        controlled.map((w) => ({ load: w.load, weight: w.server.weight, sessions: w.server.sessions })),
        weighting,
      );
      controlled.forEach((w, i) => {
        const target = targets[i] ?? w.server.weight;
        proposal.set(w.server.name, target);
        explanations.set(w.server.name, { rule: 'function', load: w.load, loadNow: null, sessions: w.server.sessions, target });
      });
    }
  }
  const changedByController = controlled.some((w) => proposal.get(w.server.name) !== w.server.weight);

  // Bounds relative to the mean proposal of the weighed servers. Clamping moves the mean, so it is
  // repeated until the bounds hold against the mean of what they produce (a few rounds at most).
  if (controlled.length > 1 && changedByController) {
    const limits = controlled.map((w) => boundsOf(backend.bounds, observed.algorithm, lifetime, (w.server.sessions + others) / (ownMean + others)));
    for (let round = 0; round < 20; round++) {
      const mean = controlled.reduce((a, w) => a + (proposal.get(w.server.name) ?? 0), 0) / controlled.length;
      let moved = false;
      for (const [i, w] of controlled.entries()) {
        const p = proposal.get(w.server.name) ?? w.server.weight;
        const limit = limits[i] ?? { min: backend.bounds.min, max: backend.bounds.max };
        const bounded = Math.min(limit.max * mean, Math.max(limit.min * mean, p));
        if (Math.abs(bounded - p) <= 1e-9 * Math.max(1, p)) continue;
        moved = true;
        proposal.set(w.server.name, bounded);
        const e = explanations.get(w.server.name);
        if (e !== undefined) explanations.set(w.server.name, { ...e, rule: 'bound', target: bounded });
      }
      if (!moved) break;
    }
  }

  // Shares for the servers we do not weigh: scale with the weighed ones, so their share of new
  // connections stays what it was; a new server gets the configured share of the mean.
  const before = controlled.reduce((a, w) => a + w.server.weight, 0);
  const after = controlled.reduce((a, w) => a + (proposal.get(w.server.name) ?? w.server.weight), 0);
  const factor = before > 0 && after > 0 ? after / before : 1;
  const meanProposal = controlled.length > 0 ? after / controlled.length : null;
  for (const s of byShare) {
    const data = measurement.loads.get(s.name) ?? null;
    if (isNew.has(s.name) && meanProposal !== null) {
      const target = backend.newServerShare * meanProposal;
      proposal.set(s.name, target);
      explanations.set(s.name, { rule: 'new-server', load: data, loadNow: null, sessions: s.sessions, target, detail: `new to the backend, ${noDataDetail(s.name)}` });
    } else {
      const target = s.weight * factor;
      proposal.set(s.name, target);
      const detail = inService(s) ? noDataDetail(s.name) : `out of service (${s.status})`;
      explanations.set(s.name, { rule: 'keep-share', load: data, loadNow: null, sessions: s.sessions, target, detail });
    }
  }
  for (const w of weighed) {
    const name = w.server.name;
    if (!sinkholes.has(name)) continue;
    // The lowest weight the bounds allow, and never more weight or share than it has: every new
    // connection it takes may be data lost, and its real load is unknown. It keeps its sessions.
    const cap = w.server.weight * Math.min(1, factor);
    const target = Math.min(cap, backend.bounds.min * (meanProposal ?? cap));
    proposal.set(name, target);
    explanations.set(name, { rule: 'sinkhole', load: w.load, loadNow: null, sessions: w.server.sessions, target, detail: 'holds connections but reports (near) zero load: it may accept data and ingest none' });
  }

  // One scale for all: within 1..256, and renewed to 256 when everything moved below 128.
  let largest = 0;
  for (const p of proposal.values()) largest = Math.max(largest, p);
  const anyChange = observed.servers.some((s) => {
    const p = proposal.get(s.name);
    return p !== undefined && Math.round(p) !== s.weight;
  });
  const scale = largest > MAX_WEIGHT || (anyChange && largest > 0 && largest < RESCALE_BELOW) ? MAX_WEIGHT / largest : 1;

  const actions: Action[] = [];
  for (const s of observed.servers) {
    const done = guarded.get(s.name);
    if (done !== undefined) {
      actions.push(done);
      explanations.set(s.name, { rule: 'guard', load: done.load, loadNow: null, sessions: s.sessions, target: s.weight });
      continue;
    }
    const p = proposal.get(s.name);
    if (p === undefined) continue;
    const e = explanations.get(s.name);
    if (e !== undefined && scale !== 1) explanations.set(s.name, { ...e, target: e.target * scale });
    const weight = clampChange(s.weight, p * scale, backend.maxChangePerCycle);
    const load = measurement.loads.get(s.name) ?? null;
    actions.push(
      weight === s.weight && input.force !== true
        ? { kind: 'unchanged', server: s.name, load, current: s.weight }
        : { kind: 'set-weight', server: s.name, load, current: s.weight, weight },
    );
  }
  const imbalance = imbalanceOf(weighed.map((w) => w.load));
  return { plan: { ...base, status: 'planned', algorithm: observed.algorithm, imbalance, actions, explanations, reload }, explanations, reload };
}

/** decideBackend without the explanations: the plan alone. */
export function planBackend(input: PlanInput): BackendPlan {
  return decideBackend(input).plan;
}
