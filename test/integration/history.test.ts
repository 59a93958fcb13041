/**
 * The weight history, end to end: the real CLI applies a cycle against a real HAProxy, sends the
 * weights, imbalance and outcome to the real carbon of the test run (plaintext over TCP, or through
 * a stand-in of Grafana Cloud's HTTP ingestion in front of it), and graphite-web's render API
 * reads them back, equal to what HAProxy itself holds. A history that cannot be sent is a warning
 * in the report; the cycle's outcome and exit code stay what they were.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CycleReport } from '../../functions/core/cycle.js';
import { runCli, singleReport, startCli, parseReports, writeConfigFile } from '../harness/cli.js';
import { bucketOf, feedLoads, uniquePrefix, valueAt, type GraphiteClient } from '../harness/graphite.js';
import { startGraphiteIngest, type GraphiteIngest } from '../harness/graphite-ingest.js';
import { startHaproxy, type HaproxyHandle } from '../harness/haproxy.js';
import { freePorts, makeTempDir, removeTempDir } from '../harness/processes.js';
import { problemsOf } from '../harness/report.js';
import { sharedGraphite } from '../harness/shared-graphite.js';

// A server name with dots: it must stay one node of the metric path, not open new levels.
const SERVERS = ['s1', 's2', 'node.eu-1.example:7000'];
const ESCAPED: Readonly<Record<string, string>> = { s1: 's1', s2: 's2', 'node.eu-1.example:7000': 'node%2Eeu-1%2Eexample:7000' };

let graphite: GraphiteClient;
let lb: HaproxyHandle;
let ingest: GraphiteIngest;
let dir: string;
let target: string;

beforeAll(async () => {
  graphite = await sharedGraphite();
  dir = makeTempDir('hw-history');
  lb = await startHaproxy({ backends: [{ name: 'be_hist', balance: 'leastconn', servers: SERVERS.map((name) => ({ name })) }] });
  // A dot in a metric path opens a level: Graphite itself renames the third series after the server.
  const fed = await feedLoads(graphite, uniquePrefix('history-load'), { s1: 900, s2: 100, 'node-eu1': 100 });
  target = `aliasSub(${fed}, "^node-eu1$", "node.eu-1.example:7000")`;
  ingest = await startGraphiteIngest(graphite.carbonPort, '123456', 'glc_token');
});

afterAll(async () => {
  await ingest.stop();
  await lb.stop();
  removeTempDir(dir);
});

let configs = 0;
const config = (history: Record<string, unknown>): string =>
  writeConfigFile(
    dir,
    {
      graphite: { url: graphite.url, timeoutMs: 5000, retries: 1 },
      relay: { type: 'socket', loadBalancers: [{ name: 'lb1', endpoint: lb.adminSocket }] },
      backends: [{ name: 'be_hist', target, from: '-2min', weighting: { function: 'feedback' } }],
      history,
    },
    `history-${++configs}.yaml`,
  );

/** Waits until graphite-web renders, for the cycle's 10 s bucket, every path with its value. */
async function readBack(report: CycleReport, expected: Readonly<Record<string, number>>): Promise<void> {
  const at = Math.floor(Date.parse(report.startedAt) / 1000);
  const window = { from: bucketOf(at) - 10, until: bucketOf(at) + 20 };
  await Promise.all(
    Object.entries(expected).map(([path, value]) => graphite.waitForSeries(path, (series) => series.length === 1 && series[0] !== undefined && valueAt(series[0], at) === value, 30_000, window)),
  );
}

async function heldByHaproxy(): Promise<Record<string, number>> {
  return Object.fromEntries(await Promise.all(SERVERS.map(async (s) => [s, (await lb.getWeight('be_hist', s)).current] as const)));
}

