import { relativeLoads } from './aggregate.js';
import type { WeightingConfig } from './config.js';
import { ConfigError } from './errors.js';
import { MAX_WEIGHT, MIN_SET_WEIGHT as MIN_WEIGHT } from './runtime-grammar.js';
import type { WeightingInput } from './types.js';
import { feedbackWeights } from './weighting-feedback.js';

/**
 * The weighting functions of the seed write-up, and the dispatcher over every configured function.
 *
 * Every function is pure and returns one integer weight in 1..256 per input, in input order.
 * The two seed functions guarantee (each one tested, most as properties):
 * - the largest weight is always 256, the least loaded server's: weights are relative, so using the
 *   top of HAProxy's range keeps the most resolution;
 * - equal loads give equal weights; all-zero loads give 256 everywhere (nothing tells them apart);
 * - a server with more load never gets more weight than one with less, and raising one server's
 *   load never raises its weight;
 * - the order of the inputs changes nothing (exactly);
 * - multiplying every load by k > 0 changes nothing: exactly when k is a power of two; for other k
 *   only a weight whose unrounded value lies within a few ulps of a .5 rounding boundary can move,
 *   by 1 (k·load is itself rounded, so no implementation can promise more).
 * `feedback` (weighting-feedback.ts) is a controller that starts from the current weights and
 * connection counts, so it keeps the last three but not the first two as stated: its largest
 * weight is in 128..256, and the load orderings hold when current weights and sessions are equal.
 * Never 0: weight 0 stops new connections to a server, which is the operator's tool, not ours.
 */


export type LimitedProportionsParams = Readonly<Omit<Extract<WeightingConfig, { function: 'limited-proportions' }>, 'function'>>;
export type NormalisedExponentialParams = Readonly<Omit<Extract<WeightingConfig, { function: 'normalised-exponential' }>, 'function'>>;

/**
 * Limited proportions (the seed's production function): weights inversely proportional to the
 * loads, with every load floored at a fraction of the mean.
 *
 * With n loads x_i, mean m = (Σ x_i) / n, limiting factor L >= 1 and aggressiveness a > 0:
 *
 *     r_i = x_i / m                    load relative to the mean
 *     f_i = max(r_i, 1 / L)            floored: nobody counts as lighter than m / L
 *     w_i = round(256 · (min_j f_j / f_i)^a), clamped to 1..256
 *
 * i.e. w_i ∝ (1 / f_i)^a, scaled so that the least loaded server gets exactly 256.
 * Example, loads [100, 200, 300, 400], L = 4, a = 1: m = 250, r = [0.4, 0.8, 1.2, 1.6], no floor
 * applies, w = 256 · 0.4 / r = [256, 128, 85.3, 64] → [256, 128, 85, 64].
 *
 * Trade-offs:
 * - Intuitive: at a = 1 a server with twice the load of another gets half its weight. a > 1
 *   widens the spread (reacts harder), a < 1 narrows it.
 * - The floor is what stops a near-idle server (just started, or its metric broken and reading 0)
 *   from taking almost every new connection: it is weighted as if its load were m / L, so its
 *   weight is at most (L · x_j / m)^a times that of a server at load x_j, and exactly L^a times
 *   that of a server at the mean. Note the idle server pulls the mean down, so with n - 1 equal
 *   servers and one idle the others sit at n / (n - 1) of the mean and the ratio is
 *   (L · n / (n - 1))^a: 5 rather than 4 for n = 5, L = 4, a = 1; it tends to L^a as n grows.
 * - No ceiling: a heavily loaded server's weight tends to 0 and is clamped to 1, so all servers
 *   beyond 256^(1/a) times the least loaded one look the same. Resolution is coarse at the bottom
 *   (3 vs 4 is a third).
 * - Memoryless: it reads only the loads, not the weights in force. On long-lived connections the
 *   load answers a weight change slowly, so an aggressive setting can overshoot and oscillate;
 *   the `feedback` function addresses that.
 */
