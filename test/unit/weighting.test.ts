import { describe, expect, it } from 'vitest';
import type { WeightingConfig } from '../../functions/core/config.js';
import { ConfigError, UnsafeInputError } from '../../functions/core/errors.js';
import type { WeightingInput } from '../../functions/core/types.js';
import { computeWeights, limitedProportions, normalisedExponential } from '../../functions/core/weighting.js';

/** Inputs from parallel lists, no sessions (the feedback policy then counts in weights; see weighting-feedback.test.ts). */
function inputs(loads: readonly number[], weights: readonly number[]): WeightingInput[] {
  return loads.map((load, i) => ({ load, weight: weights[i] ?? 1, sessions: 0 }));
}

describe('limitedProportions', () => {
  // Formula: r = load / mean, f = max(r, 1/L), w = round(256 · (min f / f)^a), clamped to 1..256.
  it.each([
    // mean 250, r = [0.4, 0.8, 1.2, 1.6], no floor (1/4 = 0.25 < 0.4);
    // w = 256 · 0.4 / r = [256, 128, 85.33, 64] → [256, 128, 85, 64].
    { loads: [100, 200, 300, 400], limitingFactor: 4, aggressiveness: 1, expected: [256, 128, 85, 64] },
    // Squared ratios: 256 · [1, 0.25, 0.1111, 0.0625] = [256, 64, 28.44, 16].
    { loads: [100, 200, 300, 400], limitingFactor: 4, aggressiveness: 2, expected: [256, 64, 28, 16] },
    // Square roots: 256 · [1, 0.7071, 0.5774, 0.5] = [256, 181.02, 147.80, 128].
    { loads: [100, 200, 300, 400], limitingFactor: 4, aggressiveness: 0.5, expected: [256, 181, 148, 128] },
    // mean 100, r = [0, 1, 1, 2], f = [0.25, 1, 1, 2]: the idle server counts as 25 of load;
    // w = 256 · 0.25 / f = [256, 64, 64, 32].
    { loads: [0, 100, 100, 200], limitingFactor: 4, aggressiveness: 1, expected: [256, 64, 64, 32] },
    // Floor 1/2: f = [0.5, 1, 1, 2] → 256 · 0.5 / f = [256, 128, 128, 64].
    { loads: [0, 100, 100, 200], limitingFactor: 2, aggressiveness: 1, expected: [256, 128, 128, 64] },
    // L = 1 floors everything at the mean: only above-average load lowers a weight.
    { loads: [0, 100, 100, 200], limitingFactor: 1, aggressiveness: 1, expected: [256, 256, 256, 128] },
    // mean 4.001 / 5 = 0.8002, r(others) = 1.24969, f(outlier) = 0.25;
    // others: 256 · 0.25 / 1.24969 = 51.21 → 51.
    { loads: [1, 1, 1, 1, 0.001], limitingFactor: 4, aggressiveness: 1, expected: [51, 51, 51, 51, 256] },
    // r = [0.002, 1.998], ratio 0.001, squared 1e-6: 256e-6 rounds to 0 and is clamped to 1.
    { loads: [1, 1000], limitingFactor: 1000, aggressiveness: 2, expected: [256, 1] },
    { loads: [7, 7, 7], limitingFactor: 4, aggressiveness: 3, expected: [256, 256, 256] },
    { loads: [0, 0, 0], limitingFactor: 4, aggressiveness: 1, expected: [256, 256, 256] },
    { loads: [42], limitingFactor: 4, aggressiveness: 1, expected: [256] },
    { loads: [], limitingFactor: 4, aggressiveness: 1, expected: [] },
  ])('weights $loads as $expected with L=$limitingFactor a=$aggressiveness', ({ loads, limitingFactor, aggressiveness, expected }) => {
    expect(limitedProportions(loads, { limitingFactor, aggressiveness })).toEqual(expected);
  });

  it('gives the same weights when loads are in other units (scaled by 1000 or 1/60)', () => {
    const params = { limitingFactor: 4, aggressiveness: 1 };
    const base = limitedProportions([100, 200, 300, 400], params);
    expect(limitedProportions([100_000, 200_000, 300_000, 400_000], params)).toEqual(base);
    expect(limitedProportions([100 / 60, 200 / 60, 300 / 60, 400 / 60], params)).toEqual(base);
  });

  // An idle server is the least loaded, so after scaling to 256 it does get the top weight; what the
  // floor bounds is its share against the others: it is weighted as if its load were mean / L, so
  // its weight is at most (L · x / mean)^a times that of a server at load x. The idle server pulls
  // the mean down, so x / mean = n / (n - 1 + 0.001) > 1 here: the bound tends to L^a as n grows.
  it.each([
    { n: 5, limitingFactor: 4, aggressiveness: 1 },
    { n: 5, limitingFactor: 4, aggressiveness: 2 },
    { n: 10, limitingFactor: 2, aggressiveness: 1 },
    { n: 3, limitingFactor: 10, aggressiveness: 0.5 },
    { n: 500, limitingFactor: 4, aggressiveness: 1 },
  ])(
    'caps a near-idle outlier among $n equal servers at (L·x/mean)^a times their weight (L=$limitingFactor a=$aggressiveness)',
    ({ n, limitingFactor, aggressiveness }) => {
      const loads = [...Array<number>(n - 1).fill(1000), 1];
      const weights = limitedProportions(loads, { limitingFactor, aggressiveness });
      const mean = (1000 * (n - 1) + 1) / n;
      const bound = Math.pow((limitingFactor * 1000) / mean, aggressiveness);
      const outlier = weights[n - 1] ?? Number.NaN;
      const others = new Set(weights.slice(0, n - 1));
      expect(outlier).toBe(256);
      expect(others.size).toBe(1);
      const [other = Number.NaN] = [...others];
      // Rounding may move the other weight by half a unit, not more.
      expect(other + 0.5).toBeGreaterThanOrEqual(256 / bound);
      expect(other).toBeGreaterThan(1);
    },
  );

  it('tends to a ratio of exactly L^a between an idle outlier and 499 equal servers', () => {
    const weights = limitedProportions([...Array<number>(499).fill(1000), 1], { limitingFactor: 4, aggressiveness: 1 });
    // mean = 998.002, others at r = 1.002: 256 · 0.25 / 1.002 = 63.87 → 64, and 256 / 64 = 4.
    expect(weights[0]).toBe(64);
  });

  it('without an effective floor lets a near-idle outlier squash every other server to weight 1', () => {
    // L = 1000: the floor (mean / 1000 ≈ 0.8) is below the outlier's load of 1, so the others get
    // 256 · 1 / 1000 ≈ 0.26 → clamped to 1: the limiting factor is what prevents this.
    const weights = limitedProportions([1000, 1000, 1000, 1000, 1], { limitingFactor: 1000, aggressiveness: 1 });
    expect(weights).toEqual([1, 1, 1, 1, 256]);
  });

  it.each([
    { limitingFactor: 0.5, aggressiveness: 1, key: 'limitingFactor' },
    { limitingFactor: Number.POSITIVE_INFINITY, aggressiveness: 1, key: 'limitingFactor' },
    { limitingFactor: 4, aggressiveness: 0, key: 'aggressiveness' },
    { limitingFactor: 4, aggressiveness: Number.NaN, key: 'aggressiveness' },
  ])('rejects $key out of range (L=$limitingFactor a=$aggressiveness)', ({ limitingFactor, aggressiveness, key }) => {
    expect(() => limitedProportions([1, 2], { limitingFactor, aggressiveness })).toThrow(ConfigError);
    expect(() => limitedProportions([1, 2], { limitingFactor, aggressiveness })).toThrow(key);
  });
});