describe('weight history in Graphite', () => {
  it('sends the weights HAProxy holds, the imbalance and the outcome to carbon, where graphite-web reads them back', async () => {
    const prefix = uniquePrefix('history-carbon');
    const run = await runCli(['apply', '--json', '--config', config({ prefix, carbon: { host: '127.0.0.1', port: graphite.carbonPort } })]);
    expect(run.code).toBe(0);
    const report = singleReport(run.stdout);
    expect(problemsOf(report)).toEqual([]);
    expect(report.serversChanged).toBeGreaterThan(0);
    const held = await heldByHaproxy();
    const expected: Record<string, number> = {
      [`${prefix}.cycle.outcome`]: 0,
      [`${prefix}.cycle.servers_changed`]: report.serversChanged,
      [`${prefix}.backend.be_hist.imbalance`]: report.backends[0]?.imbalance ?? Number.NaN,
      [`${prefix}.backend.be_hist.load.s1`]: 900,
    };
    for (const s of SERVERS) expected[`${prefix}.backend.be_hist.weight.lb1.${ESCAPED[s] ?? s}`] = held[s] ?? Number.NaN;
    await readBack(report, expected);

    // The dotted server name is one node: the weights of lb1 are exactly one level below it, three series.
    const weights = await graphite.render(`${prefix}.backend.be_hist.weight.lb1.*`, { from: '-10min' });
    expect(weights.map((s) => s.target).sort()).toEqual(SERVERS.map((s) => `${prefix}.backend.be_hist.weight.lb1.${ESCAPED[s] ?? s}`).sort());
    expect(await graphite.render(`${prefix}.backend.be_hist.weight.lb1.*.*`, { from: '-10min' })).toEqual([]);
  });

  it('sends through the Graphite HTTP ingestion API with the token from the environment', async () => {
    const prefix = uniquePrefix('history-http');
    const path = config({ prefix, http: { url: ingest.url, auth: { type: 'basic', username: '123456', passwordEnv: 'HW_HISTORY_TOKEN' }, intervalSeconds: 10 } });
    const run = await runCli(['apply', '--json', '--config', path], { env: { HW_HISTORY_TOKEN: 'glc_token' } });
    expect(run.code).toBe(0);
    const report = singleReport(run.stdout);
    expect(problemsOf(report)).toEqual([]);
    const held = await heldByHaproxy();
    await readBack(report, { [`${prefix}.backend.be_hist.weight.lb1.s1`]: held.s1 ?? Number.NaN, [`${prefix}.cycle.outcome`]: 0 });
    expect(ingest.statuses()).toContain(200);
  });

  it('reports a history that could not be sent as a warning, and keeps the outcome and exit code of the cycle', async () => {
    const [closed] = await freePorts(1);
    const run = await runCli(['apply', '--json', '--config', config({ carbon: { host: '127.0.0.1', port: closed, timeoutMs: 2000 } })]);
    expect(run.code).toBe(0);
    const report = singleReport(run.stdout);
    expect(report.outcome).toBe('ok');
    expect(report.problems).toEqual([
      expect.objectContaining({ code: 'history-not-sent', severity: 'warning', cause: expect.objectContaining({ type: 'history', message: expect.stringContaining('ECONNREFUSED') }) }),
    ]);

    const human = await runCli(['apply', '--config', config({ carbon: { host: '127.0.0.1', port: closed, timeoutMs: 2000 } })]);
    expect(human.code).toBe(0);
    expect(human.stdout).toContain(`  problem: the weight history was not sent to carbon at 127.0.0.1:${String(closed)} (the cycle itself is unaffected): carbon at 127.0.0.1:${String(closed)}: ECONNREFUSED`);
  });

  it('names a token the HTTP API refuses, as a warning', async () => {
    const run = await runCli(['apply', '--json', '--config', config({ http: { url: ingest.url, auth: { type: 'header', header: 'Authorization', prefix: 'Bearer ', valueEnv: 'HW_HISTORY_TOKEN' } } })], {
      env: { HW_HISTORY_TOKEN: '123456:wrong' },
    });
    expect(run.code).toBe(0);
    const [warning] = singleReport(run.stdout).problems;
    expect(warning).toMatchObject({ code: 'history-not-sent', severity: 'warning' });
    expect(warning?.cause?.message).toContain('HTTP 401: check the token (history.http.auth)');
    expect(run.stdout).not.toContain('123456:wrong');
  });

  it('sends the history after every cycle of run', async () => {
    const prefix = uniquePrefix('history-run');
    const cli = startCli(['run', '--json', '--interval', '0.2', '--config', config({ prefix, carbon: { host: '127.0.0.1', port: graphite.carbonPort } })]);
    try {
      await cli.waitForLines(3);
      cli.kill('SIGTERM');
      await cli.exited;
      const reports = parseReports(cli.lines().join('\n'));
      expect(reports.every((r) => r.problems.length === 0)).toBe(true);
      const last = reports.at(-1);
      if (last === undefined) throw new Error('no report');
      await readBack(last, { [`${prefix}.cycle.outcome`]: 0, [`${prefix}.cycle.servers_changed`]: last.serversChanged });
    } finally {
      await cli.stop();
    }
  });
});
