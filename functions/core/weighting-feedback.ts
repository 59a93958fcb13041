import { relativeLoads } from './aggregate.js';
import type { WeightingConfig } from './config.js';
import { ConfigError, UnsafeInputError } from './errors.js';
import type { WeightingInput } from './types.js';

/**
 * Our own policy: a damped multiplicative controller that corrects the weights in force instead of
 * recomputing them from scratch each cycle.
 *
 * Why: with long-lived connections a server's load answers a weight change only as new
 * connections arrive, over many cycles. The seed's functions are memoryless (they map loads to
 * weights directly), so they keep pushing a lagging server as hard as ever and can overshoot.
 * Here a server whose load is already at the mean keeps its weight, and one away from the mean
 * has its weight nudged by its load ratio, a fraction `gain` of the way per cycle.
 */

const MAX_WEIGHT = 256;
const MIN_WEIGHT = 1;

/**
 * Lowest relative load used in the correction: a server at 0 (just started, or a metric reading
 * 0) would otherwise have an infinite target. It counts as 1/10 of the mean, so its target is at
 * most 10^aggressiveness times its weight. A constant, not a setting, until the convergence lab
 * shows it needs tuning.
 */
export const FEEDBACK_LOAD_FLOOR = 0.1;

export type FeedbackParams = Readonly<Omit<Extract<WeightingConfig, { function: 'feedback' }>, 'function'>>;

/**
 * With loads x_i, mean m, current weights w_i, gain g in (0, 1], aggressiveness a > 0 and
 * deadband d >= 0:
 *
 *     r_i      = x_i / m
 *     target_i = w_i · (1 / max(r_i, FEEDBACK_LOAD_FLOOR))^a    if |r_i - 1| > d
 *              = w_i                                           otherwise
 *     next_i   = w_i + g · (target_i - w_i)
 *     new_i    = round(256 · next_i / max_j next_j), clamped to 1..256
 *
 * When every load is 0 there is no signal and every server is treated as inside the deadband.
 * `sessions` is not used (yet).
 * Example, loads [50, 100, 150], weights [100, 100, 100], g = 0.5, a = 1, d = 0.05: m = 100,
 * r = [0.5, 1, 1.5], target = [200, 100, 66.7], next = [150, 100, 83.3],
 * new = 256 · next / 150 = [256, 170.7, 142.2] → [256, 171, 142].
 *
 * Trade-offs:
 * - The fixed point is "every load at the mean": there the weights stop moving, whatever they
 *   are, since the right weights depend on the connections each server already holds.
 * - Linear interpolation towards the target bounds the cut per cycle: an overloaded server's
 *   weight falls by at most a factor (1 - g) before the rescale, however high its load. Raising
 *   is bounded by the floor: at most 1 + g · (10^a - 1).
 * - The deadband stops churn from noise but leaves a steady error up to d; its edge is a step
 *   (a server just outside moves by about g · a · d, one just inside not at all).
 * - Rescaling so the largest weight is 256 keeps 8 bits of resolution as weights drift (weights
 *   are relative), but means a server's weight can change although its own load sits at the
 *   mean; weights driven to 1 lose their ratios to each other.
 * - It needs trustworthy current weights: they must be the ones HAProxy reports (1..256).
 */
export function feedbackWeights(inputs: readonly WeightingInput[], params: FeedbackParams): number[] {
  checkParams(params);
  inputs.forEach((input, i) => {
    if (!Number.isFinite(input.weight) || input.weight < MIN_WEIGHT || input.weight > MAX_WEIGHT) {
      throw new UnsafeInputError(`current weight #${i} is ${String(input.weight)}: the feedback policy needs weights in 1..256`);
    }
  });
  if (inputs.length === 0) return [];
  const relative = relativeLoads(inputs.map((i) => i.load));
  const next = inputs.map((input, i) => {
    const r = relative?.[i] ?? 1;
    if (Math.abs(r - 1) <= params.deadband) return input.weight;
    const target = input.weight * Math.pow(Math.max(r, FEEDBACK_LOAD_FLOOR), -params.aggressiveness);
    return input.weight + params.gain * (target - input.weight);
  });
  const largest = Math.max(...next);
  return next.map((n) => Math.min(MAX_WEIGHT, Math.max(MIN_WEIGHT, Math.round((MAX_WEIGHT * n) / largest))));
}

function checkParams(params: FeedbackParams): void {
  const issues: string[] = [];
  const { gain, aggressiveness, deadband } = params;
  if (!(Number.isFinite(gain) && gain > 0 && gain <= 1)) issues.push(`gain: must be in (0, 1] (got ${String(gain)})`);
  if (!(Number.isFinite(aggressiveness) && aggressiveness > 0)) issues.push(`aggressiveness: must be > 0 (got ${String(aggressiveness)})`);
  if (!(Number.isFinite(deadband) && deadband >= 0)) issues.push(`deadband: must be >= 0 (got ${String(deadband)})`);
  if (issues.length > 0) throw new ConfigError('Invalid weighting parameters', issues);
}
