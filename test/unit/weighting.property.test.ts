import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { propertyRuns } from '../harness/property-runs.js';
import type { WeightingConfig } from '../../functions/core/config.js';
import type { WeightingInput } from '../../functions/core/types.js';
import { computeWeights } from '../../functions/core/weighting.js';

const RUNS = propertyRuns();

/**
 * Loads as Graphite reports them: exact zeros (idle or broken metrics), small integers (so that
 * duplicates are common) and doubles up to 1e9. Doubles start at 1e-6 so that scaling by 2^-20
 * stays clear of subnormals, where even multiplying by a power of two rounds.
 */
const load = fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 20 }), fc.double({ min: 1e-6, max: 1e9, noNaN: true }));
/** Any finite load at all, for the properties that must hold even for absurd values. */
const extremeLoad = fc.oneof(fc.constant(0), fc.double({ min: 0, max: Number.MAX_VALUE, noNaN: true }));
const weight = fc.integer({ min: 1, max: 256 });

function server(loadArb: fc.Arbitrary<number>): fc.Arbitrary<WeightingInput> {
  return fc.record({ load: loadArb, weight, sessions: fc.nat(100_000) });
}

/** Mostly small backends, where edge cases are dense, and some of up to 500 servers. */
function backend<T>(item: fc.Arbitrary<T>): fc.Arbitrary<T[]> {
  return fc.oneof(
    { arbitrary: fc.array(item, { minLength: 1, maxLength: 500 }), weight: 3 },
    { arbitrary: fc.array(item, { minLength: 1, maxLength: 500, size: 'medium' }), weight: 2 },
    { arbitrary: fc.array(item, { minLength: 1, maxLength: 500, size: 'max' }), weight: 1 },
  );
}

const positive = (max: number): fc.Arbitrary<number> => fc.double({ min: 0, max, minExcluded: true, noNaN: true });

const subjects: readonly { name: string; config: fc.Arbitrary<WeightingConfig> }[] = [
  {
    name: 'limited-proportions',
    config: fc.record({
      function: fc.constant('limited-proportions' as const),
      limitingFactor: fc.double({ min: 1, max: 1000, noNaN: true }),
      aggressiveness: positive(10),
    }),
  },
  {
    name: 'normalised-exponential',
    config: fc.record({ function: fc.constant('normalised-exponential' as const), aggressiveness: positive(50) }),
  },
];

function withEqualWeights(servers: readonly WeightingInput[], w: number): WeightingInput[] {
  return servers.map((s) => ({ ...s, weight: w }));
}

describe.each(subjects)('$name', ({ config }) => {
  it('gives exactly one integer weight in 1..256 per server, the lightest at 256', () => {
    fc.assert(
      fc.property(backend(server(load)), config, (servers, cfg) => {
        const weights = computeWeights(servers, cfg);
        expect(weights).toHaveLength(servers.length);
        // One assertion per run, not per weight: expect() is slow at 10,000 runs of 500 servers.
        expect(weights.filter((w) => !(Number.isInteger(w) && w >= 1 && w <= 256))).toEqual([]);
        expect(Math.max(...weights)).toBe(256);
      }),
      RUNS,
    );
  });

  it('stays an integer in 1..256 for any finite loads, however extreme', () => {
    fc.assert(
      fc.property(backend(server(extremeLoad)), config, (servers, cfg) => {
        const weights = computeWeights(servers, cfg);
        expect(weights).toHaveLength(servers.length);
        expect(weights.filter((w) => !(Number.isInteger(w) && w >= 1 && w <= 256))).toEqual([]);
      }),
      RUNS,
    );
  });

  it('gives the same weight to each server whatever the order of the servers', () => {
    const shuffled = backend(server(load)).chain((servers) =>
      fc.tuple(fc.constant(servers), fc.shuffledSubarray(servers.map((_, i) => i), { minLength: servers.length, maxLength: servers.length })),
    );
    fc.assert(
      fc.property(shuffled, config, ([servers, order], cfg) => {
        const weights = computeWeights(servers, cfg);
        const permuted = computeWeights(
          order.map((i) => servers[i] ?? { load: Number.NaN, weight: 1, sessions: 0 }),
          cfg,
        );
        expect(permuted).toEqual(order.map((i) => weights[i]));
      }),
      RUNS,
    );
  });

  it('never gives a server more weight than a server with less load (equal current weights)', () => {
    fc.assert(
      fc.property(backend(server(load)), weight, config, (servers, w, cfg) => {
        const equal = withEqualWeights(servers, w);
        const weights = computeWeights(equal, cfg);
        const byLoad = equal.map((s, i) => ({ load: s.load, weight: weights[i] ?? Number.NaN })).sort((a, b) => a.load - b.load);
        const violations = byLoad.slice(1).filter((heavier, i) => {
          const lighter = byLoad[i] ?? heavier;
          return lighter.load === heavier.load ? heavier.weight !== lighter.weight : heavier.weight > lighter.weight;
        });
        expect(violations).toEqual([]);
      }),
      RUNS,
    );
  });

  it('never raises the weight of a server whose load alone rises', () => {
    // The new load is load · (1 + relative) + absolute: both kinds of rise, small and large.
    const raised = backend(server(load)).chain((servers) =>
      fc.tuple(fc.constant(servers), fc.nat(servers.length - 1), fc.double({ min: 0, max: 2, noNaN: true }), load),
    );
    fc.assert(
      fc.property(raised, config, ([servers, index, relative, absolute], cfg) => {
        const before = computeWeights(servers, cfg)[index];
        const after = computeWeights(
          servers.map((s, i) => (i === index ? { ...s, load: s.load * (1 + relative) + absolute } : s)),
          cfg,
        )[index];
        expect(after).toBeLessThanOrEqual(before ?? Number.NaN);
      }),
      RUNS,
    );
  });

  it('gives equal weights to servers with equal loads and equal current weights', () => {
    fc.assert(
      fc.property(load, fc.integer({ min: 1, max: 500 }), weight, config, (x, n, w, cfg) => {
        const weights = computeWeights(Array.from({ length: n }, () => ({ load: x, weight: w, sessions: 0 })), cfg);
        expect(weights).toEqual(Array<number>(n).fill(256));
      }),
      RUNS,
    );
  });

  it('gives exactly the same weights when every load is multiplied by a power of two', () => {
    fc.assert(
      fc.property(backend(server(load)), fc.integer({ min: -20, max: 20 }), config, (servers, exponent, cfg) => {
        const k = 2 ** exponent;
        const scaled = servers.map((s) => ({ ...s, load: s.load * k }));
        expect(computeWeights(scaled, cfg)).toEqual(computeWeights(servers, cfg));
      }),
      RUNS,
    );
  });

  it('moves no weight by more than 1 when every load is multiplied by any k > 0 (rounding at .5)', () => {
    fc.assert(
      fc.property(backend(server(load)), fc.double({ min: 1e-3, max: 1e3, noNaN: true }), config, (servers, k, cfg) => {
        const before = computeWeights(servers, cfg);
        const after = computeWeights(
          servers.map((s) => ({ ...s, load: s.load * k })),
          cfg,
        );
        expect(after.filter((w, i) => !(Math.abs(w - (before[i] ?? Number.NaN)) <= 1))).toEqual([]);
      }),
      RUNS,
    );
  });
});
