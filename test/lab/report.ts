import { gapClosed, type ContestResult, type ContenderResult, type MeanFigures } from './contest.js';
import { SHOCK_THRESHOLD, type Figures } from './metrics.js';
import { describeFactors } from './policies.js';
import { boundedParetoMean } from './random.js';
import type { LabSetup, Scenario } from './setup.js';
import type { SimResult } from './simulator.js';
import type { Panel } from './svg-chart.js';

/** Turns a contest into the Markdown table of `results/contest.md` and the chart's panels. */

/** The targets for our best policy. */
export const TARGETS = { steadyGap: 0.9, shockGap: 0.75, oscillationRatio: 0.5 } as const;

function pct(v: number | null): string {
  return v === null || !Number.isFinite(v) ? '—' : `${Math.round(v * 100)}%`;
}

function num(v: number | null, digits = 3): string {
  return v === null || !Number.isFinite(v) ? '—' : v.toFixed(digits);
}

function seedList(seeds: readonly number[]): string {
  return seeds.join(', ');
}

export interface Summary {
  readonly label: string;
  readonly factors: string;
  readonly steadyP95: number;
  readonly steadyGap: number | null;
  readonly shockMinutes: number | null;
  readonly shockGap: number | null;
  readonly oscillation: number;
  readonly p95OverClairvoyant: number;
}

function get(result: ContenderResult, scenario: string): MeanFigures {
  const f = result.evaluation.get(scenario);
  if (f === undefined) throw new Error(`no ${scenario} figures for ${result.contender.id}`);
  return f;
}

function byId(contest: ContestResult, id: string): ContenderResult {
  const r = contest.results.find((x) => x.contender.id === id);
  if (r === undefined) throw new Error(`no result for ${id}`);
  return r;
}

export function summarise(contest: ContestResult): Summary[] {
  const lc = byId(contest, 'leastconn');
  const cv = byId(contest, 'clairvoyant');
  const lcSteady = get(lc, 'steady').p95;
  const cvSteady = get(cv, 'steady').p95;
  const lcShock = get(lc, 'shock').shockMinutes ?? NaN;
  const cvShock = get(cv, 'shock').shockMinutes ?? NaN;
  return contest.results.map((r) => {
    const steady = get(r, 'steady');
    const shock = get(r, 'shock');
    return {
      label: r.contender.label,
      factors: describeFactors(r.chosen),
      steadyP95: steady.p95,
      steadyGap: gapClosed(lcSteady, cvSteady, steady.p95),
      shockMinutes: shock.shockMinutes,
      shockGap: shock.shockMinutes === null ? null : gapClosed(lcShock, cvShock, shock.shockMinutes),
      oscillation: steady.oscillation,
      p95OverClairvoyant: steady.p95 / cvSteady,
    };
  });
}

interface Spread {
  readonly min: number;
  readonly median: number;
  readonly max: number;
}

function spreadOf(values: readonly number[]): Spread | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = (sorted.length - 1) / 2;
  const median = ((sorted[Math.floor(mid)] ?? NaN) + (sorted[Math.ceil(mid)] ?? NaN)) / 2;
  return { min: sorted[0] ?? NaN, median, max: sorted[sorted.length - 1] ?? NaN };
}

/** The gaps closed by one contender seed by seed, each against leastconn and the bound on that seed. */
export function perSeedGaps(contest: ContestResult, label: string): { steady: Spread; shock: Spread } | null {
  const mine = contest.results.find((r) => r.contender.label === label);
  if (mine === undefined) return null;
  const lc = byId(contest, 'leastconn');
  const cv = byId(contest, 'clairvoyant');
  const gaps = (scenario: string, pick: (f: Figures) => number | null): number[] => {
    const m = mine.perSeed.get(scenario) ?? [];
    const l = lc.perSeed.get(scenario) ?? [];
    const c = cv.perSeed.get(scenario) ?? [];
    return m.flatMap((f, i) => {
      const [a, b, v] = [l[i], c[i], f].map((x) => (x === undefined ? null : pick(x)));
      const g = a === null || a === undefined || b === null || b === undefined || v === null || v === undefined ? null : gapClosed(a, b, v);
      return g === null ? [] : [g];
    });
  };
  const steady = spreadOf(gaps('steady', (f) => f.p95));
  const shock = spreadOf(gaps('shock', (f) => f.shockMinutes));
  return steady === null || shock === null ? null : { steady, shock };
}

