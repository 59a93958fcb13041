/**
 * The quick-start demo: a real rebalance against a local lab. Starts a real Graphite and three real
 * HAProxy load balancers, checks the setup with `haproxy-weighter doctor`, feeds skewed load (one
 * server at 5x the others), shows the plan, then applies a few cycles through the real CLI
 * (dist/cli.mjs, the package's bin) with the weight history on, and prints the weights every
 * HAProxy reports before and after. It ends with a graph of load and weight per server rendered
 * by the real graphite-web (`/render?format=png`), written to demo-output/. Stops everything on exit.
 *
 * The load is modelled traffic, written into carbon every 10 s (Graphite's resolution here): srv1
 * carries 4,000 points/s of heavy connections that never move, and every server carries movable
 * load; every 10 s half of the movable load churns and the new connections follow the weights
 * HAProxy holds (lb1's; all three agree). So the load answers the weights the way long-lived
 * connections do: slowly, only through new connections.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parse, stringify } from 'yaml';
import { GRAPHITE_RESOLUTION_SECONDS, bucketOf, startGraphite, writeAndWait, type GraphiteHandle, type GraphitePoint } from '../harness/graphite.js';
import { startHaproxyFleet, stopAll, type HaproxyHandle } from '../harness/haproxy.js';

const BACKEND = 'be_ingest';
const SERVERS = ['srv1', 'srv2', 'srv3', 'srv4', 'srv5', 'srv6'];
/** Load of heavy connections that never move (points/s). */
const PINNED: Readonly<Record<string, number>> = { srv1: 4000 };
/** Movable load at the start, as equal weights spread it (points/s). */
const MOVABLE: Readonly<Record<string, number>> = { srv1: 1000, srv2: 1100, srv3: 900, srv4: 1000, srv5: 950, srv6: 1050 };
/** Share of the movable load that churns every 10 s and is placed again by the weights. */
const CHURN = 0.5;
const CYCLES = 4;
const HISTORY_PREFIX = 'demo.weighter';
const PNG_NAME = 'load-and-weight.png';

let movable: Record<string, number> = { ...MOVABLE };
const loadOf = (server: string): number => Math.round((PINNED[server] ?? 0) + (movable[server] ?? 0));

async function weights(fleet: readonly HaproxyHandle[]): Promise<string[][]> {
  const rows: string[][] = [];
  for (const server of SERVERS) {
    const row = [server, String(loadOf(server))];
    for (const lb of fleet) row.push(String((await lb.getWeight(BACKEND, server)).current));
    rows.push(row);
  }
  return rows;
}

function printTable(title: string, header: string[], rows: string[][]): void {
  console.log(`\n${title}`);
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  for (const r of all) console.log(`  ${r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ')}`);
}

function cli(args: string[]): number {
  console.log(`\n$ haproxy-weighter ${args.join(' ')}`);
  const result = spawnSync(process.execPath, ['dist/cli.mjs', ...args], { stdio: 'inherit' });
  return result.status ?? 1;
}

/** Half the movable load churns; the new connections are spread in proportion to the weights. */
async function churn(lb: HaproxyHandle): Promise<void> {
  const held = await Promise.all(SERVERS.map(async (s) => (await lb.getWeight(BACKEND, s)).current));
  const total = held.reduce((a, b) => a + b, 0);
  const moving = SERVERS.reduce((sum, s) => sum + (movable[s] ?? 0) * CHURN, 0);
  movable = Object.fromEntries(SERVERS.map((s, i) => [s, (movable[s] ?? 0) * (1 - CHURN) + (total === 0 ? 0 : (moving * (held[i] ?? 0)) / total)]));
}

const loadPoints = (timestamp: number): GraphitePoint[] => SERVERS.map((s) => ({ path: `lab.${s}.points_received`, value: loadOf(s), timestamp }));

