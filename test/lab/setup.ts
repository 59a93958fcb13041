import { z } from 'zod';
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
}

export interface ShockClient {
  readonly rate: number;
  readonly lifetimeSeconds: number;
}

export type ScenarioEvent =
  | { readonly at: number; readonly kind: 'shock'; readonly clients: readonly ShockClient[] }
  | { readonly at: number; readonly kind: 'add-server'; readonly server: number }
  | { readonly at: number; readonly kind: 'server-down'; readonly server: number }
  | { readonly at: number; readonly kind: 'server-up'; readonly server: number };

export interface Ramp {
  /** The arrival rate swings between (1 - amplitude) and (1 + amplitude) times the base. */
  readonly amplitude: number;
  readonly periodSeconds: number;
}

export interface Scenario {
  readonly name: string;
  readonly title: string;
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
  metrics: { resolutionSeconds: 10, delaySeconds: 10, windowSeconds: 60, aggregation: 'leading-edge', noise: 0 },
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
  rate: z.strictObject({ min: positive, max: positive, alpha: positive }).partial().optional(),
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
export function dailyRampScenario(setup: LabSetup): Scenario {
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

/** Arrival rate at time t (a ramp's trough is at t = 0). */
export function arrivalRateAt(setup: LabSetup, scenario: Scenario, t: number): number {
  const ramp = scenario.ramp;
  if (ramp === undefined) return setup.arrivalsPerSecond;
  return setup.arrivalsPerSecond * (1 - ramp.amplitude * Math.cos((2 * Math.PI * t) / ramp.periodSeconds));
}

export function serverName(index: number): string {
  return `s${String(index + 1).padStart(2, '0')}`;
}
