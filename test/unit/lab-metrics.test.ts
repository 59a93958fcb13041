import { describe, expect, it } from 'vitest';
import { gapClosed } from '../../research/lab/contest.js';
import { imbalanceSamples, oscillation, percentile, shockMinutes } from '../../research/lab/metrics.js';
import type { SimResult, WeightCycle } from '../../research/lab/simulator.js';

/** A result with 10 s samples of the given per-server loads (rows = samples). */
function result(rows: readonly (readonly number[])[], extra: Partial<SimResult> = {}): SimResult {
  const servers = (rows[0] ?? []).map((_, i) => `s${i}`);
  return {
    servers,
    sampleTimes: Float64Array.from(rows, (_, k) => (k + 1) * 10),
    loads: Float64Array.from(rows.flat()),
    cycles: [],
    shock: null,
    writes: 0,
    skippedPlans: 0,
    sinkholeShare: null,
    reloadsSeen: 0,
    ...extra,
  };
}

describe('lab figures', () => {
  it.each([
    { values: [1, 2, 3, 4, 5], p: 50, expected: 3 },
    { values: [5, 1, 4, 2, 3], p: 100, expected: 5 },
    { values: [1, 2, 3, 4, 5], p: 95, expected: 4.8 },
    { values: [10, 20], p: 25, expected: 12.5 },
  ])('takes the p$p percentile of $values by linear interpolation as $expected', ({ values, p, expected }) => {
    expect(percentile(values, p)).toBeCloseTo(expected, 12);
  });

  it('measures imbalance as max/mean over the servers in service, in the window only', () => {
    const r = result([
      [100, 100, 100, 100],
      [200, 100, 100, 0],
      [300, 100, NaN, 200],
    ]);
    // samples at 10, 20, 30 s; the window (10, 30] holds the last two: 200/100 and 300/200
    expect(imbalanceSamples(r, 10, 30)).toEqual([2, 1.5]);
  });

  it('counts the minutes each shocked server spends above 1.2x the mean, averaged over them', () => {
    // 7 samples after a shock at 0: server 0 above 1.2x the mean for 3 samples (30 s), server 1 for 1.
    const rows = [
      [200, 100, 100, 100],
      [200, 130, 100, 100],
      [200, 100, 100, 100],
      [100, 100, 100, 100],
      [110, 100, 100, 100],
      [100, 100, 100, 100],
      [100, 200, 100, 100],
    ];
    // means: 125 (150 threshold), 132.5 (159), 125, 100, 102.5 (123), 100, 125 (150)
    const r = result(rows, { shock: { at: 0, servers: [0, 1] } });
    expect(shockMinutes(r)).toBeCloseTo((30 + 10) / 2 / 60, 12);
  });

  it('counts a direction change each time a weight turns from rising to falling or back, per server-hour', () => {
    const weights = [256, 200, 200, 180, 220, 220, 100, 256];
    // moves: -, 0, -, +, 0, -, +  → direction changes: (- to +), (+ to -), (- to +) = 3
    const cycles: WeightCycle[] = weights.map((w, k) => ({ time: (k + 1) * 60, weights: [[w, 256]] }));
    const r = result([[1, 1]], { cycles });
    // two servers over one hour: 3 changes on the first, none on the second → 1.5 per server-hour;
    // writes: 5 changes on the first → 2.5 per server-hour
    expect(oscillation(r, 0, 3600)).toEqual({ flips: 1.5, writes: 2.5 });
  });

  it.each([
    { leastconn: 1.8, clairvoyant: 1.3, value: 1.35, expected: 0.9 },
    { leastconn: 1.8, clairvoyant: 1.3, value: 1.8, expected: 0 },
    { leastconn: 1.8, clairvoyant: 1.3, value: 1.9, expected: -0.2 },
    { leastconn: 1.3, clairvoyant: 1.3, value: 1.3, expected: null },
  ])('computes the gap closed between leastconn and the bound ($value → $expected)', ({ leastconn, clairvoyant, value, expected }) => {
    const gap = gapClosed(leastconn, clairvoyant, value);
    if (expected === null) expect(gap).toBeNull();
    else expect(gap).toBeCloseTo(expected, 12);
  });
});