/** Until the next 10 s bucket of Graphite has begun, so each cycle's points land in a bucket of their own. */
async function nextBucket(): Promise<number> {
  const now = Date.now() / 1000;
  const next = bucketOf(now) + GRAPHITE_RESOLUTION_SECONDS;
  await sleep(Math.max(0, (next - now) * 1000 + 200));
  return Math.floor(Date.now() / 1000);
}

/** graphite-web's own PNG of load (left axis, solid) and lb1's weight (right axis, dashed) per server, one colour per server. */
async function renderPng(graphite: GraphiteHandle, from: number, until: number): Promise<Buffer> {
  const url = new URL('/render', graphite.url);
  // keepLastValue draws a value until the next one, as HAProxy holds a weight until the next write.
  for (const s of SERVERS) url.searchParams.append('target', `alias(keepLastValue(lab.${s}.points_received), "${s} load (points/s)")`);
  for (const s of SERVERS) url.searchParams.append('target', `alias(dashed(secondYAxis(keepLastValue(${HISTORY_PREFIX}.backend.${BACKEND}.weight.lb1.${s}))), "${s} weight on lb1")`);
  const colours = ['e6194b', '3cb44b', '4363d8', 'f58231', '911eb4', '42d4f4'];
  for (const [key, value] of Object.entries({
    format: 'png',
    from: String(from),
    until: String(until),
    width: '1000',
    height: '560',
    title: 'haproxy-weighter demo: load (solid, left axis) and weight on lb1 (dashed, right axis) per server',
    vtitle: 'load (points/s)',
    vtitleRight: 'HAProxy weight',
    colorList: [...colours, ...colours].join(','),
    lineWidth: '2',
    // A weight holds until the next write, and a load point covers its 10 s bucket: steps, not slopes.
    lineMode: 'staircase',
    yMinLeft: '0',
    yMaxLeft: '6000',
    yMinRight: '0',
    yMaxRight: '300',
    drawNullAsZero: 'false',
    bgcolor: 'ffffff',
    fgcolor: '000000',
    majorGridLineColor: 'c0c0c0',
    minorGridLineColor: 'e8e8e8',
    hideLegend: 'false',
  })) {
    url.searchParams.set(key, value);
  }
  const response = await fetch(url, { signal: AbortSignal.timeout(60_000) });
  const body = Buffer.from(await response.arrayBuffer());
  if (!response.ok || !body.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) {
    throw new Error(`graphite-web did not render a PNG (HTTP ${response.status}): ${body.subarray(0, 300).toString('utf8')}`);
  }
  return body;
}

let graphite: GraphiteHandle | undefined;
let fleet: HaproxyHandle[] = [];
const dir = mkdtempSync(join(tmpdir(), 'hw-demo-'));

