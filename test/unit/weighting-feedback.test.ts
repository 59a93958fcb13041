import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { propertyRuns } from '../harness/property-runs.js';
import { weightingSchema } from '../../functions/core/config.js';
import { ConfigError, UnsafeInputError } from '../../functions/core/errors.js';
import type { WeightingInput } from '../../functions/core/types.js';
import { computeWeights } from '../../functions/core/weighting.js';
import { FEEDBACK_RESCALE_BELOW, feedbackDecision, FILL_WITHIN_LIFETIME, feedbackWeights, ROUNDROBIN_HOLD, type FeedbackParams } from '../../functions/core/weighting-feedback.js';

const RUNS = propertyRuns();

function inputs(loads: readonly number[], weights: readonly number[], sessions: readonly number[]): WeightingInput[] {
  return loads.map((load, i) => ({ load, weight: weights[i] ?? 1, sessions: sessions[i] ?? 0 }));
}

/** The schema's defaults, so that a case only names what it varies. */
const P = (gain: number, deadband: number, minSessions = 10): FeedbackParams => ({ gain, deadband, minSessions });

/** Pairs of servers where the one with more load got more weight, or equal loads got different weights. */
function loadOrderViolations(loads: readonly number[], weights: readonly number[]): { load: number; weight: number }[] {
  const byLoad = loads.map((x, i) => ({ load: x, weight: weights[i] ?? Number.NaN })).sort((a, b) => a.load - b.load);
  return byLoad.slice(1).filter((heavier, i) => {
    const lighter = byLoad[i] ?? heavier;
    return lighter.load === heavier.load ? heavier.weight !== lighter.weight : heavier.weight > lighter.weight;
  });
}

