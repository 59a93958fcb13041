import * as z from 'zod';
import { boundedParetoMean } from './random.js';

/**
 * What the lab simulates: the traffic, the pool, the metrics pipeline and the weighter's rhythm
 * (`LabSetup`), and what happens to them over time (`Scenario`). Every number is a parameter so
 * that the real lab can ask the simulator about its own, smaller setup.
 */

export type Aggregation = 'leading-edge' | 'average';

export interface MetricsPipeline {
  /** Graphite's resolution: each point is the mean load of one bucket of this many seconds. */
  readonly resolutionSeconds: number;
  /** Seconds after a bucket ends before its point can be rendered (reporting + carbon). */
  readonly delaySeconds: number;
  /** The render window (`from: -<window>s`): buckets starting in [now - window, now). */
  readonly windowSeconds: number;
  readonly aggregation: Aggregation;
  /** Relative standard deviation of the reported value around the true bucket mean (0 = exact). */
  readonly noise: number;
}

export interface RateDistribution {
  /** Bounded Pareto of points/s per connection. */
  readonly min: number;
  readonly max: number;
  readonly alpha: number;
  /**
   * When set, rates are lognormal instead, with this shape (standard deviation of the log), the
   * same mean as the bounded Pareto above and capped at `max`.
   */
  readonly lognormalSigma?: number;
}

export interface LabSetup {
  /** Servers in the full pool (a scenario may start with fewer). */
  readonly servers: number;
  /** Load balancers sharing the arrivals uniformly; each one has its own weighter view. */
  readonly loadBalancers: number;
  /** Mean new connections per second (Poisson) at the base of a ramp. */
  readonly arrivalsPerSecond: number;
  readonly rate: RateDistribution;
  /** Mean connection lifetime (exponential). */
  readonly meanLifetimeSeconds: number;
  /** Weight of every server in the HAProxy configuration (and of a server added later). */
  readonly initialWeight: number;
  readonly weighterIntervalSeconds: number;
  readonly metrics: MetricsPipeline;
  /** The backend's balance algorithm (leastconn when absent). */
  readonly algorithm?: 'leastconn' | 'roundrobin';
  /**
   * Capacity of each server relative to a full one (1 when absent). Graphite then reports
   * utilisation, load / capacity, and the imbalance is measured on it.
   */
  readonly capacities?: readonly number[];
  /** Each client opens this many connections at once (same load balancer, same lifetime). */
  readonly burst?: { readonly size: number };
}

export interface ShockClient {
  readonly rate: number;
  readonly lifetimeSeconds: number;
}

export type ScenarioEvent =
  | { readonly at: number; readonly kind: 'shock'; readonly clients: readonly ShockClient[] }
  /** The server joins the pool; its metrics reach Graphite only `metricsAfterSeconds` later (0 when absent). */
  | { readonly at: number; readonly kind: 'add-server'; readonly server: number; readonly metricsAfterSeconds?: number }
  | { readonly at: number; readonly kind: 'server-down'; readonly server: number }
  | { readonly at: number; readonly kind: 'server-up'; readonly server: number }
  /**
   * A soft reload (`haproxy -sf`) of one load balancer (every one when absent): a new process with
   * the configured weights and no connection takes every new connection; the old one keeps its
   * connections until they end.
   */
  | { readonly at: number; readonly kind: 'reload'; readonly loadBalancer?: number }
  /** From then on the server accepts connections but ingests nothing: it reports a load of 0. */
  | { readonly at: number; readonly kind: 'sinkhole'; readonly server: number };

export interface Ramp {
  /** The arrival rate swings between (1 - amplitude) and (1 + amplitude) times the base. */
  readonly amplitude: number;
  readonly periodSeconds: number;
}

export interface Scenario {
  readonly name: string;
  readonly title: string;
  /** The setup this scenario runs on, when it is not the contest's (e.g. slow metrics, 40 servers). */
  readonly setup?: LabSetup;
  /**
   * The figure its gap closed is measured on: p95 imbalance, or the minutes the shocked servers
   * spend above 1.2x the mean (p95 when absent).
   */
  readonly figure?: 'p95' | 'shock';
  /** Indices of the servers in service at time 0. */
  readonly initialServers: readonly number[];
  readonly durationSeconds: number;
  /** Figures are taken over (measureFrom, measureTo]; before that the policy settles. */
  readonly measureFrom: number;
  readonly measureTo: number;
  readonly ramp?: Ramp;
  readonly events: readonly ScenarioEvent[];
}

/**
 * The render window the product ships (`from: -15min`, the schema default): wide enough for
 * Graphite delays of several minutes at a 5-minute resolution. With the leading edge a wide window
 * costs nothing: the newest point is used.
 */
const SHIPPED_WINDOW_SECONDS = 900;

/**
 * The default setup: 10 ingestion servers at about 10,000 points/s each. Rates follow a bounded
 * Pareto 5..5,000 points/s with α = 1 (mean 34.6 points/s, every decade of rates carries the same
 * load), so a server holds ~290 connections and one 5,000 points/s client is half a server's load.
 * Lifetimes average 30 minutes. Graphite at 10 s resolution, a point visible 10 s after its
 * bucket ends, the weighter every minute reading the last minute at its leading edge.
 * The per-server load is chosen so that 5,000 points/s fits under 1.2x the mean: with a smaller
 * load no policy could ever bring a shocked server back within 1.2x and the shock figure would
 * say nothing.
 */
