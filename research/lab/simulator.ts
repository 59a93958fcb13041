import { parseConfig, type BackendConfig } from '../../functions/core/config.js';
import { updateMemory, type BackendMemory } from '../../functions/core/control-memory.js';
import { measure, type Measurement } from '../../functions/core/measure.js';
import { decideBackend, type WeightExplanation } from '../../functions/core/plan.js';
import type { BackendPlan, ObservedBackend, ObservedServer, Series } from '../../functions/core/types.js';
import { createBalancer, type Balancer } from './haproxy-model.js';
import { normal, uniform } from './random.js';
import { serverName, type Aggregation, type LabSetup, type MetricsPipeline, type Scenario } from './setup.js';
import { departureOrderOf, generateTraffic, type Connection, type Traffic } from './traffic.js';

/**
 * The convergence lab's discrete-event simulator: long-lived connections arrive, are placed by a
 * model of HAProxy's selection, send points for their lifetime and leave. Every `resolution`
 * seconds each server reports its mean load to a model of Graphite; every weighter interval the
 * REAL core (measure → planBackend → computeWeights, with a BackendConfig validated by
 * parseConfig) reads the delayed points and the load balancer's state and its set-weight actions
 * are applied. Deterministic: the same (setup, scenario, policy, seed) gives the same result.
 */

/** A weighting configuration exactly as it would appear in the YAML file. */
export type WeightingSpec = Readonly<Record<string, string | number>> & { readonly function: string };

export type Policy =
  | {
      readonly kind: 'clairvoyant';
      readonly name: string;
      /**
       * Absent: the bound knows every rate, all the time. Set: it learns every server's exact load
       * only every this many seconds and never a new connection's rate, as a weighter with perfect
       * metrics at that interval could at best (see `choose`).
       */
      readonly refreshSeconds?: number;
    }
  | {
      readonly kind: 'haproxy';
      readonly name: string;
      /** Absent: the backend's own algorithm (the setup's). */
      readonly algorithm?: 'leastconn' | 'roundrobin';
      /** Absent: HAProxy alone, no weighter. */
      readonly weighting?: WeightingSpec;
      readonly maxChangePerCycle?: number;
      /** Overrides the setup's aggregation for this policy's weighter. */
      readonly aggregation?: Aggregation;
      /** Backend settings beyond the weighting (bounds, newServerShare), as in the YAML file. */
      readonly backend?: Readonly<Record<string, unknown>>;
      /**
       * per-lb (default): each load balancer planned from its own sessions; fleet: one plan from the
       * sessions summed over every load balancer, the same weights written everywhere.
       */
      readonly planning?: 'per-lb' | 'fleet';
      /** Keep no memory between cycles, as a one-shot `apply` would (default: remember, as `run`). */
      readonly oneShot?: boolean;
      /**
       * What the weighter is told instead of Graphite's points (default: Graphite's): each server's
       * exact load at the end of its newest point (what no average of a bucket gives), or its exact
       * load at the cycle. Side experiments only: they measure what information costs.
       */
      readonly view?: 'exact-at-point-end' | 'exact-now';
    };

export interface WeightCycle {
  readonly time: number;
  /** weights[loadBalancer][server]; NaN for a server not (yet) in the pool. */
  readonly weights: readonly (readonly number[])[];
}

export interface SimResult {
  readonly servers: readonly string[];
  /** End time of each sample (one per Graphite bucket). */
  readonly sampleTimes: Float64Array;
  /** True mean load of each server over each bucket, sample-major; NaN when not in service. */
  readonly loads: Float64Array;
  readonly cycles: readonly WeightCycle[];
  /** The servers the shock clients landed on. */
  readonly shock: { readonly at: number; readonly servers: readonly number[] } | null;
  /** set-weight actions applied. */
  readonly writes: number;
  /** Cycles whose plan was skipped (no quorum, unsupported algorithm, ...). */
  readonly skippedPlans: number;
  /** Share of all connections placed during the measured window that went to a sinkhole server (null without one). */
  readonly sinkholeShare: number | null;
  /** Reloads the weighter's report named. */
  readonly reloadsSeen: number;
}

const BACKEND = 'ingest';