describe('feedbackWeights', () => {
  // r = load / mean; c = sessions, padded evenly up to minSessions; c̄ = mean c, k = Σc / Σw;
  // outside the band D = max(0, c - g · c̄ · (r - 1)); inside D = k · w when that is within d · c̄
  // of c, else c; raw = D / k, rescaled to a largest weight of 256 only when above 256 or below 128.
  it.each([
    // r = [0.5, 1, 1.5], c̄ = 100, k = 300 / 768; D = [150, 100 (k · 256 = 100: kept), 50];
    // raw = [384, 256, 128] → · 256 / 384 = [256, 170.7, 85.3].
    { loads: [50, 100, 150], weights: [256, 256, 256], sessions: [100, 100, 100], gain: 1, deadband: 0.05, expected: [256, 171, 85] },
    // Half the deficit: D = [125, 100, 75], raw = [320, 256, 192] → · 0.8 = [256, 204.8, 153.6].
    { loads: [50, 100, 150], weights: [256, 256, 256], sessions: [100, 100, 100], gain: 0.5, deadband: 0.05, expected: [256, 205, 154] },
    // Same targets from weights of 50: raw = [75, 50, 25], largest below 128 → rescaled to 256.
    { loads: [50, 100, 150], weights: [50, 50, 50], sessions: [100, 100, 100], gain: 1, deadband: 0.05, expected: [256, 171, 85] },
    // Σc = Σw = 500 so k = 1, c̄ = 125; r = [1, 1, 1.6, 0.4]: the two in the band keep their
    // weights (they match their counts), D = [-, -, 100 - 75, 100 + 75]; largest 200: no rescale.
    { loads: [100, 100, 160, 40], weights: [200, 100, 100, 100], sessions: [200, 100, 100, 100], gain: 1, deadband: 0.05, expected: [200, 100, 25, 175] },
    // k = 600 / 420, c̄ = 150: in the band but weights 200 and 20 mean 285.7 and 28.6 connections,
    // far from the 200 each holds: both follow their counts (raw 140); D = [.., .., 10, 190] → raw 7, 133.
    { loads: [100, 100, 160, 40], weights: [200, 20, 100, 100], sessions: [200, 200, 100, 100], gain: 1, deadband: 0.05, expected: [140, 140, 7, 133] },
    // Weights are target counts, not ranks: r = [0.8, 1.2], c̄ = 200, k = 400 / 512;
    // D = [300 + 40, 100 - 40] → raw [435.2, 76.8] → · 256 / 435.2 = [256, 45.2].
    { loads: [80, 120], weights: [256, 256], sessions: [300, 100], gain: 1, deadband: 0, expected: [256, 45] },
    // A server holding twice the mean load and no more than the mean count: D = 100 - 100 = 0 → 1.
    { loads: [100, 100, 400], weights: [200, 200, 200], sessions: [100, 100, 100], gain: 1, deadband: 0.05, expected: [256, 256, 1] },
    // No sessions: counts padded to 10 each (k = 40 / 400): D = 10 - 10 · (r - 1) for
    // r = [0.4, 0.8, 1.2, 1.6] = [16, 12, 8, 4] → raw [160, 120, 80, 40], largest within 128..256.
    { loads: [100, 200, 300, 400], weights: [100, 100, 100, 100], sessions: [0, 0, 0, 0], gain: 1, deadband: 0.05, expected: [160, 120, 80, 40] },
    // ...and the weights in force only set the scale (k = 40 / 350): the same pattern, not an integral.
    // raw = 350 / 4 · [1.6, 1.2, 0.8, 0.4], largest 140 within 128..256.
    { loads: [100, 200, 300, 400], weights: [200, 100, 25, 25], sessions: [0, 0, 0, 0], gain: 1, deadband: 0.05, expected: [140, 105, 70, 35] },
    // Two sessions in all (a reload just before the cycle): padded to 10 on average, they cannot give
    // one server 256 and the rest 1. c = [10.5, 10.5, 9.5, 9.5], k = 0.1; the two at the mean follow
    // their counts (105); D = [.., .., 9.5 - 1.25, 9.5 + 1.25] → raw [105, 105, 82.5, 107.5] · 256 / 107.5.
    { loads: [100, 100, 150, 50], weights: [100, 100, 100, 100], sessions: [1, 1, 0, 0], gain: 0.25, deadband: 0.02, expected: [250, 250, 196, 256] },
    // Every load within 5% of the mean: balanced, nothing changes whatever the counts.
    { loads: [100, 102, 98], weights: [200, 64, 32], sessions: [10, 500, 3], gain: 1, deadband: 0.05, expected: [200, 64, 32] },
    // No load at all: no signal, nothing changes.
    { loads: [0, 0, 0], weights: [200, 64, 32], sessions: [10, 500, 3], gain: 1, deadband: 0.05, expected: [200, 64, 32] },
    { loads: [], weights: [], sessions: [], gain: 1, deadband: 0.05, expected: [] },
  ])(
    'weights loads $loads at weights $weights with sessions $sessions as $expected (g=$gain d=$deadband)',
    ({ loads, weights, sessions, gain, deadband, expected }) => {
      expect(feedbackWeights(inputs(loads, weights, sessions), P(gain, deadband))).toEqual(expected);
    },
  );

  it('fills the same share of each deficit whatever share of the connections this load balancer holds', () => {
    const loads = [50, 100, 150, 100];
    const weights = [256, 200, 150, 256];
    const sessions = [300, 280, 252, 312];
    const alone = feedbackWeights(inputs(loads, weights, sessions), P(1, 0.02));
    // One of four load balancers sees a quarter of the connections.
    const quarter = feedbackWeights(inputs(loads, weights, sessions.map((s) => s / 4)), P(1, 0.02));
    expect(quarter).toEqual(alone);
  });

  it.each([{ weight: 0 }, { weight: 257 }, { weight: 1.5 }, { weight: Number.NaN }])('rejects a current weight of $weight', ({ weight }) => {
    const call = () => feedbackWeights(inputs([1, 2], [100, weight], [1, 1]), P(1, 0));
    expect(call).toThrow(UnsafeInputError);
    expect(call).toThrow(`current weight #1 is ${String(weight)}`);
  });

  it.each([{ sessions: -1 }, { sessions: 2.5 }, { sessions: Number.NaN }])('rejects sessions of $sessions', ({ sessions }) => {
    const call = () => feedbackWeights(inputs([1, 2], [100, 100], [sessions, 1]), P(1, 0));
    expect(call).toThrow(UnsafeInputError);
    expect(call).toThrow(`sessions #0 is ${String(sessions)}`);
  });

  it.each([
    { gain: 0, deadband: 0, minSessions: 10, key: 'gain' },
    { gain: 1.5, deadband: 0, minSessions: 10, key: 'gain' },
    { gain: Number.NaN, deadband: 0, minSessions: 10, key: 'gain' },
    { gain: 0.5, deadband: -0.1, minSessions: 10, key: 'deadband' },
    { gain: 0.5, deadband: 0.6, minSessions: 10, key: 'deadband' },
    { gain: 0.5, deadband: 0.02, minSessions: -1, key: 'minSessions' },
  ])('rejects $key out of range (gain $gain, deadband $deadband, minSessions $minSessions)', ({ gain, deadband, minSessions, key }) => {
    const call = () => feedbackWeights(inputs([1, 2], [1, 1], [0, 0]), { gain, deadband, minSessions });
    expect(call).toThrow(ConfigError);
    expect(call).toThrow(key);
  });

  it('is what computeWeights runs for the feedback function, with the schema defaults', () => {
    const parsed = weightingSchema.parse({ function: 'feedback' });
    expect(parsed).toEqual({ function: 'feedback', gain: 0.25, deadband: 0.02, minSessions: 10 });
    const servers = inputs([50, 100, 150], [256, 256, 256], [100, 100, 100]);
    expect(computeWeights(servers, parsed)).toEqual(feedbackWeights(servers, P(0.25, 0.02)));
  });

  it('settles at once under constant loads without sessions: the second cycle changes nothing', () => {
    const loads = [10, 20, 30];
    let weights = [100, 100, 100];
    const seen: number[][] = [];
    for (let cycle = 0; cycle < 5; cycle++) {
      weights = feedbackWeights(inputs(loads, weights, [0, 0, 0]), P(0.25, 0.02));
      seen.push(weights);
    }
    expect(seen.slice(1).every((w) => w.join() === seen[0]?.join())).toBe(true);
    // and gently: the least loaded server gets 1.125 / 0.875 of the most loaded one's weight.
    expect(seen[0]).toEqual([256, 228, 199]);
  });

  it('after a reload fills the deficits at the old process\'s scale, replacing what leaves it', () => {
    // The new process holds 1 session in all; the old one held 100 per server and connections live 20 cycles.
    const servers = inputs([50, 100, 100, 150], [100, 100, 100, 100], [1, 0, 0, 0]);
    const decision = feedbackDecision(servers, P(0.25, 0.02), { algorithm: 'leastconn', countScale: 100, cyclesPerLifetime: 20 });
    // c = n + (100 - 0.25) / 20 = n + 4.99; D = c - 0.25 · 100 · (r - 1) for r = [0.5, 1, 1, 1.5];
    // in the band the count itself: D = [5.99 + 12.5, 4.99, 4.99, 0] → · 256 / 18.49.
    expect(decision.countScale).toBe(100);
    expect(decision.fewSessions).toBe(false);
    expect(decision.rules).toEqual(['deficit', 'follow-sessions', 'follow-sessions', 'deficit']);
    expect(decision.weights).toEqual([256, 69, 69, 1]);
  });

  it.each([
    // 1 − (1/8)^(1/3) = 0.5: D = [125, 100 (kept), 75] → [320, 256, 192] · 0.8, as with a gain of 0.5.
    { lifetime: 3, expected: [256, 205, 154] },
    // 1 − (1/8)^(1/30) = 0.067 < 0.25: the gain stands, D = [112.5, 100, 87.5] → · 256 / 288.
    { lifetime: 30, expected: [256, 228, 199] },
    { lifetime: undefined, expected: [256, 228, 199] },
  ])(`asks at least ${FILL_WITHIN_LIFETIME} of a deficit within one lifetime of $lifetime cycles`, ({ lifetime, expected }) => {
    const servers = inputs([50, 100, 150], [256, 256, 256], [100, 100, 100]);
    expect(feedbackWeights(servers, P(0.25, 0.05), { algorithm: 'leastconn', ...(lifetime === undefined ? {} : { cyclesPerLifetime: lifetime }) })).toEqual(expected);
  });

  describe('under roundrobin', () => {
    const RR = (cyclesPerLifetime?: number) => ({ algorithm: 'roundrobin', ...(cyclesPerLifetime === undefined ? {} : { cyclesPerLifetime }) });

    // κ = g · ℓ − 1 (g alone when ℓ is unknown); e = 1 − r less the deadband; share = max(0, 1 + κ · e)
    // times the mean weight; a weight within ROUNDROBIN_HOLD (ROUNDROBIN_HOLD_GENTLE when ℓ is unknown)
    // of the mean weight of its share stays.
    it.each([
      // κ = 0.25 · 20 − 1 = 4, e = [0.18, 0, −0.18]: shares [1.72, 1, 0.28] of 100; the middle one is already there.
      { loads: [80, 100, 120], weights: [100, 100, 100], lifetime: 20, expected: [172, 100, 28], rules: ['deficit', 'deadband', 'deficit'] },
      // κ = 0.25 · 10 − 1 = 1.5: shares [1.27, 1, 0.73], each within 0.3 of the mean weight of its weight: nothing moves.
      { loads: [80, 100, 120], weights: [100, 100, 100], lifetime: 10, expected: [100, 100, 100], rules: ['balanced', 'balanced', 'balanced'] },
      // κ = 6.5, e = [0.03, 0, −0.03]: shares [1.195, 1, 0.805] of 116.7 = [139.4, 116.7, 93.9]; 100 is within 35 of 116.7.
      { loads: [95, 100, 105], weights: [200, 100, 50], lifetime: 30, expected: [139, 100, 94], rules: ['deficit', 'deadband', 'deficit'] },
      // Every load within the deadband: even shares (116.7), but a weight already close enough stays;
      // [116.7, 100, 116.7] is below 128: rescaled to 256.
      { loads: [99, 100, 101], weights: [200, 100, 50], lifetime: 30, expected: [256, 219, 256], rules: ['deficit', 'deadband', 'deficit'] },
      // An overloaded server gets no share at all: 1 + 6.5 · (−0.48) < 0 → 1; the others 1 + 6.5 · 0.23 = 2.495.
      { loads: [75, 75, 150], weights: [100, 100, 100], lifetime: 30, expected: [250, 250, 1], rules: ['deficit', 'deficit', 'deficit'] },
      // Without a known lifetime the tilt is the gain alone and the hold ROUNDROBIN_HOLD_GENTLE: shares
      // [1.045, 1, 0.955] are within 0.06 of the mean weight of the weights: nothing moves.
      { loads: [80, 100, 120], weights: [100, 100, 100], lifetime: undefined, expected: [100, 100, 100], rules: ['balanced', 'balanced', 'balanced'] },
      // e = [0.38, 0, −0.38]: shares [1.095, 1, 0.905], 9.5 from the weights: they move → · 256 / 109.5.
      { loads: [60, 100, 140], weights: [100, 100, 100], lifetime: undefined, expected: [256, 234, 212], rules: ['deficit', 'deadband', 'deficit'] },
    ])('turns loads $loads, weights $weights and a lifetime of $lifetime cycles into $expected', ({ loads, weights, lifetime, expected, rules }) => {
      const decision = feedbackDecision(inputs(loads, weights, [100, 100, 100]), P(0.25, 0.02), RR(lifetime));
      expect(decision.weights).toEqual(expected);
      expect(decision.rules).toEqual(rules);
      expect(decision.fewSessions).toBe(false);
    });

    it('gives the same shares whatever the sessions: they say nothing about where new connections go', () => {
      const loads = [60, 100, 140, 100];
      const weights = [100, 100, 100, 100];
      const many = feedbackWeights(inputs(loads, weights, [300, 10, 500, 0]), P(0.25, 0.02), RR(30));
      expect(feedbackWeights(inputs(loads, weights, [0, 0, 0, 0]), P(0.25, 0.02), RR(30))).toEqual(many);
      expect(feedbackWeights(inputs(loads, weights, [1, 0, 0, 0]), P(0.25, 0.02), RR(30))).toEqual(many);
    });

    it('settles under constant loads: the second cycle changes nothing', () => {
      const loads = [10, 20, 30];
      let weights = [100, 100, 100];
      const seen: number[][] = [];
      for (let cycle = 0; cycle < 4; cycle++) {
        weights = feedbackWeights(inputs(loads, weights, [0, 0, 0]), P(0.25, 0.02), RR(30));
        seen.push(weights);
      }
      expect(seen.slice(1).every((w) => w.join() === seen[0]?.join())).toBe(true);
      // κ = 6.5, e = [0.48, 0, −0.48]: shares [4.12, 1, 0] → · 256 / 412.
      expect(seen[0]).toEqual([256, 62, 1]);
    });

    it(`moves a weight only when its share is more than ${ROUNDROBIN_HOLD} of the mean weight away from the one it gives`, () => {
      // κ = 6.5, e = ±0.03: shares 1.195 and 0.805 of the mean weight 100; a weight of 125 is within 30 of 119.5.
      const held = feedbackDecision(inputs([95, 105], [125, 75], [10, 10]), P(0.25, 0.02), RR(30));
      expect(held.weights).toEqual([125, 75]);
      // 140 and 60 are 20.5 from 119.5 and 80.5: both stay; 160 and 40 are 40.5 away: both move, to
      // [119.5, 80.5], below 128: rescaled to 256.
      expect(feedbackWeights(inputs([95, 105], [140, 60], [10, 10]), P(0.25, 0.02), RR(30))).toEqual([140, 60]);
      expect(feedbackWeights(inputs([95, 105], [160, 40], [10, 10]), P(0.25, 0.02), RR(30))).toEqual([256, 172]);
    });
  });

  it('rejects the retired aggressiveness factor in the configuration', () => {
    expect(weightingSchema.safeParse({ function: 'feedback', gain: 1, aggressiveness: 1 }).success).toBe(false);
  });
});

