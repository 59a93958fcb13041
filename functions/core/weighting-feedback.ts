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
 * - Under roundrobin a weight is a share of new connections, not a target count, and counts say
 *   nothing about where the next connections go: that algorithm gets its own rule (see
 *   `roundrobinShares`), from the loads and how long connections live.
 * - Nothing in it knows the rate of a connection before it arrives: a heavy client lands where
 *   leastconn puts it, and its server can only shed load as its other clients leave. The policy
 *   makes sure that server gets nothing new meanwhile.
 * - g = 1 asks for the whole deficit each cycle. Loads lag the live counts by the metric delay,
 *   so connections sent in that lag are counted twice; g < 1 damps that overshoot. Even a small g
 *   stops new connections to an overloaded server at once (its target is below its live count,
 *   recomputed every cycle): g only sets how deep a deficit is filled per cycle. The defaults
 *   g = 0.25, d = 0.02 score within a near-tie of the best in the convergence lab's grid search;
 *   their figures are in docs/lab.md (`npm run lab`).
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
/**
 * Under leastconn, the least part of a deficit asked for within one connection lifetime. Asking g of
 * it per cycle fills 1 − (1 − g)^ℓ of it in the ℓ cycles a connection lives: with g = 0.25 that is
 * 58% when connections live 3 cycles, and by then the deficit has left with them. When the memory
 * knows ℓ, the gain is raised to 1 − (1 − F)^(1/ℓ) if that is more: nothing changes for connections
 * living 7 cycles or more. 7/8 was chosen among 3/4, 7/8 and 15/16 on the simulator's
 * short-lifetimes scenario (3-cycle lifetimes) with seeds 201-240, which the contest neither tunes
 * nor evaluates on; its figures on the evaluation seeds are in docs/lab.md (`npm run lab`).
 */
export const FILL_WITHIN_LIFETIME = 0.875;
/** Cycles per connection lifetime assumed after a reload when the old process's is unknown, and the most we ever assume. */
const LIFETIME_CYCLES = { unknown: 1, max: 100 } as const;
/**
 * Under roundrobin a weight moves only when the share it should give differs from the one it gives
 * by more than this part of the mean weight. A share answers the loads, so without a hold it would
 * move with their noise every cycle, about as often as limited-proportions. 0.3 was chosen among
 * 0.05-0.75 on the simulator's roundrobin scenario with seeds 201-240, which the contest neither
 * tunes nor evaluates on; its figures on the evaluation seeds are in docs/lab.md (`npm run lab`).
 */
export const ROUNDROBIN_HOLD = 0.3;
/**
 * The hold when the lifetime is unknown (a one-shot `apply`, the first cycles of `run`). The tilt is
 * then the gain alone, which moves a share by a quarter of its deviation at the shipped gain: the
 * full hold would keep most weights still for good, no hold lets them follow the loads' noise every
 * cycle (a one-shot apply on the simulator's roundrobin scenario reversed its weights about 21
 * times per server and hour). 0.06 was chosen among 0.03, 0.06 and 0.1 on that scenario with seeds
 * 201-220, which the contest neither tunes nor evaluates on; its figures on the evaluation seeds
 * are in docs/lab.md (`npm run lab`).
 */
export const ROUNDROBIN_HOLD_GENTLE = 0.06;

export type FeedbackParams = Readonly<Omit<Extract<WeightingConfig, { function: 'feedback' }>, 'function'>>;

/** Why a server got the weight it got, for the report. */
export type FeedbackRule =
  /** Every load within the deadband: nothing to do, the weight is kept. */
  | 'balanced'
  /** This server's load is within the deadband and its weight matches its connection count: kept. */
  | 'deadband'
  /** Within the deadband, but its weight no longer matched its count: the weight follows the count. */
  | 'follow-sessions'
  /** Outside the deadband: target count = count − gain · count scale · (relative load − 1). */
  | 'deficit';

/** What the policy knows beyond the servers themselves. */
export interface FeedbackContext {
  /** The backend's balance algorithm as `show stat` names it (`leastconn`, `roundrobin`, ...). */
  readonly algorithm: string;
  /**
   * Connections per server that carry the measured load. Defaults to this load balancer's own
   * mean; more after a reload (the old process still holds most of them). Never below
   * `minSessions`: below that the counts are too few to trust and the difference is spread evenly.
   */
  readonly countScale?: number;
  /**
   * How many cycles a connection lives (connections held / connections placed per cycle), when
   * known. Roundrobin needs it: there a weight is a share of new connections, and how far a share
   * moves a server's load in one cycle depends on how much of it is replaced per cycle.
   */
  readonly cyclesPerLifetime?: number;
}

export interface FeedbackDecision {
  readonly weights: number[];
  /** Unrounded weights at the scale of the result (before the 1..256 clamp). */
  readonly raw: number[];
  readonly rules: FeedbackRule[];
  /** The count scale used, and whether the counts were too few to trust (padded to it). */
  readonly countScale: number;
  readonly fewSessions: boolean;
}

