import { boundedPareto, boundedParetoMean, exponential, lognormal, uniform } from './random.js';
import { arrivalRateAt, type LabSetup, type Scenario } from './setup.js';

/**
 * The clients of one scenario run, drawn once per (setup, scenario, seed) and then replayed
 * identically for every policy: the contest compares policies on the same connections.
 */

export interface Connection {
  /** Arrival time in seconds (negative for the population already connected at time 0). */
  readonly arrival: number;
  /** Points/s the client sends for its whole life. */
  readonly rate: number;
  /** Time it disconnects. */
  readonly end: number;
  /** The load balancer its connection reaches. */
  readonly loadBalancer: number;
}

export interface Traffic {
  /** Clients connected at time 0 (in arrival order): the system starts in its steady state. */
  readonly initial: readonly Connection[];
  /** Clients arriving during the run, in time order. */
  readonly arrivals: readonly Connection[];
  /**
   * Every client by disconnection time (ties by index), indexing initial then arrivals. The ends
   * are fixed by the traffic whatever the policy, so they are sorted once and shared; computed by
   * the simulator when absent (e.g. traffic built by hand).
   */
  readonly departureOrder?: Int32Array;
}

/** Indices of initial-then-arrivals clients sorted by end time (ties by index). */
export function departureOrderOf(initial: readonly Connection[], arrivals: readonly Connection[]): Int32Array {
  const all = [...initial, ...arrivals];
  const order = Int32Array.from(all.keys());
  order.sort((a, b) => (all[a]?.end ?? 0) - (all[b]?.end ?? 0) || a - b);
  return order;
}

/** Traffic from lists of clients (arrivals must be in time order). */
function makeTraffic(initial: readonly Connection[], arrivals: readonly Connection[]): Traffic {
  return { initial, arrivals, departureOrder: departureOrderOf(initial, arrivals) };
}

/**
 * Poisson arrivals (non-homogeneous under a ramp, by thinning), bounded-Pareto (or lognormal)
 * rates and exponential lifetimes. The population at time 0 is the survivors of arrivals over the
 * ten mean lifetimes before it (missing at most e^-10 of it), so a run starts with a realistic mix
 * of ages instead of an empty pool filling up. With bursts, each arrival is a client opening
 * `burst.size` connections at once, each with its own rate, through one load balancer, all ending
 * together; clients then arrive `size` times less often, so the connections keep their rate.
 */
export function generateTraffic(setupOrDefault: LabSetup, scenario: Scenario, seed: number): Traffic {
  const setup = scenario.setup ?? setupOrDefault;
  const clock = uniform(seed, `${scenario.name}/arrivals`);
  const accept = uniform(seed, `${scenario.name}/thinning`);
  const rates = uniform(seed, `${scenario.name}/rates`);
  const lifetimes = uniform(seed, `${scenario.name}/lifetimes`);
  const balancers = uniform(seed, `${scenario.name}/load-balancers`);
  const burst = Math.max(1, Math.round(setup.burst?.size ?? 1));
  const { min, max, alpha, lognormalSigma } = setup.rate;
  const drawRate = (): number => (lognormalSigma === undefined ? boundedPareto(rates, min, max, alpha) : lognormal(rates, boundedParetoMean(min, max, alpha), lognormalSigma, max));
  const peak = (setup.arrivalsPerSecond / burst) * (1 + (scenario.ramp?.amplitude ?? 0));
  const initial: Connection[] = [];
  const arrivals: Connection[] = [];
  let t = -10 * setup.meanLifetimeSeconds;
  for (;;) {
    t += exponential(clock, 1 / peak);
    if (t > scenario.durationSeconds) break;
    // Every draw is made whether or not the candidate is kept, so that a thinned candidate does
    // not shift the rates of the ones after it.
    const keep = accept() * peak < arrivalRateAt(setup, scenario, t) / burst;
    const clientRates = Array.from({ length: burst }, drawRate);
    const end = t + exponential(lifetimes, setup.meanLifetimeSeconds);
    const loadBalancer = Math.min(setup.loadBalancers - 1, Math.floor(balancers() * setup.loadBalancers));
    if (!keep) continue;
    for (const rate of clientRates) {
      const connection = { arrival: t, rate, end, loadBalancer };
      if (t < 0) {
        if (end > 0) initial.push(connection);
      } else {
        arrivals.push(connection);
      }
    }
  }
  return makeTraffic(initial, arrivals);
}