export function describeSetup(setup: LabSetup): string {
  const meanRate = boundedParetoMean(setup.rate.min, setup.rate.max, setup.rate.alpha);
  const perServer = (setup.arrivalsPerSecond * setup.meanLifetimeSeconds * meanRate) / setup.servers;
  const m = setup.metrics;
  return [
    `${setup.servers} servers behind ${setup.loadBalancers} load balancer(s); Poisson arrivals at ${setup.arrivalsPerSecond.toFixed(3)}/s;`,
    `rates bounded Pareto ${setup.rate.min}..${setup.rate.max} points/s, α = ${setup.rate.alpha} (mean ${meanRate.toFixed(1)});`,
    `lifetimes exponential, mean ${(setup.meanLifetimeSeconds / 60).toFixed(0)} min (about ${Math.round(setup.arrivalsPerSecond * setup.meanLifetimeSeconds)} connections, ${Math.round(perServer)} points/s per server);`,
    `weighter every ${setup.weighterIntervalSeconds} s; Graphite ${m.resolutionSeconds} s resolution, a point visible ${m.delaySeconds} s after its bucket,`,
    `render window ${m.windowSeconds} s, noise ${m.noise}; initial weight ${setup.initialWeight}.`,
  ].join(' ');
}

export function renderMarkdown(contest: ContestResult, setup: LabSetup, scenarios: readonly Scenario[], ours: string): string {
  const lines: string[] = [];
  const summary = summarise(contest);
  lines.push('# Convergence lab: the contest');
  lines.push('');
  lines.push('Generated by `npm run lab` (`test/lab/run-lab.ts`); every number is reproducible from the seeds below.');
  lines.push('');
  lines.push(`**Setup.** ${describeSetup(setup)}`);
  lines.push('');
  lines.push(
    `**Fairness.** Each weighted policy's factors (and its aggregation, leading edge or window average) were chosen by a grid search on training seeds ${seedList(contest.trainingSeeds)} (steady + shock scenarios, score = mean of the two gaps closed, near-ties to the setting that oscillates least); every figure below is on evaluation seeds ${seedList(contest.evaluationSeeds)}, averaged.`,
  );
  lines.push('');
  lines.push('## Contest (evaluation seeds)');
  lines.push('');
  lines.push(
    `Imbalance = max server load / mean server load, one sample per 10 s Graphite bucket. Gap closed: leastconn alone = 0%, clairvoyant bound = 100%. Shock: minutes the servers hit by two ${setup.rate.max} points/s clients spend above ${SHOCK_THRESHOLD}x the mean in the hour after. Oscillation: direction changes of a server's weight per hour (steady).`,
  );
  lines.push('');
  lines.push('| policy | chosen factors | steady p95 | steady gap closed | shock: min above 1.2x | shock gap closed | oscillation /server/h | p95 / clairvoyant p95 |');
  lines.push('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const s of summary) {
    lines.push(`| ${s.label} | ${s.factors} | ${num(s.steadyP95)} | ${pct(s.steadyGap)} | ${num(s.shockMinutes, 1)} | ${pct(s.shockGap)} | ${num(s.oscillation, 1)} | ${num(s.p95OverClairvoyant)} |`);
  }
  lines.push('');
  const oursRow = summary.find((s) => s.label === ours);
  const lpRow = summary.find((s) => s.label.endsWith('limited-proportions'));
  if (oursRow !== undefined && lpRow !== undefined) {
    const ratio = lpRow.oscillation > 0 ? oursRow.oscillation / lpRow.oscillation : NaN;
    const mark = (ok: boolean): string => (ok ? 'met' : 'NOT met');
    lines.push('## Targets for our policy');
    lines.push('');
    lines.push(`- steady-state gap closed ${pct(oursRow.steadyGap)} (target ≥ ${pct(TARGETS.steadyGap)}): ${mark((oursRow.steadyGap ?? 0) >= TARGETS.steadyGap)}`);
    lines.push(`- shock gap closed ${pct(oursRow.shockGap)} (target ≥ ${pct(TARGETS.shockGap)}): ${mark((oursRow.shockGap ?? 0) >= TARGETS.shockGap)}`);
    lines.push(`- weight direction changes ${num(ratio, 2)}x those of tuned limited-proportions (target ≤ ${TARGETS.oscillationRatio}): ${mark(ratio <= TARGETS.oscillationRatio)}`);
    lines.push(`- p95 imbalance ${num(oursRow.p95OverClairvoyant)}x the clairvoyant bound's`);
    const oursResult = contest.results.find((r) => r.contender.label === ours);
    const chosen = oursResult?.ranking.find((r) => r.policy === oursResult.chosen);
    if (chosen !== undefined) {
      const t = contest.training;
      const steadyGap = gapClosed(t.leastconn.steady.p95, t.clairvoyant.steady.p95, chosen.steadyP95);
      const shockGap = chosen.shockMinutes === null ? null : gapClosed(t.leastconn.shock.shockMinutes ?? NaN, t.clairvoyant.shock.shockMinutes ?? NaN, chosen.shockMinutes);
      lines.push(`- on the training seeds (where its factors were chosen) the same setting closed ${pct(steadyGap)} of the steady gap and ${pct(shockGap)} of the shock gap`);
    }
    const spread = perSeedGaps(contest, ours);
    if (spread !== null) {
      lines.push(
        `- per evaluation seed, the steady gap closed ranges ${pct(spread.steady.min)}..${pct(spread.steady.max)} (median ${pct(spread.steady.median)}) and the shock gap closed ${pct(spread.shock.min)}..${pct(spread.shock.max)} (median ${pct(spread.shock.median)}): single runs are noisy, the averages above are what the targets are about`,
      );
    }
    lines.push('');
  }
  lines.push('## Grid search (training seeds)');
  lines.push('');
  lines.push('The best settings of each weighted policy, by training score (the chosen one is marked); the full grids are in `test/lab/policies.ts`.');
  lines.push('');
  lines.push('| policy | setting | training score | steady p95 | shock min | oscillation /server/h |');
  lines.push('| --- | --- | ---: | ---: | ---: | ---: |');
  for (const r of contest.results) {
    for (const s of r.ranking) {
      const chosen = s.policy === r.chosen ? ' (chosen)' : '';
      lines.push(`| ${r.contender.label} | ${describeFactors(s.policy)}${chosen} | ${pct(s.score)} | ${num(s.steadyP95)} | ${num(s.shockMinutes, 1)} | ${num(s.oscillation, 1)} |`);
    }
  }
  lines.push('');
  lines.push('## Every scenario (evaluation seeds)');
  lines.push('');
  lines.push('| scenario | policy | imbalance p50 | p95 | max | shock: min above 1.2x | weight direction changes /server/h | weight writes /server/h |');
  lines.push('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const scenario of scenarios) {
    for (const r of contest.results) {
      const f = get(r, scenario.name);
      lines.push(`| ${scenario.title} | ${r.contender.label} | ${num(f.p50)} | ${num(f.p95)} | ${num(f.max)} | ${num(f.shockMinutes, 1)} | ${num(f.oscillation, 1)} | ${num(f.writesPerServerHour, 1)} |`);
    }
  }
  lines.push('');
  lines.push('Scenarios: steady = 1 h to settle, 4 h measured; shock = the clients connect after 1 h, the hour after is measured; server added = one of the servers joins empty after 1 h, 2 h measured; server leaves = a server goes down after 1 h (its clients reconnect to the others) and comes back empty 30 min later, 2 h measured; daily ramp = arrivals from 0.4x to 1.6x the base and back over 24 h.');
  lines.push('');
  return `${lines.join('\n')}`;
}

/** Panels for the chart: per-server load averaged over `stepSeconds`, x in minutes relative to `origin`. */
export function panelOf(title: string, subtitle: string, result: SimResult, from: number, to: number, stepSeconds: number, origin: number): Panel {
  const n = result.servers.length;
  const x: number[] = [];
  const lines: number[][] = result.servers.map(() => []);
  for (let start = from; start < to - 1e-9; start += stepSeconds) {
    x.push((start + stepSeconds - origin) / 60);
    const sums = new Array<number>(n).fill(0);
    const counts = new Array<number>(n).fill(0);
    result.sampleTimes.forEach((time, k) => {
      if (time <= start || time > start + stepSeconds) return;
      for (let s = 0; s < n; s++) {
        const v = result.loads[k * n + s] ?? NaN;
        if (Number.isNaN(v)) continue;
        sums[s] = (sums[s] ?? 0) + v;
        counts[s] = (counts[s] ?? 0) + 1;
      }
    });
    lines.forEach((line, s) => line.push((counts[s] ?? 0) === 0 ? NaN : (sums[s] ?? 0) / (counts[s] ?? 1)));
  }
  return { title, subtitle, x, lines, emphasised: result.shock?.servers ?? [] };
}
