import { relativeLoads } from './aggregate.js';
import type { WeightingConfig } from './config.js';
import { ConfigError, UnsafeInputError } from './errors.js';
import { MAX_WEIGHT, MIN_SET_WEIGHT as MIN_WEIGHT } from './runtime-grammar.js';
import type { WeightingInput } from './types.js';

/**
 * Our own policy: a deficit controller in connection counts, built for `leastconn`.
 *
 * Why: leastconn sends each new connection to the server with the lowest (sessions + 1) / weight,
 * so over time it makes every server's share of the connections equal to its share of the weight:
 * a weight is a *target connection count* in disguise. What we want is equal load, and the
 * weighter knows, per server, its load x_i (from Graphite, some seconds old) and its connection
 * count n_i (from HAProxy, live). Their ratio over the backend, Σx / Σn, is the mean rate of one
 * connection, i.e. what one more new connection is expected to bring. A server below the mean
 * load by (1 - r_i) times the mean therefore lacks (1 - r_i) · n̄ average connections, and one
 * above it holds that many too many. So each cycle we set every server's target count to
 *
 *     target_i = n_i - g · n̄ · (r_i - 1)
 *
 * and turn targets back into weights at the scale of the weights in force. leastconn then fills
 * the servers with a deficit first and sends nothing to an overloaded server until departures have
 * brought it down: the fastest correction that steering new connections allows, without the
 * memoryless functions' habit of re-pushing a server whose load simply has not caught up yet
 * (the live count already includes the connections sent to it since the last cycle).
 *
 * Formula, with loads x_i, current weights w_i in 1..256, sessions n_i, gain g in (0, 1] and
 * deadband d >= 0:
 *
 *     r_i = x_i / mean(x)                      relative load
 *     c_i = n_i, or w_i when Σn = 0            connection counts (weights stand in when the load
 *                                              balancer holds no connection at all)
 *     c̄ = mean(c),  k = Σc / Σw                connections per unit of weight
 *     if every |r_i - 1| <= d: w_i unchanged   (balanced: nothing to do)
 *     D_i = max(0, c_i - g · c̄ · (r_i - 1))    if |r_i - 1| > d
 *     D_i = k · w_i                            if |r_i - 1| <= d and |k · w_i - c_i| <= d · c̄
 *     D_i = c_i                                if |r_i - 1| <= d otherwise
 *     raw_i = D_i / k                          back to weight units, at the current scale
 *     s = 256 / max(raw) if max(raw) > 256 or max(raw) < 128, else 1
 *     new_i = round(s · raw_i), clamped to 1..256
 *
 * Example, loads [50, 100, 150], weights [256, 256, 256], sessions [100, 100, 100], g = 1,
 * d = 0.05: r = [0.5, 1, 1.5], c̄ = 100, k = 300 / 768; D = [150, 100 (in band, its weight
 * already means 100), 50]; raw = [384, 256, 128]; 384 > 256 so s = 2/3: [256, 170.7, 85.3] →
 * [256, 171, 85].
 *
 * Trade-offs:
 * - Needs `sessions` to be the connections of the load balancer that applies the weights (the
 *   `scur` it reports, which is what the engine passes). With several load balancers each one
 *   sees about 1/M of the connections, and its n̄ shrinks by the same factor, so each fills 1/M
 *   of every deficit: no coordination needed.
 * - Designed for leastconn. Under roundrobin a weight is a share of new connections, not a
 *   target count: the weights still point the right way, but a deficit only earns a slightly
 *   larger share instead of every new connection, and the convergence lab measured it little
 *   better than roundrobin alone. For roundrobin backends use normalised-exponential.
 * - Nothing in it knows the rate of a connection before it arrives: a heavy client lands where
 *   leastconn puts it, and its server can only shed load as its other clients leave. The policy
 *   makes sure that server gets nothing new meanwhile.
 * - g = 1 asks for the whole deficit each cycle. Loads lag the live counts by the metric delay,
 *   so connections sent in that lag are counted twice; g < 1 damps that overshoot. Even a small g
 *   stops new connections to an overloaded server at once (its target is below its live count,
 *   recomputed every cycle): g only sets how deep a deficit is filled per cycle. The convergence
 *   lab's grid search chose g = 0.25, d = 0.02 (the defaults): 91% of the steady-state gap and
 *   92% of the shock gap between leastconn alone and a clairvoyant bound, with a fifth of the
 *   weight reversals of tuned limited-proportions (test/lab/results/contest.md).
 * - The deadband stops churn: a server near the mean keeps its weight as long as that weight
 *   still matches its connection count (within d of the mean count), else its weight follows its
 *   count (so a server pushed down while overloaded is released once it is back to normal).
 *   A balanced backend (every load within d) changes nothing at all.
 * - Weights keep their scale from cycle to cycle (the target counts add up to about the current
 *   counts), so a server's weight only moves when its own target does; they are rescaled to a
 *   largest weight of 256 only to stay within 1..256 or when the largest falls below 128
 *   (resolution). Whenever anything changes, the largest weight is in 128..256, not always 256.
 * - Invariants (tested as properties): integers in 1..256; the order of the servers changes
 *   nothing; equal loads leave the weights as they are, so equal weights stay equal; multiplying
 *   every load by a power of two changes nothing (by any k > 0, only a load on a deadband edge can
 *   flip sides); with counts proportional to equal weights, more load never gets more weight.
 */