export function feedbackWeights(inputs: readonly WeightingInput[], params: FeedbackParams, context: FeedbackContext = { algorithm: 'leastconn' }): number[] {
  return feedbackDecision(inputs, params, context).weights;
}

/**
 * The policy with its reasons. Formula (see the file comment for why), with loads x_i, weights
 * w_i, sessions n_i, gain g, deadband d, count floor m (`minSessions`) and count scale C:
 *
 *     r_i = x_i / mean(x)
 *     C   = max(mean(n), m, context.countScale)
 *     c_i = n_i + (C − mean(n))                 counts, padded evenly up to the scale
 *     k   = Σc / Σw                             connections per unit of weight
 *     if every |r_i − 1| <= d: w_i unchanged
 *     g'  = max(g, 1 − (1 − F)^(1/ℓ)) when ℓ (cycles per lifetime) is known and no reload, else g
 *     D_i = max(0, c_i − g' · C · (r_i − 1))    if |r_i − 1| > d
 *     D_i = k · w_i  if |r_i − 1| <= d and |k · w_i − c_i| <= d · C, else c_i
 *     raw_i = D_i / k; rescaled to 256 when the largest is above 256 or below 128; rounded, 1..256
 *
 * Under roundrobin, `roundrobinShares` instead.
 */
export function feedbackDecision(inputs: readonly WeightingInput[], params: FeedbackParams, context: FeedbackContext): FeedbackDecision {
  checkParams(params);
  inputs.forEach((input, i) => {
    if (!Number.isInteger(input.weight) || input.weight < MIN_WEIGHT || input.weight > MAX_WEIGHT) {
      throw new UnsafeInputError(`current weight #${i} is ${String(input.weight)}: the feedback policy needs integer weights in 1..256`);
    }
    if (!Number.isInteger(input.sessions) || input.sessions < 0) {
      throw new UnsafeInputError(`sessions #${i} is ${String(input.sessions)}: the feedback policy needs a connection count >= 0`);
    }
  });
  const current = inputs.map((i) => i.weight);
  const n = inputs.length;
  // Integer sums: exact, so the order of the servers cannot change them.
  const sessions = inputs.reduce((acc, i) => acc + i.sessions, 0);
  const ownMean = n === 0 ? 0 : sessions / n;
  // Too few sessions and nothing known of where the load-carrying connections are: spread the
  // difference evenly, as connections that never leave, so that the weights follow the loads gently
  // instead of integrating on noise. After a reload they are known to be the old process's, and they
  // leave: this process takes every new connection, so its targets must replace what leaves the old
  // one each cycle, and fill the deficits at the old process's scale.
  const reloaded = context.countScale !== undefined;
  const lifetime = Math.min(LIFETIME_CYCLES.max, Math.max(1, context.cyclesPerLifetime ?? LIFETIME_CYCLES.unknown));
  const countScale = Math.max(ownMean, reloaded ? (context.countScale ?? 0) : params.minSessions);
  const others = countScale - ownMean;
  const pad = reloaded ? others / lifetime : others;
  const fewSessions = !reloaded && others > 0;
  const unchanged = (rule: FeedbackRule): FeedbackDecision => ({ weights: current, raw: [...current], rules: current.map(() => rule), countScale, fewSessions });
  if (n === 0) return unchanged('balanced');
  const relative = relativeLoads(inputs.map((i) => i.load));
  const { gain, deadband } = params;
  // No load anywhere: no signal worth a write.
  if (relative === null) return unchanged('balanced');
  if (context.algorithm === 'roundrobin') {
    const shares = roundrobinShares(relative, current, gain, deadband, context.cyclesPerLifetime);
    // Counts play no part in a share: too few of them is no reason for caution.
    return shares === null ? unchanged('balanced') : { ...shares, countScale, fewSessions: false };
  }
  // Every load within the band: nothing worth a write.
  const band = deadband;
  if (relative.every((r) => Math.abs(r - 1) <= band)) return unchanged('balanced');

  // Counts in units of the count scale: the weights do not depend on the unit, and tiny floors
  // (minSessions near 0) cannot underflow.
  const unit = countScale > 0 ? countScale : 1;
  const counts = inputs.map((i) => i.sessions / unit + pad / unit);
  const totalCount = counts.reduce((a, b) => a + b, 0);
  const totalWeight = current.reduce((a, b) => a + b, 0);
  // Count units per unit of weight; with no connection at all, as if each server held the scale.
  const perWeight = (totalCount > 0 ? totalCount : (countScale / unit) * n) / totalWeight;
  const scaleUnits = countScale / unit;
  // Connections that live only a few cycles leave before a quarter-per-cycle has filled their deficit.
  const reach = context.cyclesPerLifetime !== undefined && !reloaded ? Math.max(gain, 1 - (1 - FILL_WITHIN_LIFETIME) ** (1 / lifetime)) : gain;

  const rules: FeedbackRule[] = [];
  const raw = inputs.map((input, i) => {
    const r = relative[i] ?? 1;
    const count = counts[i] ?? 0;
    if (Math.abs(r - 1) > band) {
      rules.push('deficit');
      return Math.max(0, count - reach * scaleUnits * (r - 1)) / perWeight;
    }
    // After a reload the weights in force were not set for these counts: a server in the band gets its replacement.
    if (!reloaded && Math.abs(perWeight * input.weight - count) <= deadband * scaleUnits) {
      rules.push('deadband');
      return input.weight;
    }
    rules.push('follow-sessions');
    return count / perWeight;
  });
  const out = rescaled(raw);
  return out === null ? unchanged('balanced') : { ...out, rules, countScale, fewSessions };
}