async function main(): Promise<number> {
  console.log('Starting the lab: Graphite (carbon-cache + graphite-web) and 3 HAProxy load balancers...');
  [graphite, fleet] = await Promise.all([
    startGraphite(),
    startHaproxyFleet(3, { backends: [{ name: BACKEND, balance: 'leastconn', servers: SERVERS.map((name) => ({ name })) }] }),
  ]);
  const [lb1] = fleet;
  if (lb1 === undefined) throw new Error('no load balancer started');

  // One minute of the skewed load before the first cycle, with the weights HAProxy held then.
  const start = Math.floor(Date.now() / 1000);
  const before = await Promise.all(SERVERS.map(async (s) => (await lb1.getWeight(BACKEND, s)).current));
  const past = [60, 50, 40, 30, 20, 10].map((ago) => start - ago);
  await writeAndWait(graphite, [
    ...past.flatMap(loadPoints),
    ...past.flatMap((timestamp) => SERVERS.map((s, i) => ({ path: `${HISTORY_PREFIX}.backend.${BACKEND}.weight.lb1.${s}`, value: before[i] ?? 0, timestamp }))),
  ], `group(lab.*.points_received,${HISTORY_PREFIX}.backend.${BACKEND}.weight.lb1.*)`);
  console.log(`Fed one minute of points/s per server into carbon: ${SERVERS.map((s) => `${s}=${loadOf(s)}`).join(' ')}`);
  console.log('(and, for the graph, the weights HAProxy held during that minute, under the history paths)');

  // The shipped example config, pointed at this lab's Graphite and sockets, with the weight history on.
  const example: unknown = parse(readFileSync('infra/example-config.yaml', 'utf8'));
  if (typeof example !== 'object' || example === null) throw new Error('infra/example-config.yaml is not a mapping');
  const configPath = join(dir, 'config.yaml');
  writeFileSync(
    configPath,
    stringify({
      ...example,
      graphite: { ...Reflect.get(example, 'graphite'), url: graphite.url },
      relay: { ...Reflect.get(example, 'relay'), loadBalancers: fleet.map((lb, i) => ({ name: `lb${i + 1}`, endpoint: lb.adminSocket })) },
      history: { prefix: HISTORY_PREFIX, carbon: { host: '127.0.0.1', port: graphite.carbonPort } },
    }),
  );
  console.log(`Config: infra/example-config.yaml with this lab's Graphite URL and admin sockets, and the weight history sent to its carbon (${configPath})`);

  const doctorCode = cli(['doctor', '--config', configPath]);
  const header = ['server', 'load', 'lb1', 'lb2', 'lb3'];
  printTable('Weights before (as HAProxy reports them with `get weight`):', header, await weights(fleet));
  const planCode = cli(['plan', '--changes', '--config', configPath]);

  let applyCode = 0;
  for (let cycle = 1; cycle <= CYCLES; cycle++) {
    const now = await nextBucket();
    // New connections since the last cycle have followed the weights HAProxy holds.
    if (cycle > 1) await churn(lb1);
    await writeAndWait(graphite, loadPoints(now), 'lab.*.points_received');
    console.log(`\n---- cycle ${cycle} of ${CYCLES}: load now ${SERVERS.map((s) => `${s}=${loadOf(s)}`).join(' ')}`);
    applyCode = Math.max(applyCode, cli(['apply', ...(cycle === 1 ? [] : ['--changes']), '--config', configPath]));
  }
  // The load one more churn later, so the graph shows where the last weights take it.
  const end = await nextBucket();
  await churn(lb1);
  await writeAndWait(graphite, loadPoints(end), 'lab.*.points_received');
  printTable('Weights after (as HAProxy reports them with `get weight`), with the load 10 s after the last cycle:', header, await weights(fleet));

  // Wait until graphite-web serves the last cycle's weights, then let it draw them.
  await graphite.waitForSeries(`${HISTORY_PREFIX}.cycle.outcome`, (s) => (s[0]?.datapoints.filter(([v]) => v !== null).length ?? 0) >= CYCLES, 30_000, { from: start - 120 });
  const png = await renderPng(graphite, start - 70, end + GRAPHITE_RESOLUTION_SECONDS);
  const pngPath = join(dir, PNG_NAME);
  writeFileSync(pngPath, png);
  const outDir = resolve('demo-output');
  mkdirSync(outDir, { recursive: true });
  copyFileSync(pngPath, join(outDir, PNG_NAME));

  console.log(`\ndoctor exited ${doctorCode}, plan exited ${planCode}, apply exited ${applyCode} (worst of ${CYCLES} cycles).`);
  console.log('srv1 gets a smaller share of new connections on every load balancer, and its load falls as connections churn.');
  console.log(`\nThe graph, rendered by graphite-web from the lab's load and the weight history: ${join(outDir, PNG_NAME)}`);
  return Math.max(doctorCode, applyCode);
}

let code = 1;
try {
  code = await main();
} catch (error) {
  console.error(error);
} finally {
  await stopAll([...fleet, ...(graphite === undefined ? [] : [graphite])]);
  rmSync(dir, { recursive: true, force: true });
}
process.exit(code);