export function limitedProportions(loads: readonly number[], params: LimitedProportionsParams): number[] {
  checkParams([
    ['limitingFactor', params.limitingFactor, params.limitingFactor >= 1],
    ['aggressiveness', params.aggressiveness, params.aggressiveness > 0],
  ]);
  const relative = relativeLoads(loads);
  if (relative === null) return loads.map(() => MAX_WEIGHT);
  const floor = 1 / params.limitingFactor;
  const floored = relative.map((r) => Math.max(r, floor));
  const lightest = Math.min(...floored);
  // min/f_i <= 1, so the least loaded server lands on exactly 256 and nobody above it.
  return floored.map((f) => toWeight(MAX_WEIGHT * Math.pow(lightest / f, params.aggressiveness)));
}

/**
 * Normalised exponential (softmax-like): weights decay exponentially with the load relative to
 * the mean.
 *
 * With loads x_i, mean m and aggressiveness a > 0 (the inverse temperature):
 *
 *     r_i = x_i / m
 *     w_i = round(256 · exp(-a · (r_i - min_j r_j))), clamped to 1..256
 *
 * i.e. w_i ∝ exp(-a · x_i / m), a softmax of the negated relative loads scaled so that its largest
 * term is 256 (subtracting the minimum is that scaling, and it keeps exp from underflowing).
 * Example, loads [100, 200, 300, 400], a = 1: m = 250, r = [0.4, 0.8, 1.2, 1.6],
 * w = 256 · [e^0, e^-0.4, e^-0.8, e^-1.2] = [256, 171.6, 115.0, 77.1] → [256, 172, 115, 77].
 *
 * Trade-offs:
 * - Weight ratios depend on differences of relative loads: w_i / w_j = exp(-a · (r_i - r_j)).
 *   So it is gentle with near-idle servers without any floor: an idle server gets at most e^a
 *   times the weight of a server at the mean (2.7 at a = 1).
 * - Scale invariant (loads in points/s or points/min give the same weights) because of the
 *   division by the mean; not shift invariant: a constant baseline added to every load (idle CPU,
 *   health checks) lowers every r_i difference and so flattens the weights.
 * - Saturates for big spreads: exp falls fast, so every server far above the least loaded one is
 *   clamped to 1 and they become indistinguishable (a = 5, Δr = 1.2: 256 · e^-6 = 0.6 → 1).
 *   Large a approaches "every new connection to the least loaded server"; a → 0 gives equal
 *   weights. Mathematically never 0 (the clamp only fixes rounding).
 * - Memoryless, like limited proportions.
 */
export function normalisedExponential(loads: readonly number[], params: NormalisedExponentialParams): number[] {
  checkParams([['aggressiveness', params.aggressiveness, params.aggressiveness > 0]]);
  const relative = relativeLoads(loads);
  if (relative === null) return loads.map(() => MAX_WEIGHT);
  const lightest = Math.min(...relative);
  return relative.map((r) => toWeight(MAX_WEIGHT * Math.exp(-params.aggressiveness * (r - lightest))));
}

/**
 * Computes the weights for one backend's servers with the configured function, in input order.
 * An empty list gives an empty list.
 */
export function computeWeights(inputs: readonly WeightingInput[], config: WeightingConfig): number[] {
  if (inputs.length === 0) return [];
  switch (config.function) {
    case 'limited-proportions':
      return limitedProportions(
        inputs.map((i) => i.load),
        config,
      );
    case 'normalised-exponential':
      return normalisedExponential(
        inputs.map((i) => i.load),
        config,
      );
    case 'feedback':
      return feedbackWeights(inputs, config);
    default: {
      const unknown: never = config;
      throw new ConfigError(`unknown weighting function in ${JSON.stringify(unknown)}`);
    }
  }
}

function toWeight(value: number): number {
  return Math.min(MAX_WEIGHT, Math.max(MIN_WEIGHT, Math.round(value)));
}

/**
 * The config schema already bounds these; the functions are also called directly (tests, the
 * convergence lab), where a bad factor would otherwise turn into NaN weights silently.
 */
function checkParams(checks: readonly (readonly [name: string, value: number, ok: boolean])[]): void {
  const issues = checks.filter(([, value, ok]) => !ok || !Number.isFinite(value)).map(([name, value]) => `${name}: out of range (got ${String(value)})`);
  if (issues.length > 0) throw new ConfigError('Invalid weighting parameters', issues);
}
