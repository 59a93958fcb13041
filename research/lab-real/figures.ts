import { imbalanceSamples, oscillation, percentile } from '../lab/metrics.js';
import type { SimResult, WeightCycle } from '../lab/simulator.js';

/**
 * The real lab's figures, computed by the simulator's own functions (`imbalanceSamples`,
 * `percentile`, `oscillation` from research/lab/metrics.ts) on the sinks' counts, so that a real run
 * and a simulated one are measured the same way.
 *
 * Imbalance of one Graphite bucket = max server load / mean server load over that bucket.
 * Imbalance excess of a run = mean over the measured buckets of (imbalance - 1): 0 is perfect
 * balance; it weighs every moment of the run, unlike a percentile.
 */

export interface RunFigures {
  readonly p50: number;
  readonly p95: number;
  readonly max: number;
  /** Mean of (imbalance - 1) over the measured buckets. */
  readonly excess: number;
  readonly samples: number;
  /** Direction changes per server per hour of lab time (0 without a weighter). */
  readonly oscillation: number;
}

/** Pure: the figures of a run over (from, to] in lab seconds. */
export function runFigures(result: SimResult, from: number, to: number): RunFigures {
  const samples = imbalanceSamples(result, from, to);
  const excess = samples.length === 0 ? NaN : samples.reduce((sum, v) => sum + (v - 1), 0) / samples.length;
  return {
    p50: percentile(samples, 50),
    p95: percentile(samples, 95),
    max: samples.length === 0 ? NaN : Math.max(...samples),
    excess,
    samples: samples.length,
    oscillation: oscillation(result, from, to).flips,
  };
}

/** Pure: ratio of two excesses (weighter / leastconn alone); NaN when the reference is 0. */
export function excessRatio(weighted: RunFigures, alone: RunFigures): number {
  return alone.excess > 0 ? weighted.excess / alone.excess : NaN;
}

/**
 * Pure: a real run in the simulator's result shape. `loads[bucket][server]` are the sinks' mean
 * rates over each bucket; bucket k covers lab time [k·res, (k+1)·res).
 */
export function asSimResult(servers: readonly string[], loads: readonly (readonly number[])[], bucketSeconds: number, cycles: readonly WeightCycle[] = []): SimResult {
  const n = servers.length;
  const sampleTimes = new Float64Array(loads.length);
  const flat = new Float64Array(loads.length * n);
  loads.forEach((row, k) => {
    sampleTimes[k] = (k + 1) * bucketSeconds;
    for (let s = 0; s < n; s++) flat[k * n + s] = row[s] ?? NaN;
  });
  return { servers, sampleTimes, loads: flat, cycles, shock: null, writes: 0, skippedPlans: 0, sinkholeShare: null, reloadsSeen: 0 };
}
