import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { availableParallelism, tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { runContest } from './contest.js';
import { figures } from './metrics.js';
import { contenders } from './policies.js';
import { describeSetup, panelOf, renderMarkdown, summarise } from './report.js';
import { allScenarios, DEFAULT_SETUP, setupWithOverrides, shockScenario, type LabSetup } from './setup.js';
import { predict } from './predict.js';
import { simulate, type WeightingSpec } from './simulator.js';
import { renderChart } from './svg-chart.js';

/**
 * `npm run lab`: the whole simulated contest (grid search on training seeds, evaluation on other
 * seeds, every scenario), printed as a table and written to test/lab/results/contest.md and
 * convergence.svg.
 *
 * Options:
 *   --setup <file.json>  override parts of the setup (same shape as DEFAULT_SETUP; `metrics` and
 *                        `rate` are merged key by key), e.g. to predict the real lab's setup
 *   --out <dir>          where to write the results (default: test/lab/results for the full
 *                        default run, a new temporary directory for --quick or --setup runs)
 *   --quick              fewer seeds, for a smoke run
 *   --workers <n>        worker threads (default: 2, or 1 on a single core); the results do not
 *                        depend on it
 *   --predict <json>     no contest: predict steady traffic under leastconn alone, leastconn with
 *                        this weighting (e.g. '{"function":"feedback","gain":0.25,"deadband":0.02}')
 *                        and the clairvoyant bound, for the setup; prints JSON. With
 *                        --warmup <s> (default 300), --measure <s> (default 600), --seeds <n> (default 8).
 */

const OURS = 'leastconn + feedback (ours)';

function loadSetup(path: string | undefined): LabSetup {
  if (path === undefined) return DEFAULT_SETUP;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (cause) {
    throw new Error(`cannot read the lab setup ${path}`, { cause });
  }
  return setupWithOverrides(raw, path);
}

function parseWeighting(text: string): WeightingSpec {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (cause) {
    throw new Error(`--predict expects a JSON weighting such as {"function":"feedback"}`, { cause });
  }
  // Validated for real by parseConfig when the policy's backend is built; here only its shape.
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new Error('--predict expects a JSON object');
  const entries = Object.entries(raw).filter((e): e is [string, string | number] => typeof e[1] === 'string' || typeof e[1] === 'number');
  const fn = entries.find(([k]) => k === 'function')?.[1];
  if (typeof fn !== 'string') throw new Error('--predict: the weighting needs a "function"');
  return { ...Object.fromEntries(entries), function: fn };
}

function runPrediction(setup: LabSetup, weightingText: string, warmupSeconds: number, measureSeconds: number, seedCount: number): void {
  if (!(warmupSeconds >= 0 && measureSeconds > 0 && Number.isInteger(seedCount) && seedCount > 0)) {
    throw new Error('--warmup must be >= 0, --measure > 0 and --seeds a positive integer');
  }
  const seeds = Array.from({ length: seedCount }, (_, i) => 1001 + i);
  const predictions = predict(setup, parseWeighting(weightingText), { warmupSeconds, measureSeconds, seeds });
  console.log(
    JSON.stringify(
      {
        setup,
        warmupSeconds,
        measureSeconds,
        seeds,
        predictions: predictions.map((p) => ({ policy: p.policy.name, weighting: p.policy.kind === 'haproxy' ? (p.policy.weighting ?? null) : null, ...p.figures })),
      },
      null,
      2,
    ),
  );
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      setup: { type: 'string' },
      out: { type: 'string' },
      quick: { type: 'boolean', default: false },
      predict: { type: 'string' },
      warmup: { type: 'string', default: '300' },
      measure: { type: 'string', default: '600' },
      seeds: { type: 'string', default: '8' },
      workers: { type: 'string', default: String(Math.min(2, availableParallelism())) },
    },
  });
  const workers = Number(values.workers);
  if (!(Number.isInteger(workers) && workers >= 1)) throw new Error('--workers must be a positive integer');
  if (values.predict !== undefined) {
    runPrediction(loadSetup(values.setup), values.predict, Number(values.warmup), Number(values.measure), Number(values.seeds));
    return;
  }
  const started = Date.now();
  const here = dirname(fileURLToPath(import.meta.url));
  // Only the full default run writes the committed results; a quick or custom run goes to a
  // temporary directory unless told otherwise.
  const committed = !values.quick && values.setup === undefined;
  const outDir = resolve(values.out ?? (committed ? join(here, 'results') : mkdtempSync(join(tmpdir(), 'lab-'))));
  const setup = loadSetup(values.setup);
  const scenarios = allScenarios(setup);
  const trainingSeeds = values.quick ? [1, 2] : [1, 2, 3, 4, 5, 6];
  const evaluationSeeds = values.quick ? [101, 102] : Array.from({ length: 20 }, (_, i) => 101 + i);

  console.log(`Convergence lab: ${describeSetup(setup)}`);
  const contest = await runContest({
    workers,
    setup,
    scenarios,
    contenders: contenders(),
    trainingSeeds,
    evaluationSeeds,
    onProgress: (m) => console.log(`  grid search · ${m}`),
  });
  const markdown = renderMarkdown(contest, setup, scenarios, OURS);

  // The chart: the shock scenario on the first evaluation seed, every contender at its factors.
  const shock = shockScenario(setup);
  const chartSeed = evaluationSeeds[0] ?? 101;
  const summary = summarise(contest);
  const panels = contest.results.map((r, i) => {
    const result = simulate(setup, shock, r.chosen, chartSeed);
    const f = figures(result, shock.measureFrom, shock.measureTo);
    const gap = summary[i]?.steadyGap;
    const subtitle = `this run: p95 ${f.p95.toFixed(2)}, ${f.shockMinutes?.toFixed(0) ?? '—'} min > 1.2x · all seeds: steady gap closed ${gap === null || gap === undefined ? '—' : `${Math.round(gap * 100)}%`}`;
    return panelOf(r.contender.label, subtitle, result, shock.measureFrom - 1800, shock.measureTo, 60, shock.measureFrom);
  });
  const svg = renderChart({
    title: 'Load per server around a shock, by policy (simulated)',
    caption: `${setup.servers} servers, heavy-tailed long-lived connections; two ${setup.rate.max} points/s clients connect at minute 0 (seed ${chartSeed})`,
    panels,
    columns: 2,
    marker: { x: 0, label: 'shock' },
    xLabel: 'minutes from the shock',
    yLabel: 'points/s (1 min mean)',
  });

  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'contest.md'), `${markdown}\n![Load per server around a shock, by policy](convergence.svg)\n`);
  writeFileSync(join(outDir, 'convergence.svg'), svg);
  console.log('');
  console.log(markdown);
  console.log(`Wrote ${join(outDir, 'contest.md')} and ${join(outDir, 'convergence.svg')} (${contest.simulations} simulations in ${((Date.now() - started) / 1000).toFixed(1)} s)`);
}

await main();
