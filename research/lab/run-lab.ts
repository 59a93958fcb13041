import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { executeJob, figureOf, gapClosed, meanFigures, runContest, type Job, type MeanFigures } from './contest.js';
import { figures, type Figures } from './metrics.js';
import { contenders, DEFAULT_POLICY, TRAINING_SCENARIOS } from './policies.js';
import { describeSetup, num, panelOf, pct, renderMarkdown, summariseScenario, type SideTable } from './report.js';
import { allScenarios, DEFAULT_SETUP, fleetScenarios, setupWithOverrides, shockScenario, steadyScenario, type LabSetup, type Scenario } from './setup.js';
import { predict } from './predict.js';
import { simulate, type Policy, type WeightingSpec } from './simulator.js';
import { renderChart } from './svg-chart.js';
import { runJobs } from './worker-pool.js';

/**
 * `npm run lab`: the whole simulated contest (grid search on training seeds, evaluation on other
 * seeds, every scenario), printed as a table and written to research/lab/results/contest.md and
 * convergence.svg.
 *
 * Options:
 *   --setup <file.json>  override parts of the setup (same shape as DEFAULT_SETUP; `metrics` and
 *                        `rate` are merged key by key), e.g. to predict the real lab's setup
 *   --out <dir>          where to write the results (default: research/lab/results for the full
 *                        default run, a new temporary directory for --quick or --setup runs)
 *   --quick              fewer seeds, for a smoke run
 *   --workers <n>        worker threads (default 1: the machines this runs on are shared); the
 *                        results do not depend on it
 *   --predict <json>     no contest: predict steady traffic under leastconn alone, leastconn with
 *                        this weighting (e.g. '{"function":"feedback","gain":0.25,"deadband":0.02}')
 *                        and the clairvoyant bound, for the setup; prints JSON. With
 *                        --warmup <s> (default 300), --measure <s> (default 600), --seeds <n> (default 8).
 */

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

const ALONE: Policy = { kind: 'haproxy', name: 'leastconn alone' };
const BOUND: Policy = { kind: 'clairvoyant', name: 'clairvoyant bound' };

/** "101..108": the seeds a side table ran on. */
function seedRange(seeds: readonly number[]): string {
  return `${seeds[0] ?? ''}..${seeds.at(-1) ?? ''}`;
}

/** Gap closed per policy over the seeds (by the mean figures), each job one (scenario, seed). */
async function gaps(scenario: Scenario, policies: readonly Policy[], seeds: readonly number[], workers: number, setup: LabSetup): Promise<{ gap: (number | null)[]; oscillation: number[] }> {
  const jobs: Job[] = seeds.map((seed) => ({ kind: 'evaluate', setup, scenario, seed, policies: [ALONE, BOUND, ...policies] }));
  const results = await runJobs<Job>(jobs, workers, executeJob);
  const mean = (i: number): MeanFigures => meanFigures(results.map((r) => r[i]).filter((f): f is Figures => f !== undefined));
  const [a, c] = [figureOf(scenario, mean(0)), figureOf(scenario, mean(1))];
  return {
    gap: policies.map((_, i) => {
      const v = figureOf(scenario, mean(i + 2));
      return a === null || c === null || v === null ? null : gapClosed(a, c, v);
    }),
    oscillation: policies.map((_, i) => mean(i + 2).oscillation),
  };
}

/** Item 8 of issue 11: several load balancers, each planned from its own sessions or all from their sum. */
async function planningTable(setup: LabSetup, seeds: readonly number[], workers: number): Promise<SideTable> {
  const rows: string[][] = [];
  for (const lbs of [3, 10, 30]) {
    const multi: LabSetup = { ...setup, loadBalancers: lbs };
    for (const base of [steadyScenario(multi), shockScenario(multi)]) {
      const scenario: Scenario = { ...base, name: `${base.name}-${lbs}lb`, setup: multi };
      const policies: Policy[] = [
        { ...DEFAULT_POLICY, name: 'per load balancer', planning: 'per-lb' },
        { ...DEFAULT_POLICY, name: 'fleet-wide', planning: 'fleet' },
      ];
      const r = await gaps(scenario, policies, seeds, workers, multi);
      rows.push([`${base.title}, ${lbs} load balancers`, pct(r.gap[0]), pct(r.gap[1]), num(r.oscillation[0], 1), num(r.oscillation[1], 1)]);
    }
  }
  return {
    title: 'Several load balancers: per-load-balancer or fleet-wide plans',
    command: 'npm run lab',
    intro: `The default policy with every load balancer planned from its own sessions (what ships), against one plan from the sessions and counters summed over all load balancers, the same weights written to each (identical batches: one SSM command for the fleet). Evaluation seeds ${seedRange(seeds)}; arrivals spread evenly over the load balancers.`,
    header: ['scenario', 'gap closed, per load balancer', 'gap closed, fleet-wide', 'weight reversals /server/h, per load balancer', 'fleet-wide'],
    rows,
    outro:
      'Chosen: per load balancer. It balanced as well or better at every fleet size: each HAProxy fills its own deficits from its own counts, which identical weights cannot do when the load balancers hold different mixes. Fleet-wide plans reverse weights less and would make the SSM writes cheaper (one command instead of one per load balancer); they are not worth the balance.',
  };
}

