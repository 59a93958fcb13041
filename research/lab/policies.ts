import type { Policy, WeightingSpec } from './simulator.js';

/**
 * The contenders of the contest and the factor grid each one is tuned over: the seed's functions
 * deserve their best setting, not ours. The default policy runs as shipped, untuned.
 */

export interface Contender {
  readonly id: string;
  readonly label: string;
  /** The candidate settings; a single one when there is nothing to tune. */
  readonly grid: readonly Policy[];
}

type FactorGrid = Readonly<Record<string, readonly number[]>>;

/** Every combination of the factor values, in a stable order. */
export function cartesian(grid: FactorGrid): Record<string, number>[] {
  let combos: Record<string, number>[] = [{}];
  for (const [key, values] of Object.entries(grid)) {
    combos = combos.flatMap((combo) => values.map((v) => ({ ...combo, [key]: v })));
  }
  return combos;
}

/**
 * Weighted contenders run on the backend's own algorithm (leastconn, or roundrobin in that
 * scenario) and read the leading edge: with the shipped 15-minute window an average would smooth
 * over a quarter of an hour, which no policy wants.
 */
function weightedGrid(id: string, label: string, fn: string, grid: FactorGrid, backendGrid: FactorGrid = {}): Contender {
  const policies: Policy[] = [];
  for (const factors of cartesian(grid)) {
    for (const backendFactors of cartesian(backendGrid)) {
      const weighting: WeightingSpec = { function: fn, ...factors };
      const backend = Object.keys(backendFactors).length === 0 ? {} : { backend: nestBackend(backendFactors) };
      policies.push({ kind: 'haproxy', name: label, weighting, aggregation: 'leading-edge', ...backend });
    }
  }
  return { id, label, grid: policies };
}

/** `bounds.min: 0.1` → `{ bounds: { min: 0.1 } }`. */
function nestBackend(factors: Readonly<Record<string, number>>): Record<string, unknown> {
  const out: Record<string, Record<string, number> | number> = {};
  for (const [key, value] of Object.entries(factors)) {
    const [outer, inner] = key.split('.');
    if (outer === undefined) continue;
    if (inner === undefined) out[outer] = value;
    else out[outer] = { ...((out[outer] as Record<string, number> | undefined) ?? {}), [inner]: value };
  }
  return out;
}

const LIMITED_PROPORTIONS_GRID: FactorGrid = {
  limitingFactor: [1.5, 2, 4, 8],
  aggressiveness: [0.5, 1, 1.5, 2, 3],
};

const NORMALISED_EXPONENTIAL_GRID: FactorGrid = {
  aggressiveness: [1, 2, 4, 8, 16],
};

const FEEDBACK_GRID: FactorGrid = {
  gain: [0.25, 0.5, 0.75, 1],
  deadband: [0.02, 0.05],
};

/** Backend settings tuned with feedback: how far a weight may stray from the mean weight. */
const FEEDBACK_BACKEND_GRID: FactorGrid = {
  'bounds.min': [0.1, 0.25],
};

/** The scenarios the grid search scores on: the baseline, the shock and the hardest everyday events. */
export const TRAINING_SCENARIOS = ['steady', 'shock', 'slow-metrics', 'short-lifetimes', 'soft-reload', 'roundrobin'] as const;

/** The policy as shipped: the schema's defaults for every setting (`weighting` may be left out). */
export const DEFAULT_POLICY: Extract<Policy, { kind: 'haproxy' }> = { kind: 'haproxy', name: 'default policy', weighting: { function: 'feedback' } };

export function contenders(): Contender[] {
  return [
    { id: 'roundrobin', label: 'roundrobin', grid: [{ kind: 'haproxy', name: 'roundrobin', algorithm: 'roundrobin' }] },
    // HAProxy alone on the backend's algorithm: leastconn, except in the roundrobin scenario.
    { id: 'leastconn', label: 'leastconn', grid: [{ kind: 'haproxy', name: 'leastconn' }] },
    weightedGrid('limited-proportions', 'limited-proportions', 'limited-proportions', LIMITED_PROPORTIONS_GRID),
    weightedGrid('normalised-exponential', 'normalised-exponential', 'normalised-exponential', NORMALISED_EXPONENTIAL_GRID),
    weightedGrid('feedback', 'feedback (tuned)', 'feedback', FEEDBACK_GRID, FEEDBACK_BACKEND_GRID),
    { id: 'default', label: 'default policy', grid: [DEFAULT_POLICY] },
    { id: 'one-shot', label: 'default policy, no memory', grid: [{ ...DEFAULT_POLICY, name: 'default policy, no memory', oneShot: true }] },
    { id: 'clairvoyant', label: 'clairvoyant bound', grid: [{ kind: 'clairvoyant', name: 'clairvoyant bound' }] },
  ];
}

/** The factors of a policy as they would be written in the YAML config, e.g. `aggressiveness: 2, limitingFactor: 4 (average)`. */
export function describeFactors(policy: Policy): string {
  if (policy.kind !== 'haproxy' || policy.weighting === undefined) return '—';
  const factors = Object.entries(policy.weighting)
    .filter(([k]) => k !== 'function')
    .map(([k, v]) => `${k} ${v}`);
  for (const [k, v] of Object.entries(policy.backend ?? {})) {
    if (v !== null && typeof v === 'object') for (const [ik, iv] of Object.entries(v)) factors.push(`${k}.${ik} ${String(iv)}`);
    else factors.push(`${k} ${String(v)}`);
  }
  if (factors.length === 0) return 'shipped defaults';
  return factors.join(', ');
}
