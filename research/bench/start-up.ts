/**
 * Start-up benchmark (issue 10, "Start fast"): every figure a ratio to a bare `node -e 0` measured
 * in the same run, the variants alternating so that all see the same machine load; medians over
 * RUNS runs after a warm-up run of each.
 * - the Lambda bundle: its size, and `node` importing it;
 * - the same import with a Node.js compile cache filled beforehand (measured, not shipped: see
 *   docs/performance.md);
 * - `haproxy-weighter --help`;
 * - `haproxy-weighter plan` on 3 real HAProxy 2.6 processes of 500 servers each, with a JSON and a
 *   YAML configuration; Graphite is a stub in this process serving the 500 series graphite-web
 *   would (6 points each), so that the figure is the weighter's, not graphite-web's render time;
 *   the lag from the report's last byte to the process's exit is printed too;
 * - parsing `show stat` and `show servers state` of a 1,000-server backend (recorded from a real
 *   HAProxy here) with today's parser against the one before it, in this process, which git
 *   provides: the last commit whose haproxy-protocol.ts still split every column (`rowsByName`).
 * The bundles are built into a temporary directory with the options of `npm run build`. With
 * `--before REV`, the bundles of git revision REV (built by its own scripts/build.mjs) run in the
 * same loop, for a before/after in one run.
 *
 * Usage: npm run bench:start [-- RUNS] [--before REV]   (default 15 runs)
 */
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createConnection, type AddressInfo } from 'node:net';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Metafile } from 'esbuild';
import { parseObservedBackend, observeCommands } from '../../functions/core/haproxy-protocol.js';
import { bundleCli, bundleHandler } from '../../scripts/bundle.mjs';
import { writeConfigFile } from '../../test/harness/cli.js';
import { startHaproxy, startHaproxyFleet, stopAll, type HaproxyHandle } from '../../test/harness/haproxy.js';
import { makeTempDir, removeTempDir } from '../../test/harness/processes.js';
import { percentile } from '../lab/metrics.js';
import { extractRevision } from './git-tree.js';

const args = process.argv.slice(2);
const beforeAt = args.indexOf('--before');
const BEFORE = beforeAt >= 0 ? args[beforeAt + 1] : undefined;
const RUNS = Math.max(3, Number(args.find((a, i) => /^\d+$/.test(a) && args[i - 1] !== '--before') ?? 15));
const ROOT = new URL('../../', import.meta.url).pathname;
const BACKEND = 'be_ingest';
const MiB = 1024 * 1024;

const median = (xs: readonly number[]): number => percentile(xs, 50);

interface Timed {
  readonly ms: number;
  /** From the last byte the process wrote to stdout to its exit. */
  readonly exitLagMs: number;
}

/** Runs `node args` to its exit; the clock starts at spawn. The event loop stays free for the Graphite stub. */
function timeNode(args: readonly string[], env: Readonly<Record<string, string>>): Promise<Timed> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    let lastOutput = start;
    let stderr = '';
    const child = spawn(process.execPath, args, { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', () => (lastOutput = performance.now()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code) => {
      const end = performance.now();
      // plan exits 0 when every backend could be planned; anything else means the setup is wrong.
      if (code !== 0) reject(new Error(`node ${args.join(' ')} exited ${code}: ${stderr}`));
      else resolve({ ms: end - start, exitLagMs: end - lastOutput });
    });
  });
}

/** The output files an entry loads before any of its code runs: itself and its static imports. */
function loadedAtImport(metafile: Metafile, entry: string): string[] {
  const seen = new Set<string>();
  const visit = (file: string): void => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const imported of metafile.outputs[file]?.imports ?? []) if (imported.kind === 'import-statement' && !imported.external) visit(imported.path);
  };
  visit(entry);
  return [...seen];
}

