import { figures, type Figures } from './metrics.js';
import type { Contender } from './policies.js';
import type { LabSetup, Scenario } from './setup.js';
import { simulate, type Policy } from './simulator.js';
import { generateTraffic, type Traffic } from './traffic.js';
import { runJobs } from './worker-pool.js';

/**
 * The fair contest: each contender's factors are chosen by a grid search on training seeds (steady
 * and shock scenarios, the two the targets are about), then every contender runs at its
 * chosen factors on evaluation seeds it was never tuned on, over every scenario.
 *
 * The work is a list of independent, deterministic jobs (plain data in, plain data out), so it can
 * run on worker threads without changing any figure.
 */

/** Figures averaged over seeds. */
export type MeanFigures = Figures;

export interface RankedSetting {
  readonly policy: Policy;
  readonly score: number;
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

export interface Baselines {
  readonly leastconn: { readonly steady: MeanFigures; readonly shock: MeanFigures };
  readonly clairvoyant: { readonly steady: MeanFigures; readonly shock: MeanFigures };
}

export interface ContestResult {
  readonly results: readonly ContenderResult[];
  /** leastconn alone and the bound on the training seeds, which training scores are relative to. */
  readonly training: Baselines;
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

function mean(values: readonly number[]): number {
  return values.length === 0 ? NaN : values.reduce((a, b) => a + b, 0) / values.length;
}

export function meanFigures(list: readonly Figures[]): MeanFigures {
  const shocks = list.map((f) => f.shockMinutes).filter((v): v is number => v !== null);
  return {
    p50: mean(list.map((f) => f.p50)),
    p95: mean(list.map((f) => f.p95)),
    max: mean(list.map((f) => f.max)),
    mean: mean(list.map((f) => f.mean)),
    shockMinutes: shocks.length === 0 ? null : mean(shocks),
    oscillation: mean(list.map((f) => f.oscillation)),
    writesPerServerHour: mean(list.map((f) => f.writesPerServerHour)),
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

/**
 * Training score: the mean of the steady p95 gap closed and the shock gap closed, against
 * leastconn and the clairvoyant bound on the same training seeds. Settings within 0.01 of the best
 * score count as equal and the one whose weights change direction least wins: the seed's functions
 * get the benefit of the doubt on oscillation too.
 */
export function score(steady: MeanFigures, shock: MeanFigures, leastconn: { steady: MeanFigures; shock: MeanFigures }, clairvoyant: { steady: MeanFigures; shock: MeanFigures }): number {
  const a = gapClosed(leastconn.steady.p95, clairvoyant.steady.p95, steady.p95) ?? 0;
  const b = gapClosed(leastconn.shock.shockMinutes ?? 0, clairvoyant.shock.shockMinutes ?? 0, shock.shockMinutes ?? 0) ?? 0;
  return (a + b) / 2;
}

export const SCORE_TIE = 0.01;
/** How many of the best settings the report lists per contender. */
export const RANKING_SIZE = 5;

export async function runContest(options: ContestOptions): Promise<ContestResult> {
  const { setup, scenarios, trainingSeeds, evaluationSeeds } = options;
  const workers = options.workers ?? 1;
  const steady = scenarios.find((s) => s.name === 'steady');
  const shock = scenarios.find((s) => s.name === 'shock');
  if (steady === undefined || shock === undefined) throw new Error('the contest needs the steady and shock scenarios');
  const baselineOf = (id: string): Policy => {
    const policy = options.contenders.find((c) => c.id === id)?.grid[0];
    if (policy === undefined) throw new Error(`the contest needs the ${id} contender`);
    return policy;
  };

  // Training: the two baselines, then every setting of every grid.
  const trainingPolicies = [baselineOf('leastconn'), baselineOf('clairvoyant'), ...options.contenders.flatMap((c) => (c.grid.length > 1 ? c.grid : []))];
  const trained = await runJobs<Job>(
    trainingPolicies.map((policy) => ({ kind: 'train', setup, scenarios: [steady, shock], policy, seeds: trainingSeeds })),
    workers,
    executeJob,
  );
  const pair = (i: number): { steady: MeanFigures; shock: MeanFigures } => {
    const [st, sh] = trained[i] ?? [];
    if (st === undefined || sh === undefined) throw new Error(`training job ${i} returned no figures`);
    return { steady: st, shock: sh };
  };
  const leastconn = pair(0);
  const clairvoyant = pair(1);

  let offset = 2;
  const tuned = options.contenders.map((contender) => {
    let chosen = contender.grid[0];
    if (chosen === undefined) throw new Error(`contender ${contender.id} has an empty grid`);
    let trainingScore: number | null = null;
    let ranking: RankedSetting[] = [];
    if (contender.grid.length > 1) {
      const scored = contender.grid.map((policy, i): RankedSetting => {
        const { steady: st, shock: sh } = pair(offset + i);
        return { policy, score: score(st, sh, leastconn, clairvoyant), steadyP95: st.p95, shockMinutes: sh.shockMinutes, oscillation: st.oscillation };
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
  const simulations = trainingPolicies.length * 2 * trainingSeeds.length + jobs.length * policies.length;
  return { results: tuned, training: { leastconn, clairvoyant }, trainingSeeds, evaluationSeeds, simulations };
}
