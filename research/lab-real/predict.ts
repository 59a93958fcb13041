import { percentile } from '../lab/metrics.js';
import { uniform } from '../lab/random.js';
import { simulate, type Policy } from '../lab/simulator.js';
import { generateTraffic, type Connection, type Traffic } from '../lab/traffic.js';
import { excessRatio, runFigures, type RunFigures } from './figures.js';
import { policiesFor, scenarioFor, simSetupFor, type RealLabSettings } from './settings.js';
import type { ExampleSettings } from './weighter.js';

/**
 * The simulator's prediction for the real lab: the same setup (servers, arrivals, rates,
 * lifetimes, interval, window, aggregation, the measured metric delay), the same policies and the
 * very same connections the real run replayed.
 *
 * One simulation of those connections is not a prediction a real run can be held to: which server
 * a heavy client lands on under leastconn depends on the exact order of arrivals and departures,
 * and the real lab moves every event by some milliseconds (event loop, accept order, connections
 * opened and closed within one pass of its loop reach HAProxy in any order). So the
 * simulator also replays the same connections with that timing noise (every arrival and departure
 * moved by up to ±`JITTER_SECONDS`) many times; the band of those outcomes is the tolerance the real run is
 * checked against. Other seeds of the same setup show how much a different draw of traffic moves
 * the figures.
 */

/** Timing noise of the real lab, in lab seconds: ±0.5 lab s is ±25 ms of wall clock at 20x. */
export const JITTER_SECONDS = 0.5;
/** The real lab opens its initial connections one at a time, in schedule order. */
const OPEN_WINDOW = 1;
const JITTER_RUNS = 40;
/** The tolerance band: these percentiles of the jittered outcomes. */
export const BAND = { low: 5, high: 95 } as const;

export interface PolicyPrediction {
  readonly alone: RunFigures;
  readonly weighted: RunFigures;
  readonly clairvoyant: RunFigures;
  readonly ratio: number;
}

export interface Band {
  readonly low: number;
  readonly median: number;
  readonly high: number;
}

export interface JitterBand {
  readonly runs: number;
  readonly aloneExcess: Band;
  readonly weightedExcess: Band;
  readonly ratio: Band;
  readonly aloneP95: Band;
  readonly weightedP95: Band;
}

export interface SeedSpread {
  readonly seeds: readonly number[];
  readonly meanAloneExcess: number;
  readonly meanWeightedExcess: number;
  /** Ratio of the mean excesses. */
  readonly ratioOfMeans: number;
  /** Percentiles 10, 50, 90 of the per-seed ratios. */
  readonly ratio: Band;
}

export interface RealLabPrediction {
  /** The same connections with their exact schedule. */
  readonly sameTraffic: PolicyPrediction;
  /** The same connections under the real lab's timing noise: the tolerance. */
  readonly jitter: JitterBand;
  readonly spread: SeedSpread;
}

/**
 * Pure: the traffic with every time moved by up to ±jitter (departures kept after arrivals and
 * after lab time 0) and the initial population's order shuffled within windows of `window`
 * connections (1: kept).
 */
function jitterTraffic(traffic: Traffic, seed: number, jitter: number, window: number): Traffic {
  const u = uniform(seed, 'real-lab/jitter');
  const move = (t: number): number => t + (u() - 0.5) * 2 * jitter;
  const initial = traffic.initial
    .map((c, i) => ({ c, key: i + u() * window }))
    .sort((a, b) => a.key - b.key)
    .map(({ c }): Connection => ({ ...c, end: Math.max(1e-3, move(c.end)) }));
  const arrivals = traffic.arrivals
    .map((c): Connection => {
      const arrival = Math.max(0, move(c.arrival));
      return { ...c, arrival, end: Math.max(arrival + 1e-3, move(c.end)) };
    })
    .sort((a, b) => a.arrival - b.arrival);
  return { initial, arrivals };
}

function band(values: readonly number[], low: number, high: number): Band {
  return { low: percentile(values, low), median: percentile(values, 50), high: percentile(values, high) };
}

function simulateAll(settings: RealLabSettings, example: ExampleSettings, delaySeconds: number, seed: number, traffic?: Traffic, withClairvoyant = true): PolicyPrediction {
  const setup = simSetupFor(settings, example, delaySeconds);
  const scenario = scenarioFor(settings, setup);
  const shared = traffic ?? generateTraffic(setup, scenario, seed);
  const policies = policiesFor(example);
  const clairvoyantPolicy: Policy = { kind: 'clairvoyant', name: 'clairvoyant bound' };
  const run = (policy: Policy): RunFigures => runFigures(simulate(setup, scenario, policy, seed, { traffic: shared }), scenario.measureFrom, scenario.measureTo);
  const alone = run(policies.alone);
  const weighted = run(policies.weighted);
  const clairvoyant = withClairvoyant ? run(clairvoyantPolicy) : alone;
  return { alone, weighted, clairvoyant, ratio: excessRatio(weighted, alone) };
}

export function predictRealLab(settings: RealLabSettings, example: ExampleSettings, delaySeconds: number, traffic: Traffic, seeds: readonly number[]): RealLabPrediction {
  const sameTraffic = simulateAll(settings, example, delaySeconds, settings.seed, traffic);
  const jittered = Array.from({ length: JITTER_RUNS }, (_, i) =>
    simulateAll(settings, example, delaySeconds, settings.seed, jitterTraffic(traffic, i + 1, JITTER_SECONDS, OPEN_WINDOW), false),
  );
  const perSeed = seeds.map((seed) => simulateAll(settings, example, delaySeconds, seed, undefined, false));
  const mean = (values: readonly number[]): number => values.reduce((a, b) => a + b, 0) / Math.max(1, values.length);
  const meanAloneExcess = mean(perSeed.map((p) => p.alone.excess));
  const meanWeightedExcess = mean(perSeed.map((p) => p.weighted.excess));
  return {
    sameTraffic,
    jitter: {
      runs: jittered.length,
      aloneExcess: band(jittered.map((p) => p.alone.excess), BAND.low, BAND.high),
      weightedExcess: band(jittered.map((p) => p.weighted.excess), BAND.low, BAND.high),
      ratio: band(jittered.map((p) => p.ratio), BAND.low, BAND.high),
      aloneP95: band(jittered.map((p) => p.alone.p95), BAND.low, BAND.high),
      weightedP95: band(jittered.map((p) => p.weighted.p95), BAND.low, BAND.high),
    },
    spread: {
      seeds,
      meanAloneExcess,
      meanWeightedExcess,
      ratioOfMeans: meanAloneExcess > 0 ? meanWeightedExcess / meanAloneExcess : NaN,
      ratio: band(perSeed.map((p) => p.ratio), 10, 90),
    },
  };
}