/** The haproxy-protocol.ts of the last commit that still split every column, loaded from a copy of its functions/core. */
async function previousParser(dir: string): Promise<{ readonly revision: string; readonly parse: typeof parseObservedBackend }> {
  const git = (...args: string[]): string => {
    const r = spawnSync('git', args, { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 * MiB });
    if (r.status !== 0) throw new Error(`git ${args.join(' ')} failed: ${r.stderr}`);
    return r.stdout;
  };
  const file = 'functions/core/haproxy-protocol.ts';
  const revision = git('log', '--format=%H', '--', file)
    .split('\n')
    .filter((h) => h !== '')
    .find((h) => git('show', `${h}:${file}`).includes('function rowsByName('));
  if (revision === undefined) throw new Error(`no commit of ${file} has the previous parser (rowsByName): is this a shallow clone?`);
  extractRevision(ROOT, revision, dir, ['functions/core']);
  const module: unknown = await import(pathToFileURL(join(dir, file)).href);
  const parse: unknown = typeof module === 'object' && module !== null ? Reflect.get(module, 'parseObservedBackend') : undefined;
  if (typeof parse !== 'function') throw new Error(`${file} at ${revision} has no parseObservedBackend`);
  return { revision: revision.slice(0, 10), parse: parse as typeof parseObservedBackend };
}

/** The bundles of git revision `revision`, built by its own build script in `dir`: their paths and the Lambda bundle's size. */
function bundlesAt(revision: string, dir: string): { readonly cli: string; readonly handler: string; readonly handlerBytes: number } {
  extractRevision(ROOT, revision, dir);
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  const built = spawnSync(process.execPath, ['scripts/build.mjs'], { cwd: dir, encoding: 'utf8' });
  if (built.status !== 0) throw new Error(`the build of ${revision} failed: ${built.stderr}`);
  const dist = join(dir, 'dist');
  const handlerBytes = readdirSync(dist)
    .filter((f) => /^handler(-.*)?\.mjs$/.test(f))
    .reduce((sum, f) => sum + statSync(join(dist, f)).size, 0);
  return { cli: join(dist, 'cli.mjs'), handler: join(dist, 'handler.mjs'), handlerBytes };
}

/** One batch to a runtime socket and its whole reply (HAProxy ends a non-interactive session after it): the I/O floor of an observation. */
function roundTrip(path: string, batch: string): Promise<number> {
  return new Promise((resolve, reject) => {
    let bytes = 0;
    const socket = createConnection({ path });
    socket.on('data', (chunk: Buffer) => (bytes += chunk.length));
    socket.once('error', reject);
    socket.once('close', () => resolve(bytes));
    socket.end(batch);
  });
}

/** Median milliseconds per call of `fn`, the two alternating batch by batch. */
function alternate(fns: readonly (() => unknown)[], batches: number, perBatch: number): number[] {
  const times = fns.map((): number[] => []);
  for (let b = 0; b < batches; b++) {
    fns.forEach((fn, i) => {
      const start = performance.now();
      for (let k = 0; k < perBatch; k++) fn();
      times[i]?.push((performance.now() - start) / perBatch);
    });
  }
  return times.map(median);
}