/** The backend configuration the weighter runs with, through the real schema and its defaults. */
function backendConfigFor(setup: LabSetup, policy: Policy): BackendConfig | null {
  if (policy.kind !== 'haproxy' || policy.weighting === undefined) return null;
  const config = parseConfig(
    {
      graphite: { url: 'http://127.0.0.1:8080' },
      relay: {
        type: 'socket',
        loadBalancers: Array.from({ length: setup.loadBalancers }, (_, i) => ({ name: `lb${i + 1}`, endpoint: `/run/haproxy/lab-${i + 1}.sock` })),
      },
      backends: [
        {
          name: BACKEND,
          target: `aliasByNode(${BACKEND}.*.points_per_second, 1)`,
          from: `-${Math.round(setup.metrics.windowSeconds)}s`,
          aggregation: policy.aggregation ?? setup.metrics.aggregation,
          weighting: policy.weighting,
          ...(policy.maxChangePerCycle === undefined ? {} : { maxChangePerCycle: policy.maxChangePerCycle }),
          ...policy.backend,
        },
      ],
      intervalSeconds: Math.max(1, Math.round(setup.weighterIntervalSeconds)),
    },
    `lab policy ${policy.name}`,
  );
  const [backend] = config.backends;
  if (backend === undefined) throw new Error('parseConfig returned no backend');
  return backend;
}

/** Min-heap of (time, id), for departures. */
class EventHeap {
  private readonly times: number[] = [];
  private readonly ids: number[] = [];

  get size(): number {
    return this.times.length;
  }

  peekTime(): number {
    return this.times[0] ?? Infinity;
  }

  push(time: number, id: number): void {
    let i = this.times.length;
    this.times.push(time);
    this.ids.push(id);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  pop(): number {
    const top = this.ids[0];
    const lastTime = this.times.pop();
    const lastId = this.ids.pop();
    if (top === undefined || lastTime === undefined || lastId === undefined) throw new Error('pop from an empty heap');
    if (this.times.length > 0) {
      this.times[0] = lastTime;
      this.ids[0] = lastId;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < this.times.length && this.before(l, m)) m = l;
        if (r < this.times.length && this.before(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m);
        i = m;
      }
    }
    return top;
  }

  private before(a: number, b: number): boolean {
    const ta = this.times[a] ?? Infinity;
    const tb = this.times[b] ?? Infinity;
    return ta < tb || (ta === tb && (this.ids[a] ?? 0) < (this.ids[b] ?? 0));
  }

  private swap(a: number, b: number): void {
    const t = this.times[a] ?? 0;
    this.times[a] = this.times[b] ?? 0;
    this.times[b] = t;
    const id = this.ids[a] ?? 0;
    this.ids[a] = this.ids[b] ?? 0;
    this.ids[b] = id;
  }
}

export interface SimulateOptions {
  /** Traffic drawn beforehand, to share between policies (drawn from the seed otherwise). */
  readonly traffic?: Traffic;
  /**
   * Called after each plan with the weighter's explanations (what it measured and estimated) and
   * the true utilisation of every server at that instant: to check the weighter's view, never
   * used by the figures.
   */
  readonly onDecision?: (time: number, explanations: ReadonlyMap<string, WeightExplanation>, truth: readonly number[]) => void;
}

