import type { Aggregation } from './setup.js';
import type { Policy, WeightingSpec } from './simulator.js';

/**
 * The contenders of the contest and the factor grid each one is tuned over. Every weighted policy
 * also chooses its aggregation (leading edge or window average): the seed's functions deserve
 * their best setting, not ours.
 */

export interface Contender {
  readonly id: string;
  readonly label: string;
  /** The candidate settings; a single one when there is nothing to tune. */
  readonly grid: readonly Policy[];
}

type FactorGrid = Readonly<Record<string, readonly number[]>>;

const AGGREGATIONS: readonly Aggregation[] = ['leading-edge', 'average'];

/** Every combination of the factor values, in a stable order. */
export function cartesian(grid: FactorGrid): Record<string, number>[] {
  let combos: Record<string, number>[] = [{}];
  for (const [key, values] of Object.entries(grid)) {
    combos = combos.flatMap((combo) => values.map((v) => ({ ...combo, [key]: v })));
  }
  return combos;
}

function weightedGrid(id: string, label: string, fn: string, grid: FactorGrid): Contender {
  const policies: Policy[] = [];
  for (const aggregation of AGGREGATIONS) {
    for (const factors of cartesian(grid)) {
      const weighting: WeightingSpec = { function: fn, ...factors };
      policies.push({ kind: 'haproxy', name: label, algorithm: 'leastconn', weighting, aggregation });
    }
  }
  return { id, label, grid: policies };
}

export const LIMITED_PROPORTIONS_GRID: FactorGrid = {
  limitingFactor: [1.5, 2, 4, 8, 16],
  aggressiveness: [0.5, 1, 1.5, 2, 3, 4, 6],
};

export const NORMALISED_EXPONENTIAL_GRID: FactorGrid = {
  aggressiveness: [0.5, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 50],
};

export const FEEDBACK_GRID: FactorGrid = {
  gain: [0.25, 0.5, 0.75, 1],
  deadband: [0, 0.02, 0.03, 0.05, 0.1],
};

export function contenders(): Contender[] {
  return [
    { id: 'roundrobin', label: 'roundrobin', grid: [{ kind: 'haproxy', name: 'roundrobin', algorithm: 'roundrobin' }] },
    { id: 'leastconn', label: 'leastconn', grid: [{ kind: 'haproxy', name: 'leastconn', algorithm: 'leastconn' }] },
    weightedGrid('limited-proportions', 'leastconn + limited-proportions', 'limited-proportions', LIMITED_PROPORTIONS_GRID),
    weightedGrid('normalised-exponential', 'leastconn + normalised-exponential', 'normalised-exponential', NORMALISED_EXPONENTIAL_GRID),
    weightedGrid('feedback', 'leastconn + feedback (ours)', 'feedback', FEEDBACK_GRID),
    { id: 'clairvoyant', label: 'clairvoyant bound', grid: [{ kind: 'clairvoyant', name: 'clairvoyant bound' }] },
  ];
}

/** The factors of a policy as they would be written in the YAML config, e.g. `aggressiveness: 2, limitingFactor: 4 (average)`. */
export function describeFactors(policy: Policy): string {
  if (policy.kind !== 'haproxy' || policy.weighting === undefined) return '—';
  const factors = Object.entries(policy.weighting)
    .filter(([k]) => k !== 'function')
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  return `${factors}${policy.aggregation === undefined ? '' : `, ${policy.aggregation}`}`;
}
