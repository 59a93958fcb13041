import type { SimResult } from './simulator.js';

/** The figures of issue 4, computed from one simulation result. */

export interface Figures {
  /** Imbalance = max server load / mean server load, over the samples in the measured window. */
  readonly p50: number;
  readonly p95: number;
  readonly max: number;
  /** Mean imbalance over the window; mean - 1 is the "imbalance excess" a real run is judged by. */
  readonly mean: number;
  /** Minutes the shocked servers spend above 1.2x the mean load in the hour after the shock (mean over them). */
  readonly shockMinutes: number | null;
  /** Direction changes of a server's weight per hour (mean over servers and load balancers). */
  readonly oscillation: number;
  /** Weight writes per server per hour. */
  readonly writesPerServerHour: number;
  /** Share of the connections placed in the measured window that went to a sinkhole; null without one. */
  readonly sinkholeShare: number | null;
  /** How many servers the shock clients landed on (1: all on one); null without a shock. */
  readonly shockServers: number | null;
}

export const SHOCK_THRESHOLD = 1.2;
const SHOCK_WINDOW_SECONDS = 3600;

/** Arithmetic mean; NaN for no values. */
export function mean(values: readonly number[]): number {
  return values.length === 0 ? NaN : values.reduce((a, b) => a + b, 0) / values.length;
}

/** Linear-interpolated percentile (p in 0..100) of unsorted values; NaN for no values. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const pos = ((sorted.length - 1) * p) / 100;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  const a = sorted[lo] ?? NaN;
  const b = sorted[hi] ?? NaN;
  return a + (b - a) * (pos - lo);
}

/** Imbalance of each sample in (from, to]: servers out of service (NaN) are left out. */
export function imbalanceSamples(result: SimResult, from: number, to: number): number[] {
  const n = result.servers.length;
  const out: number[] = [];
  result.sampleTimes.forEach((time, k) => {
    if (time <= from || time > to) return;
    let max = 0;
    let sum = 0;
    let count = 0;
    for (let s = 0; s < n; s++) {
      const v = result.loads[k * n + s] ?? NaN;
      if (Number.isNaN(v)) continue;
      max = Math.max(max, v);
      sum += v;
      count++;
    }
    if (count > 0 && sum > 0) out.push(max / (sum / count));
  });
  return out;
}

/** Seconds each shocked server spends above threshold x the mean in the window after the shock, averaged, in minutes. */
export function shockMinutes(result: SimResult, threshold = SHOCK_THRESHOLD, windowSeconds = SHOCK_WINDOW_SECONDS): number | null {
  const shock = result.shock;
  if (shock === null || shock.servers.length === 0) return null;
  const n = result.servers.length;
  let above = 0;
  result.sampleTimes.forEach((time, k) => {
    if (time <= shock.at || time > shock.at + windowSeconds) return;
    const step = time - (result.sampleTimes[k - 1] ?? 0);
    let sum = 0;
    let count = 0;
    for (let s = 0; s < n; s++) {
      const v = result.loads[k * n + s] ?? NaN;
      if (Number.isNaN(v)) continue;
      sum += v;
      count++;
    }
    if (count === 0) return;
    const average = sum / count;
    for (const s of shock.servers) {
      const v = result.loads[k * n + s] ?? NaN;
      if (v > threshold * average) above += step;
    }
  });
  return above / shock.servers.length / 60;
}

/**
 * Direction changes per server per hour: along each server's weights at successive cycles (on each
 * load balancer), count how often a rise follows a fall or a fall a rise; flat steps are skipped.
 */
export function oscillation(result: SimResult, from: number, to: number): { flips: number; writes: number } {
  const cycles = result.cycles.filter((c) => c.time > from && c.time <= to);
  const first = cycles[0];
  if (first === undefined) return { flips: 0, writes: 0 };
  let flips = 0;
  let changes = 0;
  let tracks = 0;
  first.weights.forEach((row, lb) => {
    row.forEach((_, s) => {
      let direction = 0;
      let previous = NaN;
      let seen = false;
      for (const c of cycles) {
        const w = c.weights[lb]?.[s] ?? NaN;
        if (Number.isNaN(w)) continue;
        seen = true;
        if (!Number.isNaN(previous) && w !== previous) {
          changes++;
          const d = Math.sign(w - previous);
          if (direction !== 0 && d !== direction) flips++;
          direction = d;
        }
        previous = w;
      }
      if (seen) tracks++;
    });
  });
  const hours = (to - from) / 3600;
  return tracks === 0 ? { flips: 0, writes: 0 } : { flips: flips / tracks / hours, writes: changes / tracks / hours };
}

export function figures(result: SimResult, from: number, to: number): Figures {
  const samples = imbalanceSamples(result, from, to);
  const osc = oscillation(result, from, to);
  return {
    p50: percentile(samples, 50),
    p95: percentile(samples, 95),
    max: samples.length === 0 ? NaN : Math.max(...samples),
    mean: mean(samples),
    shockMinutes: shockMinutes(result),
    oscillation: osc.flips,
    writesPerServerHour: osc.writes,
    sinkholeShare: result.sinkholeShare,
    shockServers: result.shock === null ? null : result.shock.servers.length,
  };
}
