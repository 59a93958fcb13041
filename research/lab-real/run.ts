import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { LabInterrupted, runExperiment } from './experiment.js';
import { predictRealLab } from './predict.js';
import { renderMarkdown, renderTable, verdictOf } from './report.js';
import { FULL_LAB, QUICK_LAB, type RealLabSettings } from './settings.js';

/**
 * `npm run lab:real`: the real lab (real HAProxy, real Graphite, real long-lived TCP connections,
 * the real CLI weighter), leastconn alone against leastconn + the weighter on the same traffic,
 * with the simulator's prediction for the same setup beside it. Writes
 * research/lab-real/results/real-lab.md.
 *
 * Options:
 *   --quick        the 50-second demo (README quick start): prints weights before and after and the
 *                  imbalance falling; results are not written unless --out is given
 *   --seed N       another traffic seed (default 1)
 *   --out DIR      where to write real-lab.md (default research/lab-real/results for the full run)
 *   --dump FILE    also write the raw result (loads per bucket, weighter cycles, traffic) as JSON
 *   --config FILE  take the weighter's backend settings from this config instead of
 *                  infra/example-config.yaml
 */

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, '..', '..');
const PREDICTION_SEEDS = Array.from({ length: 20 }, (_, i) => 1001 + i);

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      seed: { type: 'string' },
      out: { type: 'string' },
      config: { type: 'string' },
      dump: { type: 'string' },
    },
  });
  const base: RealLabSettings = values.quick === true ? QUICK_LAB : FULL_LAB;
  const seed = values.seed === undefined ? base.seed : Number(values.seed);
  if (!Number.isInteger(seed) || seed < 0) throw new Error(`--seed must be a non-negative integer, got ${String(values.seed)}`);
  const settings: RealLabSettings = { ...base, seed };
  const outDir = values.out ?? (values.quick === true ? undefined : join(here, 'results'));

  const abort = new AbortController();
  const onSignal = (signal: string): void => {
    // A second Ctrl-C means now: the exit hooks still kill every child process.
    if (abort.signal.aborted) process.exit(130);
    console.error(`\n${signal}: stopping the lab (connections, weighter, HAProxy, sinks, Graphite)...`);
    abort.abort();
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));

  const started = Date.now();
  const command = `npm run lab:real${values.quick === true ? ' -- --quick' : ''}${values.seed === undefined ? '' : ` -- --seed ${seed}`}`;
  console.log(`Real lab (${values.quick === true ? 'quick' : 'full'}), seed ${seed}`);
  const result = await runExperiment({
    settings,
    repoRoot,
    examplePath: values.config === undefined ? join(repoRoot, 'infra', 'example-config.yaml') : resolve(values.config),
    progressEverySeconds: values.quick === true ? 100 : 300,
    onProgress: (line) => console.log(line),
    signal: abort.signal,
  });
  const prediction = predictRealLab(settings, result.example, result.reportDelaySeconds, result.traffic, PREDICTION_SEEDS);
  const wallSeconds = (Date.now() - started) / 1000;
  const verdict = verdictOf(result, prediction);
  console.log('');
  console.log(renderTable(result, prediction, verdict, { quick: values.quick === true }));
  if (values.dump !== undefined) writeFileSync(values.dump, JSON.stringify({ result, prediction, verdict }));
  if (outDir !== undefined) {
    mkdirSync(outDir, { recursive: true });
    const path = join(outDir, 'real-lab.md');
    writeFileSync(path, renderMarkdown(result, prediction, verdict, { command, wallSeconds }));
    console.log(`Wrote ${path}`);
  }
  console.log(`Total wall time ${wallSeconds.toFixed(0)} s.`);
  // The full run is a check of the issue's target; the quick demo is only a demo.
  return values.quick === true || verdict.targetMet ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof LabInterrupted) {
      console.error('Interrupted: every connection, process and temporary directory of the lab was stopped.');
      process.exitCode = 130;
      return;
    }
    console.error(`lab:real failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    process.exitCode = 2;
  },
);
