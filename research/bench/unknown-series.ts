/**
 * Cost of what a cycle cannot use, against the same cycle without it, measured in one process:
 * - `plan` of a 1,000-server backend whose Graphite reply also holds 150,000 series for servers
 *   HAProxy does not have (a too-broad target, or a hostile Graphite);
 * - the same with a 10,000-server backend, whose own reply is about as large as the unknown part;
 * - `plan` of a 10,000-server backend skipped for want of quorum (most servers with only null
 *   points or with two series each), against the same backend with data for every server.
 * Each `plan` is the CLI's own main() (human report included) on 3 real HAProxy 2.6 processes;
 * Graphite is a stub in this process serving prepared bodies, because no real Graphite holds
 * 150,000 series for a benchmark. Variants alternate, medians of RUNS runs after a warm-up.
 *
 * Usage: npm run bench:unknown-series [-- RUNS]   (default 5)
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { main } from '../../functions/cli/main.js';
import { writeConfigFile } from '../../test/harness/cli.js';
import { startHaproxyFleet, stopAll } from '../../test/harness/haproxy.js';
import { makeTempDir, removeTempDir } from '../../test/harness/processes.js';
import { percentile } from '../lab/metrics.js';

const RUNS = Math.max(1, Number(process.argv[2] ?? 5));
const LIMIT = 2;
const UNKNOWN = 150_000;
const now = Math.floor(Date.now() / 1000);

const serverNames = (prefix: string, count: number): string[] => Array.from({ length: count }, (_, i) => `${prefix}${String(i).padStart(5, '0')}`);
const small = serverNames('s', 1_000);
const large = serverNames('l', 10_000);

/** One series as graphite-web prints it: `points` values, 10 s apart, ending now. */
function series(target: string, value: number | null, points: number): string {
  const datapoints = Array.from({ length: points }, (_, i) => `[${value === null ? 'null' : value},${now - (points - 1 - i) * 10}]`);
  return `{"target":${JSON.stringify(target)},"datapoints":[${datapoints.join(',')}]}`;
}

const known = (names: readonly string[]): string[] => names.map((n, i) => series(n, 1000 + (i % 500), 30));
const ghosts = (count: number): string[] => serverNames('ghost-', count).map((n) => series(n, 1, 1));
const list = (items: readonly string[]): string => `[${items.join(',')}]`;
const UNKNOWN_STEPS = [UNKNOWN / 4, UNKNOWN / 2, UNKNOWN];

// Encoded once: the stub runs in this process, and encoding 9 MB on every request is not the weighter's time.
const bodies: Record<string, Buffer> = Object.fromEntries(
  Object.entries({
    // Five minutes at 10 s per point for every real server; one point for each unknown series.
    small: list(known(small)),
    ...Object.fromEntries(UNKNOWN_STEPS.map((n) => [`small+${n}`, list([...known(small), ...ghosts(n)])])),
    large: list(known(large)),
    [`large+${UNKNOWN}`]: list([...known(large), ...ghosts(UNKNOWN)]),
    // 40% with data (quorum is 50%), 50% with only null points, 10% with two series each.
    largeNoQuorum: list(large.flatMap((n, i) => (i % 10 < 4 ? [series(n, 1000 + (i % 500), 30)] : i % 10 < 9 ? [series(n, null, 30)] : [series(n, 5, 30), series(n, 6, 30)]))),
  }).map(([target, body]) => [target, Buffer.from(body)]),
);

const graphite = createServer((req, res) => {
  const target = new URL(req.url ?? '/', 'http://stub').searchParams.get('target') ?? '';
  const body = bodies[target];
  res.writeHead(body === undefined ? 404 : 200, { 'content-type': 'application/json' });
  res.end(body ?? '[]');
});
await new Promise<void>((resolve) => graphite.listen({ host: '127.0.0.1', port: 0 }, resolve));
const graphiteUrl = `http://127.0.0.1:${(graphite.address() as AddressInfo).port}`;