// Properties. Loads as Graphite reports them (exact zeros, small integers so that ties are
// common, doubles up to 1e9); counts as HAProxy reports them.
const load = fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 20 }), fc.double({ min: 1e-6, max: 1e9, noNaN: true }));
const extremeLoad = fc.oneof(fc.constant(0), fc.double({ min: 0, max: Number.MAX_VALUE, noNaN: true }));
const weight = fc.integer({ min: 1, max: 256 });
const sessions = fc.oneof(fc.constant(0), fc.nat(50), fc.nat(100_000));
const params: fc.Arbitrary<FeedbackParams> = fc.record({
  gain: fc.double({ min: 0, max: 1, minExcluded: true, noNaN: true }),
  deadband: fc.double({ min: 0, max: 0.5, noNaN: true }),
  minSessions: fc.oneof(fc.constant(0), fc.constant(10), fc.double({ min: 0, max: 1000, noNaN: true })),
});

function server(loadArb: fc.Arbitrary<number>): fc.Arbitrary<WeightingInput> {
  return fc.record({ load: loadArb, weight, sessions });
}

function backend(loadArb: fc.Arbitrary<number>): fc.Arbitrary<WeightingInput[]> {
  return fc.oneof(
    { arbitrary: fc.array(server(loadArb), { minLength: 1, maxLength: 20 }), weight: 3 },
    { arbitrary: fc.array(server(loadArb), { minLength: 1, maxLength: 500 }), weight: 1 },
  );
}