/**
 * Raw weights rescaled to 256 when the largest is above 256 or below FEEDBACK_RESCALE_BELOW, then
 * rounded into 1..256 (and the rescaled raw ones); null when none is positive.
 */
function rescaled(raw: readonly number[]): { weights: number[]; raw: number[] } | null {
  let largest = 0;
  for (const w of raw) largest = Math.max(largest, w);
  if (!(largest > 0)) return null;
  const scale = largest > MAX_WEIGHT || largest < FEEDBACK_RESCALE_BELOW ? MAX_WEIGHT / largest : 1;
  const scaled = raw.map((w) => w * scale);
  return { weights: scaled.map((w) => Math.min(MAX_WEIGHT, Math.max(MIN_WEIGHT, Math.round(w)))), raw: scaled };
}

/**
 * Roundrobin: a weight is the share of new connections a server gets until the next cycle, whatever
 * it holds. With loads x_i (relative r_i = x_i / mean), ℓ cycles per connection lifetime and equal
 * shares, a cycle replaces 1/ℓ of every server's connections by an even part of the arrivals, which
 * already pulls every relative load 1/ℓ of the way back to 1. A share tilted by κ · (1 − r_i) pulls
 * it (1 + κ)/ℓ of the way; the gain g asks for g of the way per cycle, as under leastconn, so
 *
 *     e_i = (1 − r_i), less the deadband d towards 0 (0 within it)
 *     κ   = max(0, g · ℓ − 1) when ℓ is known; g when it is not (a gentle tilt)
 *     s_i = max(0, 1 + κ · e_i)                 share, relative to an even one
 *     h   = ROUNDROBIN_HOLD when ℓ is known; ROUNDROBIN_HOLD_GENTLE when it is not
 *     w_i unchanged when |s_i · mean(w) − w_i| <= h · mean(w), else s_i · mean(w)
 *     rescaled to 256 when the largest is above 256 or below 128; rounded, 1..256
 *
 * Counts play no part: under roundrobin they say nothing about where the next connections go, and
 * a share from the loads alone cannot run away when there are no sessions or after a reload. The
 * deadband shrinks every deviation instead of cutting it off, so that a share moves smoothly; the
 * hold keeps a weight still against the loads' noise (see ROUNDROBIN_HOLD). Null when nothing
 * changes.
 */
export function roundrobinShares(
  relative: readonly number[],
  current: readonly number[],
  gain: number,
  deadband: number,
  cyclesPerLifetime: number | undefined,
): Pick<FeedbackDecision, 'weights' | 'raw' | 'rules'> | null {
  const lifetime = cyclesPerLifetime === undefined ? undefined : Math.min(LIFETIME_CYCLES.max, Math.max(1, cyclesPerLifetime));
  const tilt = lifetime === undefined ? gain : Math.max(0, gain * lifetime - 1);
  const meanWeight = current.reduce((a, b) => a + b, 0) / Math.max(1, current.length);
  // A gentle tilt moves less than the full hold: with it, a weight moved once would stay put for good.
  const hold = lifetime === undefined ? ROUNDROBIN_HOLD_GENTLE : ROUNDROBIN_HOLD;
  const rules: FeedbackRule[] = [];
  const raw = current.map((weight, i) => {
    const deviation = 1 - (relative[i] ?? 1);
    const beyond = Math.sign(deviation) * Math.max(0, Math.abs(deviation) - deadband);
    const wanted = Math.max(0, 1 + tilt * beyond) * meanWeight;
    if (Math.abs(wanted - weight) <= hold * meanWeight) {
      rules.push('deadband');
      return weight;
    }
    rules.push('deficit');
    return wanted;
  });
  if (rules.every((r) => r === 'deadband')) return null;
  const out = rescaled(raw);
  return out === null ? null : { ...out, rules };
}

function checkParams(params: FeedbackParams): void {
  const issues: string[] = [];
  const { gain, deadband, minSessions } = params;
  if (!(Number.isFinite(gain) && gain > 0 && gain <= 1)) issues.push(`gain: must be in (0, 1] (got ${String(gain)})`);
  if (!(Number.isFinite(deadband) && deadband >= 0 && deadband <= 0.5)) issues.push(`deadband: must be in [0, 0.5] (got ${String(deadband)})`);
  if (!(Number.isFinite(minSessions) && minSessions >= 0)) issues.push(`minSessions: must be a number >= 0 (got ${String(minSessions)})`);
  if (issues.length > 0) throw new ConfigError('Invalid weighting parameters', issues);
}
