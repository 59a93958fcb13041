import { UnsafeInputError } from './errors.js';

/**
 * Aggregation: one number per Graphite series (over time), and the loads of a backend's servers
 * relative to their mean (across servers), which every weighting function starts from.
 */

export type AggregationMethod = 'leading-edge' | 'average';

/**
 * Reduces one series to one load value.
 *
 * - `leading-edge`: the last non-null point. Graphite's newest bucket is often still null (not yet
 *   written), so trailing nulls are skipped rather than read as "no data".
 * - `average`: the arithmetic mean of the non-null points.
 *
 * Returns null when the series has no non-null point: the caller decides what "no data" means.
 *
 * Points must be finite and >= 0. The Graphite adapter already rejects anything else, so meeting
 * one here means a bug upstream; we throw an {@link UnsafeInputError} naming the value instead of
 * letting NaN or a negative load reach a weighting function, where it would silently poison every
 * weight of the backend.
 */
export function aggregate(values: readonly (number | null)[], method: AggregationMethod): number | null {
  // One pass without a copy: a cycle may aggregate hundreds of thousands of series.
  let count = 0;
  let last = 0;
  let sum = 0;
  values.forEach((v, i) => {
    if (v === null) return;
    if (!Number.isFinite(v) || v < 0) assertLoad(v, `point #${i}`);
    count++;
    last = v;
    sum += v;
  });
  if (count === 0) return null;
  switch (method) {
    case 'leading-edge':
      return last;
    case 'average':
      return Number.isFinite(sum) ? sum / count : mean(values.filter((v): v is number => v !== null));
    default: {
      const unknown: never = method;
      throw new UnsafeInputError(`unknown aggregation method ${JSON.stringify(unknown)}`);
    }
  }
}

function mean(points: readonly number[]): number {
  const sum = points.reduce((acc, v) => acc + v, 0);
  // Only a sum beyond Number.MAX_VALUE gets here; dividing first avoids the overflow at the cost
  // of a little precision that such magnitudes never need.
  if (!Number.isFinite(sum)) return points.reduce((acc, v) => acc + v / points.length, 0);
  return sum / points.length;
}

/**
 * Throws unless `value` is a finite number >= 0: the only loads the weighting math is defined for.
 * `what` names the value in the message (e.g. `load #3`).
 */
export function assertLoad(value: number, what: string): void {
  if (!Number.isFinite(value) || value < 0) {
    throw new UnsafeInputError(`${what} is ${String(value)}: loads must be finite numbers >= 0`);
  }
}

/**
 * Each load divided by the mean of all loads (1 = exactly average), or null when every load is 0
 * (or there is none): then nothing tells the servers apart.
 *
 * Computed so that the weighting functions built on it keep two invariants despite floating
 * point:
 * - permutation invariance, exactly: the mean is summed in sorted order, so the same loads in
 *   any order give bit-identical ratios;
 * - scale invariance: loads are divided by their maximum first, so multiplying every load by a
 *   power of two changes no ratio at all, and any other factor k > 0 changes a ratio by a few
 *   ulps at most (k·load is itself rounded, so exactness is impossible in general). Dividing by
 *   the maximum first also keeps the sum finite for any finite loads.
 *
 * Throws {@link UnsafeInputError} for a load that is not finite or is negative.
 */
export function relativeLoads(loads: readonly number[]): number[] | null {
  let max = 0;
  loads.forEach((load, i) => {
    assertLoad(load, `load #${i}`);
    if (load > max) max = load;
  });
  if (max === 0) return null;
  const scaled = loads.map((load) => load / max);
  const sum = [...scaled].sort((a, b) => a - b).reduce((acc, s) => acc + s, 0);
  const meanScaled = sum / scaled.length;
  return scaled.map((s) => s / meanScaled);
}