/**
 * Why a shock seed can end above leastconn alone on p95: where the two shock clients land, over many
 * seeds (neither the contest's training nor its evaluation seeds: this only counts what happens).
 */
async function placementTable(setup: LabSetup, seeds: readonly number[], workers: number): Promise<SideTable> {
  const all = [...allScenarios(setup), ...fleetScenarios(setup)];
  const rows: string[][] = [];
  for (const name of ['shock', 'long-lifetimes-shock']) {
    const scenario = all.find((s) => s.name === name);
    if (scenario === undefined) throw new Error(`no ${name} scenario`);
    const jobs: Job[] = seeds.map((seed) => ({ kind: 'evaluate', setup, scenario, seed, policies: [ALONE, DEFAULT_POLICY] }));
    const results = await runJobs<Job>(jobs, workers, executeJob);
    let aloneTogether = 0;
    let together = 0;
    let worse = 0;
    let worseTogether = 0;
    for (const [alone, mine] of results) {
      if (alone === undefined || mine === undefined) throw new Error(`no figures for ${name}`);
      if (alone.shockServers === 1) aloneTogether++;
      if (mine.shockServers === 1) together++;
      if (mine.p95 > alone.p95) {
        worse++;
        if (mine.shockServers === 1) worseTogether++;
      }
    }
    rows.push([scenario.title, String(seeds.length), String(aloneTogether), String(together), String(worse), String(worseTogether)]);
  }
  return {
    title: 'Shocks: where the two clients land',
    command: 'npm run lab',
    intro: `The shock scenarios on seeds ${seedRange(seeds)}, which neither the grid search nor the evaluation uses: how often both shock clients (connecting at the same instant) land on one server, under leastconn alone and under the default policy, and how often the default policy's p95 over the hour after ends above leastconn alone's.`,
    header: ['scenario', 'seeds', 'both on one server: leastconn alone', 'default policy', "default policy's p95 above leastconn alone's", 'of which both on one server'],
    rows,
    outro:
      "Under leastconn a weight is a target count, so a server below its target takes every new connection until it reaches it: two clients arriving together both go to it, where leastconn alone, whose counts stay within one of each other, mostly splits them. With 2-hour connections a deficit lasts (a cycle brings each server about 2 new connections), so that happens more often than with 30-minute ones. The other seeds that end above leastconn alone are ones where leastconn alone happened to put the clients on servers below the mean, which no weighter can aim for: it never knows a connection's rate before it lands. Filling a deficit is what closes the gap; any deficit makes a run of connections to one server.",
  };
}

/** Why short lifetimes are hard: what the default policy and a bound acting on exact loads close, by weighter interval. */
async function intervalTable(setup: LabSetup, seeds: readonly number[], workers: number): Promise<SideTable> {
  const short = fleetScenarios(setup).find((s) => s.name === 'short-lifetimes');
  if (short?.setup === undefined) throw new Error('no short-lifetimes scenario');
  const rows: string[][] = [];
  for (const interval of [60, 30, 15]) {
    const variant: LabSetup = { ...short.setup, weighterIntervalSeconds: interval };
    const r = await gaps({ ...short, setup: variant }, [DEFAULT_POLICY, { ...DEFAULT_POLICY, name: 'exact loads', view: 'exact-now' }, { kind: 'clairvoyant', name: 'refreshed bound', refreshSeconds: interval }], seeds, workers, variant);
    rows.push([`every ${interval} s`, pct(r.gap[0]), pct(r.gap[1]), pct(r.gap[2])]);
  }
  return {
    title: 'Short lifetimes: what the weighter interval allows',
    command: 'npm run lab',
    intro: `The short-lifetimes scenario (3-minute connections) with the weighter at other intervals, seeds ${seedRange(seeds)}: the default policy on Graphite's points (10 s resolution, 10 s late; the first row is the scenario above, on these seeds); the default policy told each server's exact load at each cycle instead; and the bound refreshed at each cycle: it places every connection itself, knowing the exact loads at the last cycle and, since then, what HAProxy knows live (how many connections each server took and lost), never a new connection's rate.`,
    header: ['weighter', 'default policy', 'default policy, exact loads at each cycle', 'bound refreshed at each cycle'],
    rows,
    outro:
      'The last column is what perfect information at that interval allows a placement that needs no weights at all: the target of 80% is out of its reach too at 60 s. What is lost at 60 s is lost between cycles: a heavy client lands where the last cycle\'s picture sends it, and lives a third of its life before the next one.',
  };
}