describe('normalisedExponential', () => {
  // Formula: r = load / mean, w = round(256 · exp(-a · (r - min r))), clamped to 1..256.
  it.each([
    // mean 250, r = [0.4, 0.8, 1.2, 1.6], r - min = [0, 0.4, 0.8, 1.2];
    // 256 · [1, e^-0.4 = 0.67032, e^-0.8 = 0.44933, e^-1.2 = 0.30119] = [256, 171.60, 115.03, 77.11].
    { loads: [100, 200, 300, 400], aggressiveness: 1, expected: [256, 172, 115, 77] },
    // 256 · [1, e^-1.2, e^-2.4 = 0.090718, e^-3.6 = 0.027324] = [256, 77.11, 23.22, 6.99].
    { loads: [100, 200, 300, 400], aggressiveness: 3, expected: [256, 77, 23, 7] },
    // 256 · [1, e^-0.2 = 0.81873, e^-0.4, e^-0.6 = 0.54881] = [256, 209.60, 171.60, 140.50].
    { loads: [100, 200, 300, 400], aggressiveness: 0.5, expected: [256, 210, 172, 140] },
    // mean 100, r = [0, 1, 2]: 256 · [1, 1/e, 1/e²] = [256, 94.18, 34.65]: an idle server gets
    // only e times the weight of a server at the mean, without any floor.
    { loads: [0, 100, 200], aggressiveness: 1, expected: [256, 94, 35] },
    // Saturation: mean 500, r = [0, 2], 256 · e^-10 = 0.0116 → clamped to 1.
    { loads: [0, 1000], aggressiveness: 5, expected: [256, 1] },
    { loads: [3, 3, 3, 3], aggressiveness: 50, expected: [256, 256, 256, 256] },
    { loads: [0, 0], aggressiveness: 1, expected: [256, 256] },
    { loads: [42], aggressiveness: 1, expected: [256] },
    { loads: [], aggressiveness: 1, expected: [] },
  ])('weights $loads as $expected with a=$aggressiveness', ({ loads, aggressiveness, expected }) => {
    expect(normalisedExponential(loads, { aggressiveness })).toEqual(expected);
  });

  it('gives the same weights when loads are in other units (scaled by 1000 or 1/60)', () => {
    const base = normalisedExponential([100, 200, 300, 400], { aggressiveness: 1 });
    expect(normalisedExponential([100_000, 200_000, 300_000, 400_000], { aggressiveness: 1 })).toEqual(base);
    expect(normalisedExponential([100 / 60, 200 / 60, 300 / 60, 400 / 60], { aggressiveness: 1 })).toEqual(base);
  });

  it('flattens the weights when a constant baseline is added to every load (not shift invariant)', () => {
    // [0, 200]: mean 100, r = [0, 2], 256 · e^-2 = 34.65. Adding 1000 to both: mean 1100,
    // r = [0.909, 1.091], r - min r = 200 / 1100 = 0.182: 256 · e^-0.182 = 213.4.
    expect(normalisedExponential([0, 200], { aggressiveness: 1 })).toEqual([256, 35]);
    expect(normalisedExponential([1000, 1200], { aggressiveness: 1 })).toEqual([256, 213]);
  });

  it.each([{ aggressiveness: 0 }, { aggressiveness: -1 }, { aggressiveness: Number.POSITIVE_INFINITY }])(
    'rejects aggressiveness $aggressiveness',
    ({ aggressiveness }) => {
      expect(() => normalisedExponential([1, 2], { aggressiveness })).toThrow(ConfigError);
    },
  );
});

