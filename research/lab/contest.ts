import { figures, mean, type Figures } from './metrics.js';
import type { Contender } from './policies.js';
import type { LabSetup, Scenario } from './setup.js';
import { simulate, type Policy } from './simulator.js';
import { generateTraffic, type Traffic } from './traffic.js';
import { runJobs } from './worker-pool.js';

/**
 * The fair contest: each contender's factors are chosen by a grid search on training seeds over
 * the training scenarios (by default steady and shock), then every contender runs at its chosen
 * factors on evaluation seeds it was never tuned on, over every scenario.
 *
 * The work is a list of independent, deterministic jobs (plain data in, plain data out), so it can
 * run on worker threads without changing any figure.
 */

/** Figures averaged over seeds. */
export type MeanFigures = Figures;

export interface RankedSetting {
  readonly policy: Policy;
  readonly score: number;
  /** Gap closed on each training scenario, in training-scenario order. */
  readonly gaps: readonly (number | null)[];
  readonly steadyP95: number;
  readonly shockMinutes: number | null;
  readonly oscillation: number;
}

export interface ContenderResult {
  readonly contender: Contender;
  readonly chosen: Policy;
  /** Training score of the chosen setting (null for contenders without a grid). */
  readonly trainingScore: number | null;
  /** The best settings of the grid search, best first, with their training figures. */
  readonly ranking: readonly RankedSetting[];
  readonly evaluation: ReadonlyMap<string, MeanFigures>;
  /** The figures of each evaluation seed, in seed order. */
  readonly perSeed: ReadonlyMap<string, readonly Figures[]>;
}

/** Mean figures per training scenario, by scenario name. */
export type ScenarioFigures = ReadonlyMap<string, MeanFigures>;

export interface Baselines {
  readonly leastconn: ScenarioFigures;
  readonly clairvoyant: ScenarioFigures;
}

export interface ContestResult {
  readonly results: readonly ContenderResult[];
  /** leastconn alone and the bound on the training seeds, which training scores are relative to. */
  readonly training: Baselines;
  readonly trainingScenarios: readonly string[];
  readonly trainingSeeds: readonly number[];
  readonly evaluationSeeds: readonly number[];
  readonly simulations: number;
}

export interface ContestOptions {
  readonly setup: LabSetup;
  readonly scenarios: readonly Scenario[];
  readonly contenders: readonly Contender[];
  readonly trainingSeeds: readonly number[];
  readonly evaluationSeeds: readonly number[];
  /** Names of the scenarios the grid search scores on (default: steady and shock). */
  readonly trainingScenarios?: readonly string[];
  /** Worker threads to spread the simulations over (1 = in this thread). */
  readonly workers?: number;
  /** Called after each contender's grid search, for progress output. */
  readonly onProgress?: (message: string) => void;
}

/** One unit of work: plain data, so that it can cross to a worker thread. */
export type Job =
  | { readonly kind: 'train'; readonly setup: LabSetup; readonly scenarios: readonly Scenario[]; readonly policy: Policy; readonly seeds: readonly number[] }
  | { readonly kind: 'evaluate'; readonly setup: LabSetup; readonly scenario: Scenario; readonly seed: number; readonly policies: readonly Policy[] };

/** train: mean figures per scenario (in job order); evaluate: figures per policy (in job order). */
export type JobResult = readonly Figures[];

/** Gap closed between leastconn alone (0) and the clairvoyant bound (1); null when there is no gap. */
export function gapClosed(leastconn: number, clairvoyant: number, value: number): number | null {
  const gap = leastconn - clairvoyant;
  if (!(Math.abs(gap) > 1e-9) || !Number.isFinite(value)) return null;
  return (leastconn - value) / gap;
}