const dir = makeTempDir('hw-bench-unknown');
const fleet = await startHaproxyFleet(3, {
  backends: [
    { name: 'be_small', balance: 'leastconn', servers: small.map((name) => ({ name })) },
    { name: 'be_large', balance: 'leastconn', servers: large.map((name) => ({ name })) },
  ],
});

function config(backend: string, target: string): string {
  return writeConfigFile(
    dir,
    {
      graphite: { url: graphiteUrl, timeoutMs: 60_000, retries: 0, maxResponseBytes: 64 * 1024 * 1024 },
      relay: { type: 'socket', loadBalancers: fleet.map((h, i) => ({ name: `lb${i}`, endpoint: h.adminSocket })), readTimeoutMs: 60_000 },
      backends: [{ name: backend, target, from: '-5min', weighting: { function: 'limited-proportions' }, quorum: 0.5 }],
    },
    `${backend}-${target}.yaml`,
  );
}

/** One `plan` through the CLI; returns milliseconds and checks the outcome it must have. */
async function plan(file: string, expect: RegExp): Promise<number> {
  let out = '';
  const started = process.hrtime.bigint();
  const code = await main(['plan', '--config', file], {
    stdout: (text) => (out += text),
    stderr: (text) => (out += text),
    env: { XDG_RUNTIME_DIR: dir },
    now: Date.now,
    stopSignal: new Promise<string>(() => undefined),
  });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (!expect.test(out)) throw new Error(`plan ${file} exited ${code} without ${String(expect)}: ${out.slice(-400)}`);
  return ms;
}

const median = (xs: readonly number[]): number => percentile(xs, 50);

interface Variant {
  readonly name: string;
  readonly file: string;
  readonly expect: RegExp;
  /** Unknown series it adds to the baseline, for the cost per series. */
  readonly unknown?: number;
}

/** Times the baseline and each variant, interleaved, and prints each variant's ratio to the baseline. */
async function compare(label: string, baseline: Variant, variants: readonly Variant[]): Promise<void> {
  const all = [baseline, ...variants];
  for (const v of all) await plan(v.file, v.expect);
  const times = all.map((): number[] => []);
  for (let i = 0; i < RUNS; i++) for (const [j, v] of all.entries()) times[j]?.push(await plan(v.file, v.expect));
  const base = median(times[0] ?? []);
  console.log(label);
  console.log(`  ${baseline.name.padEnd(36)} ${base.toFixed(0).padStart(6)} ms`);
  variants.forEach((v, j) => {
    const t = median(times[j + 1] ?? []);
    const ratio = t / base;
    const perSeries = v.unknown === undefined ? '' : `   ${(((t - base) / v.unknown) * 1000).toFixed(1)} µs per unknown series`;
    console.log(`  ${v.name.padEnd(36)} ${t.toFixed(0).padStart(6)} ms   ratio ${ratio.toFixed(2)} (${ratio <= LIMIT ? 'within' : 'OVER'} ${LIMIT}x)${perSeries}`);
  });
}

const count = (n: number): string => n.toLocaleString('en');

try {
  console.log(`plan via the CLI's main(), 3 real HAProxy processes, Graphite stub; median of ${RUNS} run(s) each`);
  await compare(
    'a 1,000-server backend',
    { name: 'its 1,000 series', file: config('be_small', 'small'), expect: /outcome: ok/ },
    UNKNOWN_STEPS.map((n) => ({ name: `plus ${count(n)} unknown series`, file: config('be_small', `small+${n}`), expect: /series for servers no load balancer has/, unknown: n })),
  );
  await compare('a 10,000-server backend', { name: 'its 10,000 series', file: config('be_large', 'large'), expect: /outcome: ok/ }, [
    { name: `plus ${count(UNKNOWN)} unknown series`, file: config('be_large', `large+${UNKNOWN}`), expect: /series for servers no load balancer has/, unknown: UNKNOWN },
    { name: 'without quorum (40% with data)', file: config('be_large', 'largeNoQuorum'), expect: /SKIPPED \(no-quorum\)/ },
  ]);
} finally {
  await stopAll(fleet);
  graphite.close();
  removeTempDir(dir);
}