describe('computeWeights', () => {
  const cases: { config: WeightingConfig; expected: number[] }[] = [
    { config: { function: 'limited-proportions', limitingFactor: 4, aggressiveness: 1 }, expected: [256, 128, 85, 64] },
    { config: { function: 'normalised-exponential', aggressiveness: 1 }, expected: [256, 172, 115, 77] },
    // r = [0.4, 0.8, 1.2, 1.6], no sessions so counts are padded to 10 each, gain 1:
    // targets 10 - 10 · (r - 1) = [16, 12, 8, 4] at 10 per weight unit → [160, 120, 80, 40].
    { config: { function: 'feedback', gain: 1, deadband: 0.05, minSessions: 10 }, expected: [160, 120, 80, 40] },
  ];

  it.each(cases)('dispatches $config.function and keeps the input order', ({ config, expected }) => {
    const loads = [100, 200, 300, 400];
    expect(computeWeights(inputs(loads, [100, 100, 100, 100]), config)).toEqual(expected);
    expect(computeWeights(inputs([...loads].reverse(), [100, 100, 100, 100]), config)).toEqual([...expected].reverse());
  });

  it.each(cases)('returns no weights for no servers with $config.function', ({ config }) => {
    expect(computeWeights([], config)).toEqual([]);
  });

  it('rejects a negative load with any function', () => {
    for (const { config } of cases) {
      expect(() => computeWeights(inputs([1, -2], [1, 1]), config)).toThrow(UnsafeInputError);
    }
  });
});
