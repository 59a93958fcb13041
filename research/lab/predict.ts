import { meanFigures, type MeanFigures } from './contest.js';
import { figures } from './metrics.js';
import { steadyScenario, type LabSetup, type Scenario } from './setup.js';
import { simulate, type Policy, type WeightingSpec } from './simulator.js';
import { generateTraffic } from './traffic.js';

/**
 * The simulator's prediction for a given setup, e.g. the real lab's (a few servers, a few minutes,
 * a weighter every few seconds): steady traffic, leastconn alone and leastconn with a weighting,
 * on the same traffic, averaged over seeds.
 */

export interface PredictOptions {
  /** Seconds before the measured window (the weighter already runs). */
  readonly warmupSeconds: number;
  readonly measureSeconds: number;
  readonly seeds: readonly number[];
}

export interface Prediction {
  readonly policy: Policy;
  readonly figures: MeanFigures;
}

export function predictionScenario(setup: LabSetup, options: Pick<PredictOptions, 'warmupSeconds' | 'measureSeconds'>): Scenario {
  const end = options.warmupSeconds + options.measureSeconds;
  return { ...steadyScenario(setup), name: 'prediction', title: 'prediction (steady)', durationSeconds: end, measureFrom: options.warmupSeconds, measureTo: end };
}

export function predict(setup: LabSetup, weighting: WeightingSpec, options: PredictOptions): Prediction[] {
  const scenario = predictionScenario(setup, options);
  const policies: Policy[] = [
    { kind: 'haproxy', name: 'leastconn', algorithm: 'leastconn' },
    { kind: 'haproxy', name: `leastconn + ${weighting.function}`, algorithm: 'leastconn', weighting },
    { kind: 'clairvoyant', name: 'clairvoyant bound' },
  ];
  const traffic = new Map(options.seeds.map((seed) => [seed, generateTraffic(setup, scenario, seed)]));
  return policies.map((policy) => ({
    policy,
    figures: meanFigures(options.seeds.map((seed) => figures(simulate(setup, scenario, policy, seed, { traffic: traffic.get(seed) }), scenario.measureFrom, scenario.measureTo))),
  }));
}