/** Below this largest weight the scale is renewed to 256, to keep resolution (see trade-offs). */
export const FEEDBACK_RESCALE_BELOW = 128;

export type FeedbackParams = Readonly<Omit<Extract<WeightingConfig, { function: 'feedback' }>, 'function'>>;

export function feedbackWeights(inputs: readonly WeightingInput[], params: FeedbackParams): number[] {
  checkParams(params);
  inputs.forEach((input, i) => {
    if (!Number.isInteger(input.weight) || input.weight < MIN_WEIGHT || input.weight > MAX_WEIGHT) {
      throw new UnsafeInputError(`current weight #${i} is ${String(input.weight)}: the feedback policy needs integer weights in 1..256`);
    }
    if (!Number.isInteger(input.sessions) || input.sessions < 0) {
      throw new UnsafeInputError(`sessions #${i} is ${String(input.sessions)}: the feedback policy needs a connection count >= 0`);
    }
  });
  if (inputs.length === 0) return [];
  const current = inputs.map((i) => i.weight);
  const relative = relativeLoads(inputs.map((i) => i.load));
  const { gain, deadband } = params;
  // No load anywhere, or every load within the band: no signal worth a write.
  if (relative === null || relative.every((r) => Math.abs(r - 1) <= deadband)) return current;

  // Integer sums: exact, so the order of the servers cannot change them.
  const sessions = inputs.reduce((acc, i) => acc + i.sessions, 0);
  const counts = sessions > 0 ? inputs.map((i) => i.sessions) : current;
  const totalCount = sessions > 0 ? sessions : current.reduce((a, b) => a + b, 0);
  const totalWeight = current.reduce((a, b) => a + b, 0);
  const meanCount = totalCount / inputs.length;
  const perWeight = totalCount / totalWeight;

  const raw = inputs.map((input, i) => {
    const r = relative[i] ?? 1;
    const count = counts[i] ?? 0;
    if (Math.abs(r - 1) > deadband) return Math.max(0, count - gain * meanCount * (r - 1)) / perWeight;
    return Math.abs(perWeight * input.weight - count) <= deadband * meanCount ? input.weight : count / perWeight;
  });
  const largest = Math.max(...raw);
  if (!(largest > 0)) return current;
  const scale = largest > MAX_WEIGHT || largest < FEEDBACK_RESCALE_BELOW ? MAX_WEIGHT / largest : 1;
  return raw.map((w) => Math.min(MAX_WEIGHT, Math.max(MIN_WEIGHT, Math.round(w * scale))));
}

function checkParams(params: FeedbackParams): void {
  const issues: string[] = [];
  const { gain, deadband } = params;
  if (!(Number.isFinite(gain) && gain > 0 && gain <= 1)) issues.push(`gain: must be in (0, 1] (got ${String(gain)})`);
  if (!(Number.isFinite(deadband) && deadband >= 0 && deadband <= 0.5)) issues.push(`deadband: must be in [0, 0.5] (got ${String(deadband)})`);
  if (issues.length > 0) throw new ConfigError('Invalid weighting parameters', issues);
}