const dir = makeTempDir('hw-bench-start');
let fleet: HaproxyHandle[] = [];
let big: HaproxyHandle | undefined;
const stub = createServer();
try {
  // Bundles, as npm run build makes them.
  const cliDir = join(dir, 'cli');
  const lambdaDir = join(dir, 'lambda');
  await bundleCli(join(cliDir, 'cli.mjs'));
  const lambda = await bundleHandler(join(lambdaDir, 'handler.mjs'), { metafile: true });
  const metafile = lambda.metafile;
  if (metafile === undefined) throw new Error('esbuild returned no metafile');
  const lambdaEntry = Object.keys(metafile.outputs).find((f) => f.endsWith('/handler.mjs')) ?? '';
  const bytesOf = (files: readonly string[]): number => files.reduce((sum, f) => sum + statSync(join(ROOT, f)).size, 0);
  const lambdaFiles = readdirSync(lambdaDir).map((f) => join(lambdaDir, f));
  const shipped = lambdaFiles.reduce((sum, f) => sum + statSync(f).size, 0);
  const atImport = loadedAtImport(metafile, lambdaEntry);
  const handlerUrl = pathToFileURL(join(lambdaDir, 'handler.mjs')).href;

  // Graphite stub and 3 real HAProxy processes of 500 servers.
  const servers = Array.from({ length: 500 }, (_, i) => `s${String(i).padStart(4, '0')}`);
  const now = Math.floor(Date.now() / 1000);
  const body = JSON.stringify(servers.map((name, i) => ({ target: name, datapoints: Array.from({ length: 6 }, (_, k) => [1000 + ((i * 37) % 500), now - (5 - k) * 10]) })));
  stub.on('request', (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(body));
  await new Promise<void>((resolve) => stub.listen({ host: '127.0.0.1', port: 0 }, resolve));
  const graphiteUrl = `http://127.0.0.1:${(stub.address() as AddressInfo).port}`;
  fleet = await startHaproxyFleet(3, { backends: [{ name: BACKEND, balance: 'leastconn', servers: servers.map((name) => ({ name })) }] });
  const config = {
    graphite: { url: graphiteUrl },
    relay: { type: 'socket', loadBalancers: fleet.map((h, i) => ({ name: `lb${i + 1}`, endpoint: h.adminSocket })) },
    backends: [{ name: BACKEND, target: 'aliasByNode(ingest.*.load, 1)', from: '-1min', weighting: { function: 'limited-proportions' } }],
  };
  const jsonConfig = join(dir, 'config.json');
  writeFileSync(jsonConfig, JSON.stringify(config, null, 2));
  const yamlConfig = writeConfigFile(dir, config, 'config.yaml');
  const cacheDir = join(dir, 'compile-cache');

  const env = { HOME: dir, AWS_REGION: 'eu-west-1', XDG_RUNTIME_DIR: dir };
  const importArgs = ['--input-type=module', '-e', `await import(${JSON.stringify(handlerUrl)})`];
  type Env = Readonly<Record<string, string>>;
  const variants: { readonly label: string; readonly args: readonly string[]; readonly env: Env; readonly target?: number; readonly note?: string }[] = [
    { label: 'node -e 0', args: ['-e', '0'], env },
    { label: 'Lambda bundle: import', args: importArgs, env, target: 5 },
    { label: 'Lambda bundle: import, compile cache filled', args: importArgs, env: { ...env, NODE_COMPILE_CACHE: cacheDir }, note: 'not shipped' },
    { label: 'haproxy-weighter --help', args: [join(cliDir, 'cli.mjs'), '--help'], env, target: 2 },
    { label: 'plan, 3 x 500 servers, JSON config', args: [join(cliDir, 'cli.mjs'), 'plan', '--config', jsonConfig], env, target: 4 },
    { label: 'plan, 3 x 500 servers, YAML config', args: [join(cliDir, 'cli.mjs'), 'plan', '--config', yamlConfig], env },
  ];
  const before = BEFORE === undefined ? undefined : { revision: BEFORE, ...bundlesAt(BEFORE, join(dir, 'before')) };
  if (before !== undefined) {
    variants.push(
      { label: `before (${before.revision}): Lambda bundle: import`, args: ['--input-type=module', '-e', `await import(${JSON.stringify(pathToFileURL(before.handler).href)})`], env },
      { label: `before (${before.revision}): haproxy-weighter --help`, args: [before.cli, '--help'], env },
      { label: `before (${before.revision}): plan, 3 x 500 servers, JSON config`, args: [before.cli, 'plan', '--config', jsonConfig], env },
    );
  }
  // The warm-up run of each also fills the Lambda variant's compile cache.
  for (const v of variants) await timeNode(v.args, v.env);
  const times = variants.map((): Timed[] => []);
  for (let run = 0; run < RUNS; run++) {
    for (const [i, v] of variants.entries()) times[i]?.push(await timeNode(v.args, v.env));
  }

  // The I/O floor of plan's observation: the same batch to the 3 HAProxy at once, no parsing.
  const observeBatch = `${observeCommands(BACKEND).join('; ')}\n`;
  const ioTimes: number[] = [];
  let ioBytes = 0;
  for (let run = 0; run <= RUNS; run++) {
    const start = performance.now();
    const sizes = await Promise.all(fleet.map((h) => roundTrip(h.adminSocket, observeBatch)));
    if (run > 0) ioTimes.push(performance.now() - start);
    ioBytes = sizes.reduce((a, b) => a + b, 0);
  }

  // show stat of 1,000 servers, recorded from a real HAProxy.
  big = await startHaproxy({ backends: [{ name: BACKEND, balance: 'leastconn', servers: Array.from({ length: 1000 }, (_, i) => ({ name: `srv-${i}` })) }] });
  const [statCommand = '', stateCommand = ''] = observeCommands(BACKEND);
  const stat = (await big.runtime(statCommand)).replace(/\n$/, '');
  const state = (await big.runtime(stateCommand)).replace(/\n$/, '');
  const previous = await previousParser(join(dir, 'previous'));
  const ours = parseObservedBackend(BACKEND, stat, state);
  const theirs = previous.parse(BACKEND, stat, state);
  if (JSON.stringify(ours) !== JSON.stringify(theirs)) throw new Error('the two parsers read the 1,000-server reply differently');
  if (ours.servers.length !== 1000) throw new Error(`read ${ours.servers.length} servers, not 1,000`);
  const [oldMs = 0, newMs = 0] = alternate([() => previous.parse(BACKEND, stat, state), () => parseObservedBackend(BACKEND, stat, state)], Math.max(RUNS, 15), 20);

  // Report.
  const base = median(times[0]?.map((t) => t.ms) ?? []);
  const fmt = (n: number, digits = 1): string => n.toFixed(digits);
  const rows = variants.map((v, i) => {
    const ms = median(times[i]?.map((t) => t.ms) ?? []);
    const ratio = ms / base;
    const target = v.target === undefined ? (v.note ?? '') : `≤ ${v.target}x: ${ratio <= v.target ? 'met' : 'NOT met'}`;
    return [v.label, `${fmt(ms)} ms`, `${fmt(ratio, 2)}x`, target];
  });
  const sizeTarget = shipped <= MiB ? 'met' : 'NOT met';
  const speedup = oldMs / newMs;
  rows.push(
    ['Lambda bundle: size shipped', `${shipped} B`, `${fmt(shipped / MiB, 3)} MiB`, `≤ 1 MiB: ${sizeTarget}`],
    ['Lambda bundle: loaded at import', `${bytesOf(atImport)} B`, `${atImport.length} file(s) of ${lambdaFiles.length}`, ''],
    [`plan's observation I/O alone (3 x ${Math.round(ioBytes / 3 / 1024)} KiB, in this process)`, `${fmt(median(ioTimes))} ms`, '', ''],
    ...(before === undefined ? [] : [[`before (${before.revision}): Lambda bundle: size`, `${before.handlerBytes} B`, `${fmt(before.handlerBytes / MiB, 3)} MiB`, '']]),
    [`show stat + servers state, 1,000 servers: before (${previous.revision})`, `${fmt(oldMs, 2)} ms`, '', ''],
    ['show stat + servers state, 1,000 servers: now', `${fmt(newMs, 2)} ms`, `${fmt(speedup, 2)}x faster`, `≥ 2x: ${speedup >= 2 ? 'met' : 'NOT met'}`],
  );
  const widths = [0, 1, 2, 3].map((c) => Math.max(...rows.map((r) => (r[c] ?? '').length), ['what', 'median', 'ratio', 'target'][c]?.length ?? 0));
  const line = (cells: readonly string[]): string => cells.map((cell, c) => (c === 1 || c === 2 ? cell.padStart(widths[c] ?? 0) : cell.padEnd(widths[c] ?? 0))).join('  ').trimEnd();
  console.log(`node ${process.versions.node}, ${cpus().length} CPU(s) ${cpus()[0]?.model ?? ''}, load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}, ${RUNS} runs`);
  console.log(line(['what', 'median', 'ratio', 'target']));
  for (const row of rows) console.log(line(row));
  const lags = [4, 5].map((i) => fmt(median(times[i]?.map((t) => t.exitLagMs) ?? [])));
  console.log(`plan: from the report's last byte to the process's exit, median ${lags[0]} ms (JSON), ${lags[1]} ms (YAML)`);
} finally {
  stub.close();
  stub.closeAllConnections();
  await stopAll([...fleet, ...(big === undefined ? [] : [big])]);
  removeTempDir(dir);
}