/** Runs one scenario under one policy (on the scenario's own setup when it has one). */
export function simulate(defaultSetup: LabSetup, scenario: Scenario, policy: Policy, seed: number, options: SimulateOptions = {}): SimResult {
  const setup = scenario.setup ?? defaultSetup;
  validateSetup(setup);
  validateScenario(setup, scenario);
  const traffic = options.traffic ?? generateTraffic(setup, scenario, seed);
  const n = setup.servers;
  const names = Array.from({ length: n }, (_, i) => serverName(i));
  const backend = backendConfigFor(setup, policy);
  const algorithm = policy.kind === 'haproxy' ? (policy.algorithm ?? setup.algorithm ?? 'leastconn') : 'leastconn';
  const view = policy.kind === 'haproxy' ? policy.view : undefined;
  const capacity = Float64Array.from(names, (_, i) => setup.capacities?.[i] ?? 1);
  const noise = uniform(seed, `${scenario.name}/metric-noise`);
  const res = setup.metrics.resolutionSeconds;

  const inPool = new Array<boolean>(n).fill(false);
  const up = new Array<boolean>(n).fill(false);
  /** Servers whose metrics have not reached Graphite yet (until that time). */
  const silentUntil = new Float64Array(n);
  const sinkhole = new Array<boolean>(n).fill(false);
  const load = new Float64Array(n);
  const integral = new Float64Array(n);
  const integratedTo = new Float64Array(n);
  /** Reported points per server, one per bucket; null when the server reported nothing. */
  const reported: (number | null)[][] = Array.from({ length: n }, () => []);

  // HAProxy processes: one per load balancer, plus the old ones a soft reload left holding their connections.
  const processes: Balancer[] = [];
  const current: number[] = [];
  const newProcess = (): number => {
    const b = createBalancer(algorithm, n, setup.initialWeight);
    for (let s = 0; s < n; s++) if (up[s] === true) b.setUp(s, true);
    processes.push(b);
    return processes.length - 1;
  };
  for (let lb = 0; lb < setup.loadBalancers; lb++) current.push(newProcess());

  // Connection ids: the initial clients, then the arrivals, then the scenario's extra clients.
  const base = traffic.initial.length + traffic.arrivals.length;
  const extras = scenario.events.reduce((acc, e) => acc + (e.kind === 'shock' ? e.clients.length : 0), 0);
  const connRate = new Float64Array(base + extras);
  const connServer = new Int32Array(base + extras).fill(-1);
  const connBalancer = new Int32Array(base + extras);
  const connProcess = new Int32Array(base + extras).fill(-1);
  let nextExtra = base;
  const departureOrder = traffic.departureOrder ?? departureOrderOf(traffic.initial, traffic.arrivals);
  // Flat copies of the times the event loop reads at every step.
  const ends = Float64Array.from([...traffic.initial, ...traffic.arrivals], (c) => c.end);
  const arrivalTimes = Float64Array.from(traffic.arrivals, (c) => c.arrival);
  let nextDeparture = 0;
  const extraDepartures = new EventHeap();

  const sampleCount = Math.floor(scenario.durationSeconds / res);
  const sampleTimes = new Float64Array(sampleCount);
  const loads = new Float64Array(sampleCount * n).fill(NaN);
  const cycles: WeightCycle[] = [];
  let writes = 0;
  let skippedPlans = 0;
  let reloadsSeen = 0;
  let shock: SimResult['shock'] = null;
  let placedMeasured = 0;
  let placedOnSinkholes = 0;

  const advance = (server: number, t: number): void => {
    integral[server] = (integral[server] ?? 0) + (load[server] ?? 0) * (t - (integratedTo[server] ?? 0));
    integratedTo[server] = t;
  };

  /** Connections held per server (all processes): the refreshed bound's live counts. */
  const held = new Float64Array(n);
  /** The refreshed bound's estimate of each server's utilisation: exact at a refresh, then moved by the mean of what arrives and leaves. */
  const estimate = new Float64Array(n);
  let meanRate = 0;
  const refreshSeconds = policy.kind === 'clairvoyant' ? policy.refreshSeconds : undefined;
  let nextRefresh = refreshSeconds === undefined ? Infinity : 0;
  // The population at time 0 is placed knowing every rate, so that every policy starts from the same kind of state.
  let refreshed = false;
  const refresh = (): void => {
    refreshed = true;
    let total = 0;
    let count = 0;
    for (let i = 0; i < n; i++) {
      estimate[i] = (load[i] ?? 0) / (capacity[i] ?? 1);
      total += load[i] ?? 0;
      count += held[i] ?? 0;
    }
    meanRate = count > 0 ? total / count : 0;
  };

  const choose = (balancer: Balancer): number => {
    if (policy.kind !== 'clairvoyant') return balancer.pick();
    // The bound knows every capacity and which server is a sinkhole (it sends it nothing while
    // another is up), and every rate unless refreshed: then what it knows is `estimate`, the exact
    // loads of the last refresh plus the mean rate of each connection placed since, minus the
    // server's mean for each that left. Either way the working server least utilised.
    const utilisation = (i: number): number => (refreshed ? (estimate[i] ?? 0) : (load[i] ?? 0) / (capacity[i] ?? 1));
    let best = -1;
    const better = (i: number, b: number): boolean => (sinkhole[i] !== sinkhole[b] ? sinkhole[i] !== true : utilisation(i) < utilisation(b));
    for (let i = 0; i < n; i++) {
      if (up[i] === true && (best === -1 || better(i, best))) best = i;
    }
    return best;
  };

  /** Places a connection; returns the server, or -1 when no server is up (the client gives up). */
  const place = (id: number, t: number): number => {
    const processIndex = current[connBalancer[id] ?? 0] ?? -1;
    const balancer = processes[processIndex];
    if (balancer === undefined) throw new Error(`no load balancer for connection ${id}`);
    const server = choose(balancer);
    if (server === -1) return -1;
    advance(server, t);
    load[server] = (load[server] ?? 0) + (connRate[id] ?? 0);
    estimate[server] = (estimate[server] ?? 0) + meanRate / (capacity[server] ?? 1);
    held[server] = (held[server] ?? 0) + 1;
    connServer[id] = server;
    connProcess[id] = processIndex;
    balancer.connected(server);
    if (t > scenario.measureFrom && t <= scenario.measureTo) {
      placedMeasured++;
      if (sinkhole[server] === true) placedOnSinkholes++;
    }
    return server;
  };

  const open = (id: number, c: Pick<Connection, 'rate' | 'loadBalancer'>, t: number): number => {
    connRate[id] = c.rate;
    connBalancer[id] = c.loadBalancer;
    return place(id, t);
  };

  const close = (id: number, t: number): void => {
    const server = connServer[id] ?? -1;
    if (server === -1) return;
    advance(server, t);
    load[server] = Math.max(0, (load[server] ?? 0) - (connRate[id] ?? 0));
    const count = held[server] ?? 0;
    estimate[server] = count > 1 ? (estimate[server] ?? 0) * (1 - 1 / count) : 0;
    held[server] = Math.max(0, count - 1);
    connServer[id] = -1;
    processes[connProcess[id] ?? -1]?.disconnected(server);
  };

  const setServerUp = (server: number, isUp: boolean, t: number): void => {
    advance(server, t);
    up[server] = isUp;
    for (const b of processes) b.setUp(server, isUp);
  };

  for (const s of scenario.initialServers) {
    inPool[s] = true;
    setServerUp(s, true, 0);
  }
  traffic.initial.forEach((c, id) => open(id, c, 0));

  /** What Graphite would be told at each bucket's end, at that instant: for the `exact-at-point-end` view. */
  const atBucketEnd: Float64Array[] = [];
  const reportedNow = (s: number): number => (sinkhole[s] === true ? 0 : (load[s] ?? 0) / (capacity[s] ?? 1));
  const closeBucket = (bucket: number): void => {
    const end = (bucket + 1) * res;
    sampleTimes[bucket] = end;
    if (view === 'exact-at-point-end') atBucketEnd[bucket] = Float64Array.from(names, (_, s) => reportedNow(s));
    for (let s = 0; s < n; s++) {
      if (inPool[s] !== true) continue;
      advance(s, end);
      const utilisation = (integral[s] ?? 0) / res / (capacity[s] ?? 1);
      integral[s] = 0;
      const list = reported[s];
      if (list === undefined) continue;
      // A sinkhole is out of service in all but name: what its clients send is lost, not carried,
      // so it is neither a load to balance nor a server to balance onto (left out like a server down).
      if (up[s] === true && sinkhole[s] !== true) loads[bucket * n + s] = utilisation;
      // Metrics not reaching Graphite yet: no series at all until they do.
      if (end <= (silentUntil[s] ?? 0)) continue;
      while (list.length < bucket) list.push(null);
      if (up[s] === true) {
        const reportedValue = sinkhole[s] === true ? 0 : utilisation;
        const noisy = setup.metrics.noise > 0 ? reportedValue * Math.max(0, 1 + setup.metrics.noise * normal(noise)) : reportedValue;
        list.push(noisy);
      } else {
        // A host that is down reports nothing; Graphite shows nulls.
        list.push(null);
      }
    }
  };

  const weightsNow = (): number[][] => current.map((p) => names.map((_, s) => (inPool[s] === true ? (processes[p]?.weight(s) ?? NaN) : NaN)));

  const weighterCycle = (t: number): void => {
    if (backend !== null) runWeighter(backend, t);
    // The figures read the weights after the cycle: what HAProxy runs with until the next one.
    cycles.push({ time: t, weights: weightsNow() });
  };

  const observe = (pi: number): ObservedServer[] => {
    const p = processes[pi];
    if (p === undefined) return [];
    return names.flatMap((name, s) =>
      inPool[s] === true ? [{ name, status: up[s] === true ? 'UP' : 'DOWN', admin: 'ready' as const, weight: p.weight(s), initialWeight: setup.initialWeight, sessions: p.sessions(s), totalSessions: p.totalSessions(s) }] : [],
    );
  };

  /** The measurement a `view` puts in place of Graphite's: the same servers, other loads and spans. */
  const viewed = (measurement: Measurement): Measurement => {
    if (view === undefined) return measurement;
    const loads = new Map<string, number>();
    const spans = new Map<string, { start: number; end: number }>();
    for (const name of measurement.loads.keys()) {
      const s = names.indexOf(name);
      if (view === 'exact-now') {
        loads.set(name, reportedNow(s));
        continue;
      }
      const span = measurement.spans.get(name);
      const exact = span === undefined ? undefined : atBucketEnd[Math.round(span.end / res) - 1]?.[s];
      if (span === undefined || exact === undefined) continue;
      // A load at one instant: the connections placed after it were all missed, the ones before all seen.
      loads.set(name, exact);
      spans.set(name, { start: span.end - 1e-6, end: span.end });
    }
    return { ...measurement, loads, spans };
  };

  const memories = new Map<string, BackendMemory>();
  const planning = policy.kind === 'haproxy' ? (policy.planning ?? 'per-lb') : 'per-lb';
  const oneShot = policy.kind === 'haproxy' && policy.oneShot === true;

  const decide = (config: BackendConfig, key: string, observed: ObservedBackend, measurement: Measurement, t: number): BackendPlan => {
    const memory = oneShot ? undefined : updateMemory(memories.get(key), observed, t, measurement.loads);
    if (memory !== undefined) memories.set(key, memory);
    const decision = decideBackend({ backend: config, loadBalancer: key, observed, measurement, now: t, ...(memory === undefined ? {} : { memory }) });
    if (decision.reload !== null) reloadsSeen++;
    options.onDecision?.(t, decision.explanations, names.map((_, i) => (load[i] ?? 0) / (capacity[i] ?? 1)));
    return decision.plan;
  };

  const apply = (plan: BackendPlan, targets: readonly Balancer[]): void => {
    if (plan.status === 'skipped') {
      skippedPlans++;
      return;
    }
    for (const action of plan.actions) {
      if (action.kind !== 'set-weight') continue;
      const s = names.indexOf(action.server);
      if (s === -1) throw new Error(`plan names unknown server ${action.server}`);
      for (const b of targets) {
        if (b.weight(s) === action.weight) continue;
        b.setWeight(s, action.weight);
        writes++;
      }
    }
  };

  const runWeighter = (config: BackendConfig, t: number): void => {
    const measurement = viewed(measure(renderSeries(t), config));
    const balancers = current.map((p) => processes[p]).filter((b): b is Balancer => b !== undefined);
    if (planning === 'fleet') {
      // One view of the fleet: sessions and counters summed over the load balancers, the weights of the first.
      const views = current.map((p) => observe(p));
      const merged = (views[0] ?? []).map((s, i) => ({
        ...s,
        sessions: views.reduce((a, v) => a + (v[i]?.sessions ?? 0), 0),
        totalSessions: views.reduce((a, v) => a + (v[i]?.totalSessions ?? 0), 0),
      }));
      apply(decide(config, 'fleet', { backend: BACKEND, algorithm, servers: merged }, measurement, t), balancers);
      return;
    }
    current.forEach((p, lb) => {
      const balancer = processes[p];
      if (balancer === undefined) return;
      apply(decide(config, `lb${lb + 1}`, { backend: BACKEND, algorithm: balancer.algorithm, servers: observe(p) }, measurement, t), [balancer]);
    });
  };

  /** What `/render?target=...&from=-<window>s` returns at time t, with Graphite's timestamps (bucket starts). */
  const renderSeries = (t: number): Series[] => {
    const series: Series[] = [];
    const window = renderWindow(t, setup.metrics);
    const timestamps = window.count > 0 ? Array.from({ length: window.count }, (_, i) => (window.first + i) * res) : [];
    reported.forEach((list, s) => {
      // Graphite has no series for a server that never reported.
      if (list.length > 0) series.push({ name: names[s] ?? String(s), values: renderPoints(list, t, setup.metrics), timestamps });
    });
    return series;
  };

  const events = [...scenario.events].sort((a, b) => a.at - b.at);
  let nextEvent = 0;
  let nextArrival = 0;
  let bucket = 0;
  let cycle = 1;
  const interval = setup.weighterIntervalSeconds;

  for (;;) {
    const tBucket = bucket < sampleCount ? (bucket + 1) * res : Infinity;
    const tEvent = events[nextEvent]?.at ?? Infinity;
    const departing = departureOrder[nextDeparture] ?? -1;
    const tDeparture = Math.min(departing === -1 ? Infinity : (ends[departing] ?? Infinity), extraDepartures.peekTime());
    const tArrival = arrivalTimes[nextArrival] ?? Infinity;
    const tCycle = cycle * interval;
    const t = Math.min(tBucket, tEvent, tDeparture, tArrival, tCycle);
    if (t > scenario.durationSeconds || t === Infinity) break;
    // Nothing happened between the refresh time and t: the state at t is the state then.
    while (nextRefresh <= t) {
      refresh();
      nextRefresh += refreshSeconds ?? Infinity;
    }
    // At equal times: close the bucket first (it covers the time before t), then the scenario,
    // departures, arrivals, and the weighter last (it sees the state at t).
    if (t === tBucket) {
      closeBucket(bucket);
      bucket++;
    } else if (t === tEvent) {
      const event = events[nextEvent++];
      if (event === undefined) continue;
      switch (event.kind) {
        case 'shock': {
          const servers = event.clients.map((c) => {
            const id = nextExtra++;
            extraDepartures.push(t + c.lifetimeSeconds, id);
            return open(id, { rate: c.rate, loadBalancer: 0 }, t);
          });
          shock = { at: t, servers: [...new Set(servers.filter((s) => s !== -1))] };
          break;
        }
        case 'add-server':
          inPool[event.server] = true;
          integratedTo[event.server] = t;
          silentUntil[event.server] = t + (event.metricsAfterSeconds ?? 0);
          setServerUp(event.server, true, t);
          break;
        case 'server-down': {
          setServerUp(event.server, false, t);
          // Its clients see the connection drop and reconnect at once, keeping their rate and
          // the rest of their life; HAProxy places them on the servers still up.
          const victims: number[] = [];
          connServer.forEach((server, id) => {
            if (server === event.server) victims.push(id);
          });
          for (const id of victims) {
            close(id, t);
            place(id, t);
          }
          break;
        }
        case 'server-up':
          setServerUp(event.server, true, t);
          break;
        case 'reload':
          for (let lb = 0; lb < current.length; lb++) {
            if (event.loadBalancer === undefined || event.loadBalancer === lb) current[lb] = newProcess();
          }
          break;
        case 'sinkhole':
          sinkhole[event.server] = true;
          break;
      }
    } else if (t === tDeparture) {
      if (extraDepartures.peekTime() === t) close(extraDepartures.pop(), t);
      else close(departureOrder[nextDeparture++] ?? -1, t);
    } else if (t === tArrival) {
      const id = traffic.initial.length + nextArrival;
      const c = traffic.arrivals[nextArrival++];
      if (c !== undefined) open(id, c, t);
    } else {
      weighterCycle(t);
      cycle++;
    }
  }

  const sinkholeShare = sinkhole.some((x) => x) ? (placedMeasured === 0 ? 0 : placedOnSinkholes / placedMeasured) : null;
  return { servers: names, sampleTimes, loads, cycles, shock, writes, skippedPlans, sinkholeShare, reloadsSeen };
}