/** Why slow metrics are hard: the default policy with and without memory, by Graphite pipeline and by what it is told. */
async function pipelineTable(setup: LabSetup, seeds: readonly number[], workers: number): Promise<SideTable> {
  const slow = fleetScenarios(setup).find((s) => s.name === 'slow-metrics');
  if (slow?.setup === undefined) throw new Error('no slow-metrics scenario');
  const rows: string[][] = [];
  const both = (name: string, extra: Partial<Extract<Policy, { kind: 'haproxy' }>> = {}): Policy[] => [
    { ...DEFAULT_POLICY, ...extra, name },
    { ...DEFAULT_POLICY, ...extra, name: `${name}, no memory`, oneShot: true },
  ];
  for (const [resolution, delay] of [
    [300, 60],
    [300, 0],
    [60, 60],
    [60, 10],
    [10, 10],
  ] as const) {
    const variant: LabSetup = { ...setup, metrics: { ...setup.metrics, resolutionSeconds: resolution, delaySeconds: delay } };
    const r = await gaps({ ...slow, setup: variant }, both('default'), seeds, workers, variant);
    rows.push([`${resolution} s resolution, ${delay} s delay`, pct(r.gap[0]), pct(r.gap[1])]);
  }
  for (const [label, view] of [
    ['300 s resolution, 60 s delay, but each point the exact load at its end', 'exact-at-point-end'],
    ['the exact load at each cycle', 'exact-now'],
  ] as const) {
    const r = await gaps(slow, both(view, { view }), seeds, workers, slow.setup);
    rows.push([label, pct(r.gap[0]), pct(r.gap[1])]);
  }
  return {
    title: 'Slow metrics: what the metrics allow',
    command: 'npm run lab',
    intro: `The default policy on the slow-metrics scenario's traffic with other Graphite pipelines, or told other loads than Graphite's, with its memory (as \`run\` and a warm Lambda keep it: the load estimated now from the connections HAProxy placed since the measured span) and without (a one-shot apply), seeds ${seedRange(seeds)}. The first row is the scenario above, on these seeds.`,
    header: ['Graphite', 'gap closed', 'gap closed without memory'],
    rows,
    outro:
      "The memory matters where the points are older than a cycle (the first row); elsewhere the two columns differ by less than the spread between seeds. What limits the first row is the age of the newest point, not its averaging: told the exact load at each point's end, the policy closes no more; told the exact load now, it closes more than on the baseline. Between a point and now HAProxy tells how many connections each server took and lost (`stot`, `scur`), which gives the load estimate its expected value, not the rates of the heavy clients among them; and nothing live about a long-lived TCP connection's traffic: a server's `bin` counter grows only when a connection ends (measured on HAProxy 2.6.12, see docs/design.md).",
  };
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
      workers: { type: 'string', default: '1' },
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
  const scenarios = [...allScenarios(setup), ...fleetScenarios(setup)];
  const trainingSeeds = values.quick ? [1] : [1, 2, 3, 4, 5, 6];
  const evaluationSeeds = values.quick ? [101, 102] : Array.from({ length: 20 }, (_, i) => 101 + i);
  const sideSeeds = evaluationSeeds.slice(0, values.quick ? 2 : 8);
  const command = `npm run lab${values.quick ? ' -- --quick' : ''}${values.setup === undefined ? '' : ` -- --setup ${values.setup}`}`;

  console.log(`Convergence lab: ${describeSetup(setup)}`);
  const contest = await runContest({
    workers,
    setup,
    scenarios,
    contenders: contenders(),
    trainingSeeds,
    evaluationSeeds,
    trainingScenarios: TRAINING_SCENARIOS,
    onProgress: (m) => console.log(`  grid search · ${m}`),
  });
  console.log('  side experiments: several load balancers, weighter intervals...');
  const placementSeeds = values.quick ? [201, 202] : Array.from({ length: 200 }, (_, i) => 201 + i);
  const sides = [
    await planningTable(setup, sideSeeds, workers),
    await intervalTable(setup, sideSeeds, workers),
    await pipelineTable(setup, sideSeeds, workers),
    await placementTable(setup, placementSeeds, workers),
  ];
  const markdown = renderMarkdown(contest, setup, scenarios, sides, command);

  // The chart: the shock scenario on the first evaluation seed, four contenders at their factors.
  const shock = shockScenario(setup);
  const chartSeed = evaluationSeeds[0] ?? 101;
  const panels = contest.results
    .filter((r) => ['leastconn', 'limited-proportions', 'default', 'clairvoyant'].includes(r.contender.id))
    .map((r) => {
      const result = simulate(setup, shock, r.chosen, chartSeed);
      const f = figures(result, shock.measureFrom, shock.measureTo);
      const gap = r.contender.id === 'leastconn' || r.contender.id === 'clairvoyant' ? null : summariseScenario(contest, r.contender.id, steadyScenario(setup)).gap;
      const subtitle = `this run: p95 ${f.p95.toFixed(2)}, ${f.shockMinutes?.toFixed(0) ?? '—'} min > 1.2x${gap === null ? '' : ` · all seeds: steady gap closed ${pct(gap)}`}`;
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
  console.log(`Wrote ${join(outDir, 'contest.md')} and ${join(outDir, 'convergence.svg')} (${contest.simulations} contest simulations in ${((Date.now() - started) / 1000).toFixed(1)} s)`);
}

await main();