export const DEFAULT_SETUP: LabSetup = {
  servers: 10,
  loadBalancers: 1,
  arrivalsPerSecond: (10 * 10_000) / boundedParetoMean(5, 5000, 1) / 1800,
  rate: { min: 5, max: 5000, alpha: 1 },
  meanLifetimeSeconds: 1800,
  initialWeight: 256,
  weighterIntervalSeconds: 60,
  metrics: { resolutionSeconds: 10, delaySeconds: 10, windowSeconds: SHIPPED_WINDOW_SECONDS, aggregation: 'leading-edge', noise: 0 },
};

const positive = z.number().gt(0).finite();

/** A partial setup as JSON (e.g. the real lab's): any key of LabSetup, `rate`/`metrics` key by key. */
const setupOverrides = z.strictObject({
  servers: z.number().int().min(1).max(1000).optional(),
  loadBalancers: z.number().int().min(1).max(100).optional(),
  arrivalsPerSecond: positive.optional(),
  meanLifetimeSeconds: positive.optional(),
  initialWeight: z.number().int().min(1).max(256).optional(),
  weighterIntervalSeconds: positive.optional(),
  rate: z.strictObject({ min: positive, max: positive, alpha: positive, lognormalSigma: positive }).partial().optional(),
  algorithm: z.enum(['leastconn', 'roundrobin']).optional(),
  metrics: z
    .strictObject({
      resolutionSeconds: positive,
      delaySeconds: z.number().min(0).finite(),
      windowSeconds: positive,
      aggregation: z.enum(['leading-edge', 'average']),
      noise: z.number().min(0).finite(),
    })
    .partial()
    .optional(),
});

