/**
 * The quick-start demo: a real rebalance against a local lab. Starts a real Graphite and three real
 * HAProxy load balancers, feeds skewed load (one server at 5x the others), shows the plan, applies
 * one cycle through the real CLI (dist/cli.mjs, the package's bin) and prints the weights every
 * HAProxy reports before and after. Stops everything on exit.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { startGraphite, writeAndWait, type GraphiteHandle } from '../harness/graphite.js';
import { startHaproxyFleet, stopAll, type HaproxyHandle } from '../harness/haproxy.js';

const BACKEND = 'be_ingest';
// Points/s each ingestion server receives: srv1 carries a few very heavy connections.
const LOADS: Record<string, number> = { srv1: 5000, srv2: 1100, srv3: 900, srv4: 1000, srv5: 950, srv6: 1050 };

async function weights(fleet: readonly HaproxyHandle[]): Promise<string[][]> {
  const rows: string[][] = [];
  for (const server of Object.keys(LOADS)) {
    const row = [server, String(LOADS[server])];
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

let graphite: GraphiteHandle | undefined;
let fleet: HaproxyHandle[] = [];
const dir = mkdtempSync(join(tmpdir(), 'hw-demo-'));

async function main(): Promise<number> {
  console.log('Starting the lab: Graphite (carbon-cache + graphite-web) and 3 HAProxy load balancers...');
  [graphite, fleet] = await Promise.all([
    startGraphite(),
    startHaproxyFleet(3, { backends: [{ name: BACKEND, balance: 'leastconn', servers: Object.keys(LOADS).map((name) => ({ name })) }] }),
  ]);
  const now = Math.floor(Date.now() / 1000);
  const points = Object.entries(LOADS).flatMap(([server, value]) =>
    [0, 10, 20, 30, 40, 50].map((ago) => ({ path: `lab.${server}.points_received`, value, timestamp: now - ago })),
  );
  await writeAndWait(graphite, points, 'lab.*.points_received');
  console.log(`Fed one minute of points/s per server into carbon: ${Object.entries(LOADS).map(([s, v]) => `${s}=${v}`).join(' ')}`);

  // The shipped example config, pointed at this lab's Graphite and sockets: proves it works as is.
  const example: unknown = parse(readFileSync('infra/example-config.yaml', 'utf8'));
  if (typeof example !== 'object' || example === null) throw new Error('infra/example-config.yaml is not a mapping');
  const configPath = join(dir, 'config.yaml');
  writeFileSync(
    configPath,
    stringify({
      ...example,
      graphite: { ...Reflect.get(example, 'graphite'), url: graphite.url },
      relay: { ...Reflect.get(example, 'relay'), loadBalancers: fleet.map((lb, i) => ({ name: `lb${i + 1}`, endpoint: lb.adminSocket })) },
    }),
  );
  console.log(`Config: infra/example-config.yaml with this lab's Graphite URL and admin sockets (${configPath})`);
  const header = ['server', 'load', 'lb1', 'lb2', 'lb3'];
  printTable('Weights before (as HAProxy reports them with `get weight`):', header, await weights(fleet));
  const planCode = cli(['plan', '--config', configPath]);
  const applyCode = cli(['apply', '--config', configPath]);
  printTable('Weights after (as HAProxy reports them with `get weight`):', header, await weights(fleet));
  console.log(`\nplan exited ${planCode}, apply exited ${applyCode}. srv1 now gets a smaller share of new connections on every load balancer.`);
  return applyCode;
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