describe('feedbackWeights properties', () => {
  it('gives exactly one integer weight in 1..256 per server, for any finite loads', () => {
    fc.assert(
      fc.property(backend(fc.oneof(load, extremeLoad)), params, (servers, p) => {
        const weights = feedbackWeights(servers, p);
        expect(weights).toHaveLength(servers.length);
        expect(weights.filter((w) => !(Number.isInteger(w) && w >= 1 && w <= 256))).toEqual([]);
      }),
      RUNS,
    );
  });

  it('either changes nothing or leaves the largest weight between 128 and 256', () => {
    fc.assert(
      fc.property(backend(load), params, (servers, p) => {
        const weights = feedbackWeights(servers, p);
        const unchanged = weights.every((w, i) => w === servers[i]?.weight);
        const top = Math.max(...weights);
        expect(unchanged || (top >= FEEDBACK_RESCALE_BELOW && top <= 256)).toBe(true);
      }),
      RUNS,
    );
  });

  it('gives the same weight to each server whatever the order of the servers', () => {
    const shuffled = backend(load).chain((servers) =>
      fc.tuple(fc.constant(servers), fc.shuffledSubarray(servers.map((_, i) => i), { minLength: servers.length, maxLength: servers.length })),
    );
    fc.assert(
      fc.property(shuffled, params, ([servers, order], p) => {
        const weights = feedbackWeights(servers, p);
        const permuted = feedbackWeights(
          order.map((i) => servers[i] ?? { load: Number.NaN, weight: 1, sessions: 0 }),
          p,
        );
        expect(permuted).toEqual(order.map((i) => weights[i]));
      }),
      RUNS,
    );
  });

  it('leaves every weight as it is when all loads are equal (so equal weights stay equal)', () => {
    fc.assert(
      fc.property(load, fc.array(fc.tuple(weight, sessions), { minLength: 1, maxLength: 200 }), params, (x, servers, p) => {
        const given = servers.map(([w, s]) => ({ load: x, weight: w, sessions: s }));
        expect(feedbackWeights(given, p)).toEqual(servers.map(([w]) => w));
      }),
      RUNS,
    );
  });

  it('gives exactly the same weights when every load is multiplied by a power of two', () => {
    fc.assert(
      fc.property(backend(load), fc.integer({ min: -20, max: 20 }), params, (servers, exponent, p) => {
        const k = 2 ** exponent;
        expect(feedbackWeights(servers.map((s) => ({ ...s, load: s.load * k })), p)).toEqual(feedbackWeights(servers, p));
      }),
      RUNS,
    );
  });

  it('never gives more weight to a server with more load when weights and counts are equal', () => {
    fc.assert(
      fc.property(fc.array(load, { minLength: 1, maxLength: 200 }), weight, sessions, params, (loads, w, n, p) => {
        const weights = feedbackWeights(
          loads.map((x) => ({ load: x, weight: w, sessions: n })),
          p,
        );
        expect(loadOrderViolations(loads, weights)).toEqual([]);
      }),
      RUNS,
    );
  });

  it('moves no weight by more than 1 when every count is multiplied by the same whole number (counts above the floor)', () => {
    fc.assert(
      fc.property(backend(load), fc.integer({ min: 2, max: 8 }), params, (servers, m, p) => {
        fc.pre(servers.reduce((a, s) => a + s.sessions, 0) / servers.length >= p.minSessions);
        const before = feedbackWeights(servers, p);
        const after = feedbackWeights(
          servers.map((s) => ({ ...s, sessions: s.sessions * m })),
          p,
        );
        expect(after.filter((w, i) => !(Math.abs(w - (before[i] ?? Number.NaN)) <= 1))).toEqual([]);
      }),
      RUNS,
    );
  });
});