/** DEFAULT_SETUP with the given overrides, validated (the error names the offending key). */
export function setupWithOverrides(input: unknown, source = 'setup'): LabSetup {
  const parsed = setupOverrides.safeParse(input);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.map(String).join('.') || '(root)'}: ${i.message}`);
    throw new Error(`Invalid lab setup in ${source}: ${issues.join('; ')}`);
  }
  const { rate, metrics, ...rest } = parsed.data;
  const defined = Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined));
  return {
    ...DEFAULT_SETUP,
    ...defined,
    rate: { ...DEFAULT_SETUP.rate, ...rate },
    metrics: { ...DEFAULT_SETUP.metrics, ...metrics },
  };
}

const HOUR = 3600;

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** Steady heavy-tailed traffic: one hour to settle, four measured. */
export function steadyScenario(setup: LabSetup): Scenario {
  return { name: 'steady', title: 'steady traffic', initialServers: range(setup.servers), durationSeconds: 5 * HOUR, measureFrom: HOUR, measureTo: 5 * HOUR, events: [] };
}

/**
 * Two clients at the top of the rate range connect at the same moment, through the same load
 * balancer, after an hour of steady traffic, and stay (2 h lifetime, longer than the hour we
 * watch): the question is how fast the servers they landed on get back within 1.2x the mean.
 */
export function shockScenario(setup: LabSetup): Scenario {
  const client = { rate: setup.rate.max, lifetimeSeconds: 2 * HOUR };
  return {
    name: 'shock',
    title: `shock: two ${setup.rate.max} points/s clients`,
    figure: 'shock',
    initialServers: range(setup.servers),
    durationSeconds: 2 * HOUR,
    measureFrom: HOUR,
    measureTo: 2 * HOUR,
    events: [{ at: HOUR, kind: 'shock', clients: [client, client] }],
  };
}

/** The last server of the pool joins, empty, after an hour; two hours measured from then. */
export function serverAddedScenario(setup: LabSetup): Scenario {
  const added = setup.servers - 1;
  return {
    name: 'server-added',
    title: 'a server added',
    initialServers: range(setup.servers - 1),
    durationSeconds: 3 * HOUR,
    measureFrom: HOUR,
    measureTo: 3 * HOUR,
    events: [{ at: HOUR, kind: 'add-server', server: added }],
  };
}

/**
 * The first server goes down after an hour (its clients reconnect at once to the others) and comes
 * back empty 30 minutes later; two hours measured from the failure.
 */
export function serverLeavesScenario(setup: LabSetup): Scenario {
  return {
    name: 'server-leaves',
    title: 'a server leaves and comes back',
    initialServers: range(setup.servers),
    durationSeconds: 3 * HOUR,
    measureFrom: HOUR,
    measureTo: 3 * HOUR,
    events: [
      { at: HOUR, kind: 'server-down', server: 0 },
      { at: 1.5 * HOUR, kind: 'server-up', server: 0 },
    ],
  };
}

/** A day: arrivals swing from 0.4x to 1.6x the base rate and back (night at time 0). */
function dailyRampScenario(setup: LabSetup): Scenario {
  return {
    name: 'daily-ramp',
    title: 'daily ramp of arrivals',
    initialServers: range(setup.servers),
    durationSeconds: 25 * HOUR,
    measureFrom: HOUR,
    measureTo: 25 * HOUR,
    ramp: { amplitude: 0.6, periodSeconds: 24 * HOUR },
    events: [],
  };
}

export function allScenarios(setup: LabSetup): Scenario[] {
  return [steadyScenario(setup), shockScenario(setup), serverAddedScenario(setup), serverLeavesScenario(setup), dailyRampScenario(setup)];
}

/** The setup with a new mean lifetime, arrivals scaled so that each server carries the same load. */
function withLifetime(setup: LabSetup, meanLifetimeSeconds: number): LabSetup {
  return { ...setup, meanLifetimeSeconds, arrivalsPerSecond: (setup.arrivalsPerSecond * setup.meanLifetimeSeconds) / meanLifetimeSeconds };
}

/** A steady scenario on another setup. */
function steadyOn(setup: LabSetup, name: string, title: string, settle = HOUR, measured = 4 * HOUR): Scenario {
  return { name, title, setup, initialServers: range(setup.servers), durationSeconds: settle + measured, measureFrom: settle, measureTo: settle + measured, events: [] };
}

/**
 * Issue 11's scenarios: the everyday events of a long-lived-connection fleet and the traffic
 * shapes the first contest lacked. Each runs on its own setup derived from `setup`.
 */
export function fleetScenarios(setup: LabSetup): Scenario[] {
  const long = withLifetime(setup, 2 * HOUR);
  const shockClient = { rate: setup.rate.max, lifetimeSeconds: 2 * HOUR };
  const slow: LabSetup = { ...setup, metrics: { ...setup.metrics, resolutionSeconds: 300, delaySeconds: 60 } };
  const capacities = range(setup.servers).map((i) => (i < 3 ? 0.5 : 1));
  return [
    steadyOn(slow, 'slow-metrics', 'slow metrics: 300 s resolution, 60 s delay'),
    steadyOn(withLifetime(setup, 180), 'short-lifetimes', 'short lifetimes: 3 min mean'),
    steadyOn(long, 'long-lifetimes', 'long lifetimes: 2 h mean', 2 * HOUR, 4 * HOUR),
    {
      name: 'long-lifetimes-shock',
      title: 'long lifetimes (2 h): shock',
      figure: 'shock',
      setup: long,
      initialServers: range(setup.servers),
      durationSeconds: 3 * HOUR,
      measureFrom: 2 * HOUR,
      measureTo: 3 * HOUR,
      events: [{ at: 2 * HOUR, kind: 'shock', clients: [shockClient, shockClient] }],
    },
    steadyOn({ ...setup, burst: { size: 30 } }, 'bursts', 'bursts: each client opens 30 connections at once'),
    steadyOn({ ...setup, servers: 40, arrivalsPerSecond: 12_000 / setup.meanLifetimeSeconds }, 'forty-servers', '40 servers, 12,000 connections'),
    steadyOn({ ...setup, rate: { ...setup.rate, lognormalSigma: 1.5 } }, 'lognormal', 'lognormal rates (σ = 1.5, same mean)'),
    steadyOn({ ...setup, capacities }, 'unequal-capacity', 'unequal capacity: 3 of 10 at half, load as utilisation'),
    steadyOn({ ...setup, algorithm: 'roundrobin' }, 'roundrobin', 'roundrobin backend'),
    {
      name: 'soft-reload',
      // Cycles run on whole multiples of the interval, so one runs at the hour: the worst moment.
      title: 'soft reload 1 s before a cycle',
      setup,
      initialServers: range(setup.servers),
      durationSeconds: 3 * HOUR,
      measureFrom: HOUR,
      measureTo: 3 * HOUR,
      events: [{ at: HOUR - 1, kind: 'reload' }],
    },
    {
      name: 'added-without-metrics',
      title: 'a server added, its metrics 15 min late',
      setup,
      initialServers: range(setup.servers - 1),
      durationSeconds: 3 * HOUR,
      measureFrom: HOUR,
      measureTo: 3 * HOUR,
      events: [{ at: HOUR, kind: 'add-server', server: setup.servers - 1, metricsAfterSeconds: 900 }],
    },
    {
      name: 'sinkhole',
      title: 'a sinkhole: one server ingests nothing',
      setup,
      initialServers: range(setup.servers),
      durationSeconds: 3 * HOUR,
      measureFrom: HOUR,
      measureTo: 3 * HOUR,
      events: [{ at: HOUR, kind: 'sinkhole', server: 0 }],
    },
  ];
}

/** Arrival rate at time t (a ramp's trough is at t = 0). */
export function arrivalRateAt(setup: LabSetup, scenario: Scenario, t: number): number {
  const ramp = scenario.ramp;
  if (ramp === undefined) return setup.arrivalsPerSecond;
  return setup.arrivalsPerSecond * (1 - ramp.amplitude * Math.cos((2 * Math.PI * t) / ramp.periodSeconds));
}

export function serverName(index: number): string {
  return `s${String(index + 1).padStart(2, '0')}`;
}