export function meanFigures(list: readonly Figures[]): MeanFigures {
  const shocks = list.map((f) => f.shockMinutes).filter((v): v is number => v !== null);
  const sinkholes = list.map((f) => f.sinkholeShare).filter((v): v is number => v !== null);
  const spreads = list.map((f) => f.shockServers).filter((v): v is number => v !== null);
  return {
    p50: mean(list.map((f) => f.p50)),
    p95: mean(list.map((f) => f.p95)),
    max: mean(list.map((f) => f.max)),
    mean: mean(list.map((f) => f.mean)),
    shockMinutes: shocks.length === 0 ? null : mean(shocks),
    oscillation: mean(list.map((f) => f.oscillation)),
    writesPerServerHour: mean(list.map((f) => f.writesPerServerHour)),
    sinkholeShare: sinkholes.length === 0 ? null : mean(sinkholes),
    shockServers: spreads.length === 0 ? null : mean(spreads),
  };
}

/**
 * Training traffic is replayed for every setting of every grid, so it is kept (per thread); the
 * evaluation draws each run's clients once for all contenders and lets them go.
 */
const trainingTraffic = new Map<string, Traffic>();

function cachedTraffic(setup: LabSetup, scenario: Scenario, seed: number): Traffic {
  const key = `${JSON.stringify(setup)}/${scenario.name}/${seed}`;
  let t = trainingTraffic.get(key);
  if (t === undefined) {
    t = generateTraffic(setup, scenario, seed);
    trainingTraffic.set(key, t);
  }
  return t;
}

export function executeJob(job: Job): JobResult {
  switch (job.kind) {
    case 'train':
      return job.scenarios.map((scenario) =>
        meanFigures(job.seeds.map((seed) => figures(simulate(job.setup, scenario, job.policy, seed, { traffic: cachedTraffic(job.setup, scenario, seed) }), scenario.measureFrom, scenario.measureTo))),
      );
    case 'evaluate': {
      const traffic = generateTraffic(job.setup, job.scenario, job.seed);
      return job.policies.map((policy) => figures(simulate(job.setup, job.scenario, policy, job.seed, { traffic }), job.scenario.measureFrom, job.scenario.measureTo));
    }
  }
}

/** The figure a scenario's gap closed is measured on. */
export function figureOf(scenario: Pick<Scenario, 'figure'>, f: Figures): number | null {
  return scenario.figure === 'shock' ? f.shockMinutes : f.p95;
}

/**
 * Training score: the mean over the training scenarios of the gap closed (p95 imbalance, or the
 * shock minutes for a shock scenario), against leastconn alone and the clairvoyant bound on the
 * same training seeds. Settings within 0.01 of the best score count as equal and the one whose
 * weights change direction least wins: the seed's functions get the benefit of the doubt on
 * oscillation too.
 */
export function score(gaps: readonly (number | null)[]): number {
  return gaps.length === 0 ? 0 : gaps.reduce<number>((a, g) => a + (g ?? 0), 0) / gaps.length;
}

export const SCORE_TIE = 0.01;
/** How many of the best settings the report lists per contender. */
const RANKING_SIZE = 5;