describe('feedbackWeights properties under roundrobin', () => {
  const lifetime = fc.option(fc.double({ min: 0.5, max: 500, noNaN: true }), { nil: undefined });
  const rr = (cyclesPerLifetime: number | undefined) => ({ algorithm: 'roundrobin', ...(cyclesPerLifetime === undefined ? {} : { cyclesPerLifetime }) });

  it('gives exactly one integer weight in 1..256 per server, for any finite loads', () => {
    fc.assert(
      fc.property(backend(fc.oneof(load, extremeLoad)), params, lifetime, (servers, p, l) => {
        const weights = feedbackWeights(servers, p, rr(l));
        expect(weights).toHaveLength(servers.length);
        expect(weights.filter((w) => !(Number.isInteger(w) && w >= 1 && w <= 256))).toEqual([]);
      }),
      RUNS,
    );
  });

  it('gives the same weights whatever the sessions, and whatever the order of the servers', () => {
    const shuffled = backend(load).chain((servers) =>
      fc.tuple(fc.constant(servers), fc.shuffledSubarray(servers.map((_, i) => i), { minLength: servers.length, maxLength: servers.length }), fc.array(sessions, { minLength: servers.length, maxLength: servers.length })),
    );
    fc.assert(
      fc.property(shuffled, params, lifetime, ([servers, order, otherSessions], p, l) => {
        const weights = feedbackWeights(servers, p, rr(l));
        expect(feedbackWeights(servers.map((s, i) => ({ ...s, sessions: otherSessions[i] ?? 0 })), p, rr(l))).toEqual(weights);
        const permuted = feedbackWeights(
          order.map((i) => servers[i] ?? { load: Number.NaN, weight: 1, sessions: 0 }),
          p,
          rr(l),
        );
        expect(permuted).toEqual(order.map((i) => weights[i]));
      }),
      RUNS,
    );
  });

  it('gives exactly the same weights when every load is multiplied by a power of two', () => {
    fc.assert(
      fc.property(backend(load), fc.integer({ min: -20, max: 20 }), params, lifetime, (servers, exponent, p, l) => {
        const k = 2 ** exponent;
        expect(feedbackWeights(servers.map((s) => ({ ...s, load: s.load * k })), p, rr(l))).toEqual(feedbackWeights(servers, p, rr(l)));
      }),
      RUNS,
    );
  });

  it('never gives more weight to a server with more load when the weights are equal', () => {
    fc.assert(
      fc.property(fc.array(load, { minLength: 1, maxLength: 200 }), weight, params, lifetime, (loads, w, p, l) => {
        const weights = feedbackWeights(
          loads.map((x) => ({ load: x, weight: w, sessions: 0 })),
          p,
          rr(l),
        );
        expect(loadOrderViolations(loads, weights)).toEqual([]);
      }),
      RUNS,
    );
  });
});