/** The buckets `/render?from=-<window>s` covers at time t: those starting in [t - window, t). */
function renderWindow(t: number, metrics: Pick<MetricsPipeline, 'resolutionSeconds' | 'windowSeconds'>): { first: number; count: number } {
  const res = metrics.resolutionSeconds;
  const first = Math.max(0, Math.ceil((t - metrics.windowSeconds) / res - 1e-9));
  const last = Math.ceil(t / res - 1e-9) - 1;
  return { first, count: Math.max(0, last - first + 1) };
}

/**
 * The points Graphite returns at time t for one server's reported buckets (bucket k covers
 * [k·res, (k+1)·res)): the buckets starting in [t - window, t), each null until `delaySeconds`
 * after it ends (not yet reported or written), like the still-empty newest buckets of a real render.
 */
export function renderPoints(reported: readonly (number | null)[], t: number, metrics: Pick<MetricsPipeline, 'resolutionSeconds' | 'delaySeconds' | 'windowSeconds'>): (number | null)[] {
  const res = metrics.resolutionSeconds;
  const { first, count } = renderWindow(t, metrics);
  const values: (number | null)[] = [];
  for (let k = first; k < first + count; k++) {
    const visible = (k + 1) * res + metrics.delaySeconds <= t + 1e-9;
    values.push(visible ? (reported[k] ?? null) : null);
  }
  return values;
}

