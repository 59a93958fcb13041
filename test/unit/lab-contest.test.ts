import { describe, expect, it } from 'vitest';
import { executeJob, runContest, SCORE_TIE, type Job } from '../../research/lab/contest.js';
import { cartesian, type Contender } from '../../research/lab/policies.js';
import { allScenarios, DEFAULT_SETUP, shockScenario, steadyScenario, type LabSetup } from '../../research/lab/setup.js';
import type { Policy } from '../../research/lab/simulator.js';
import { runJobs } from '../../research/lab/worker-pool.js';

/** Few, short-lived connections: every scenario simulates in milliseconds. */
const TINY: LabSetup = { ...DEFAULT_SETUP, servers: 4, arrivalsPerSecond: 0.2, meanLifetimeSeconds: 600 };

const LEASTCONN: Policy = { kind: 'haproxy', name: 'leastconn', algorithm: 'leastconn' };
const CLAIRVOYANT: Policy = { kind: 'clairvoyant', name: 'clairvoyant bound' };

describe('contest', () => {
  it('gets the same figures, in job order, on worker threads as in this thread', async () => {
    const scenarios = [steadyScenario(TINY), shockScenario(TINY)];
    const policies: Policy[] = [LEASTCONN, CLAIRVOYANT, { kind: 'haproxy', name: 'fb', algorithm: 'leastconn', weighting: { function: 'feedback' } }];
    const jobs = policies.map((policy): Job => ({
      kind: 'train',
      setup: TINY,
      scenarios,
      policy,
      seeds: [1, 2],
    }));
    const here = await runJobs(jobs, 1, executeJob);
    const threads = await runJobs(jobs, 2, executeJob);
    expect(threads).toEqual(here);
    expect(here[0]?.[0]?.p95).not.toEqual(here[1]?.[0]?.p95);
  });

  it('chooses each setting by training score and evaluates every contender on every scenario', async () => {
    const grid: Policy[] = cartesian({ limitingFactor: [2, 8], aggressiveness: [0.5, 3] }).map((factors) => ({
      kind: 'haproxy',
      name: 'lp',
      algorithm: 'leastconn',
      weighting: { function: 'limited-proportions', ...factors },
    }));
    const contenders: Contender[] = [
      { id: 'leastconn', label: 'leastconn', grid: [LEASTCONN] },
      { id: 'limited-proportions', label: 'lp', grid },
      { id: 'clairvoyant', label: 'clairvoyant bound', grid: [CLAIRVOYANT] },
    ];
    const scenarios = allScenarios(TINY);
    const contest = await runContest({ setup: TINY, scenarios, contenders, trainingSeeds: [1], evaluationSeeds: [11, 12], workers: 1 });
    const lp = contest.results.find((r) => r.contender.id === 'limited-proportions');
    expect(lp?.ranking.map((r) => r.policy)).toContain(lp?.chosen);
    const best = Math.max(...(lp?.ranking ?? []).map((r) => r.score));
    expect(lp?.trainingScore).toBeGreaterThanOrEqual(best - SCORE_TIE);
    for (const r of contest.results) {
      expect([...r.evaluation.keys()]).toEqual(scenarios.map((s) => s.name));
      expect(r.perSeed.get('steady')).toHaveLength(2);
    }
    // Gap closed is measured between these two: leastconn alone and the bound must differ.
    const p95 = (id: string) => contest.results.find((r) => r.contender.id === id)?.evaluation.get('steady')?.p95 ?? NaN;
    expect(p95('clairvoyant')).toBeLessThan(p95('leastconn'));
  });
});