export async function runContest(options: ContestOptions): Promise<ContestResult> {
  const { setup, scenarios, trainingSeeds, evaluationSeeds } = options;
  const workers = options.workers ?? 1;
  const trainingNames = options.trainingScenarios ?? ['steady', 'shock'];
  const training = trainingNames.map((name) => {
    const scenario = scenarios.find((s) => s.name === name);
    if (scenario === undefined) throw new Error(`the contest trains on the ${name} scenario, which is not among the scenarios`);
    return scenario;
  });
  const baselineOf = (id: string): Policy => {
    const policy = options.contenders.find((c) => c.id === id)?.grid[0];
    if (policy === undefined) throw new Error(`the contest needs the ${id} contender`);
    return policy;
  };

  // Training: the two baselines, then every setting of every grid.
  const trainingPolicies = [baselineOf('leastconn'), baselineOf('clairvoyant'), ...options.contenders.flatMap((c) => (c.grid.length > 1 ? c.grid : []))];
  const trained = await runJobs<Job>(
    trainingPolicies.map((policy) => ({ kind: 'train', setup, scenarios: training, policy, seeds: trainingSeeds })),
    workers,
    executeJob,
  );
  const byScenario = (i: number): Map<string, MeanFigures> => {
    const list = trained[i] ?? [];
    if (list.length !== training.length) throw new Error(`training job ${i} returned ${list.length} figures for ${training.length} scenarios`);
    return new Map(training.map((s, k) => [s.name, list[k] as MeanFigures]));
  };
  const leastconn = byScenario(0);
  const clairvoyant = byScenario(1);
  const gapsOf = (mine: ReadonlyMap<string, MeanFigures>): (number | null)[] =>
    training.map((s) => {
      const [a, c, v] = [leastconn.get(s.name), clairvoyant.get(s.name), mine.get(s.name)].map((f) => (f === undefined ? null : figureOf(s, f)));
      return a === null || a === undefined || c === null || c === undefined || v === null || v === undefined ? null : gapClosed(a, c, v);
    });

  let offset = 2;
  const tuned = options.contenders.map((contender) => {
    let chosen = contender.grid[0];
    if (chosen === undefined) throw new Error(`contender ${contender.id} has an empty grid`);
    let trainingScore: number | null = null;
    let ranking: RankedSetting[] = [];
    if (contender.grid.length > 1) {
      const scored = contender.grid.map((policy, i): RankedSetting => {
        const mine = byScenario(offset + i);
        const gaps = gapsOf(mine);
        const st = mine.get('steady') ?? mine.get(training[0]?.name ?? '');
        return { policy, score: score(gaps), gaps, steadyP95: st?.p95 ?? NaN, shockMinutes: mine.get('shock')?.shockMinutes ?? null, oscillation: st?.oscillation ?? NaN };
      });
      offset += contender.grid.length;
      ranking = [...scored].sort((a, b) => b.score - a.score).slice(0, RANKING_SIZE);
      const best = Math.max(...scored.map((s) => s.score));
      const pick = scored.filter((s) => s.score >= best - SCORE_TIE).sort((a, b) => a.oscillation - b.oscillation)[0];
      if (pick === undefined) throw new Error(`no setting scored for ${contender.id}`);
      chosen = pick.policy;
      trainingScore = pick.score;
      if (!ranking.includes(pick)) ranking.push(pick);
      options.onProgress?.(`${contender.label}: ${contender.grid.length} settings tried, best training score ${(best * 100).toFixed(1)}%, chosen ${(pick.score * 100).toFixed(1)}%`);
    }
    return { contender, chosen, trainingScore, ranking, evaluation: new Map<string, MeanFigures>(), perSeed: new Map<string, Figures[]>() };
  });

  // Evaluation: one job per (scenario, seed), every contender on the same clients.
  const policies = tuned.map((t) => t.chosen);
  const jobs: Job[] = scenarios.flatMap((scenario) => evaluationSeeds.map((seed): Job => ({ kind: 'evaluate', setup, scenario, seed, policies })));
  const evaluated = await runJobs<Job>(jobs, workers, executeJob);
  scenarios.forEach((scenario, si) => {
    tuned.forEach((t, ci) => {
      const list = evaluationSeeds.map((_, ki) => {
        const f = evaluated[si * evaluationSeeds.length + ki]?.[ci];
        if (f === undefined) throw new Error(`no evaluation figures for ${t.contender.id} on ${scenario.name}`);
        return f;
      });
      t.evaluation.set(scenario.name, meanFigures(list));
      t.perSeed.set(scenario.name, list);
    });
  });
  const simulations = trainingPolicies.length * training.length * trainingSeeds.length + jobs.length * policies.length;
  return { results: tuned, training: { leastconn, clairvoyant }, trainingScenarios: trainingNames, trainingSeeds, evaluationSeeds, simulations };
}