function validateSetup(setup: LabSetup): void {
  const problems: string[] = [];
  const positive = (name: string, v: number): void => {
    if (!(Number.isFinite(v) && v > 0)) problems.push(`${name} must be > 0 (got ${v})`);
  };
  if (!Number.isInteger(setup.servers) || setup.servers < 1) problems.push(`servers must be a positive integer (got ${setup.servers})`);
  if (!Number.isInteger(setup.loadBalancers) || setup.loadBalancers < 1) problems.push(`loadBalancers must be a positive integer (got ${setup.loadBalancers})`);
  positive('arrivalsPerSecond', setup.arrivalsPerSecond);
  positive('meanLifetimeSeconds', setup.meanLifetimeSeconds);
  positive('weighterIntervalSeconds', setup.weighterIntervalSeconds);
  positive('metrics.resolutionSeconds', setup.metrics.resolutionSeconds);
  positive('metrics.windowSeconds', setup.metrics.windowSeconds);
  positive('rate.min', setup.rate.min);
  positive('rate.alpha', setup.rate.alpha);
  if (!(setup.rate.max > setup.rate.min)) problems.push(`rate.max must exceed rate.min (got ${setup.rate.max})`);
  if (!(setup.metrics.delaySeconds >= 0)) problems.push(`metrics.delaySeconds must be >= 0 (got ${setup.metrics.delaySeconds})`);
  if (!(setup.metrics.noise >= 0)) problems.push(`metrics.noise must be >= 0 (got ${setup.metrics.noise})`);
  if (!Number.isInteger(setup.initialWeight) || setup.initialWeight < 1 || setup.initialWeight > 256) problems.push(`initialWeight must be an integer in 1..256 (got ${setup.initialWeight})`);
  if (problems.length > 0) throw new Error(`Invalid lab setup: ${problems.join('; ')}`);
}

function validateScenario(setup: LabSetup, scenario: Scenario): void {
  const servers = [...scenario.initialServers, ...scenario.events.flatMap((e) => (e.kind === 'shock' || e.kind === 'reload' ? [] : [e.server]))];
  const bad = servers.filter((s) => !(Number.isInteger(s) && s >= 0 && s < setup.servers));
  if (bad.length > 0) throw new Error(`Invalid scenario ${scenario.name}: server index ${bad.join(', ')} outside 0..${setup.servers - 1}`);
  if (!(scenario.durationSeconds > 0)) throw new Error(`Invalid scenario ${scenario.name}: durationSeconds must be > 0`);
}
