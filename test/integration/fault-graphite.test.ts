/**
 * Fault matrix, Graphite side: the real CLI (`apply --json`) against two real HAProxy processes
 * and the real Graphite of the test run, reached through a fault proxy that passes the real
 * replies through or breaks them in one specific way. Every case asserts
 *   (a) the exit code and the report's outcome,
 *   (b) the weight every HAProxy holds afterwards (`get weight`, not the report),
 *   (c) the problem's code (which Graphite failure) and that its cause names what failed,
 *   (d) the metrics: the CLI has none, so the report is fed to the Lambda's own emitCycleMetrics
 *       and the CloudWatch values it would emit (GraphiteFailures, ServersChanged,
 *       LoadBalancersFailed) are asserted; they derive from graphite.ok, serversChanged and
 *       failedLoadBalancers.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { CycleReport, ProblemCode } from '../../functions/core/cycle.js';
import {
  lambdaMetricsFor,
  problemsOf,
  rewriteSeries,
  runCli,
  singleReport,
  startGraphiteFaultProxy,
  withRawTimestamp,
  withRawValue,
  writeConfigFile,
  type GraphiteFault,
  type GraphiteFaultProxy,
} from '../harness/faults.js';
import { feedLoads, uniquePrefix } from '../harness/graphite.js';
import { currentWeights, resetWeights, startHaproxyFleet, stopAll, type HaproxyHandle } from '../harness/haproxy.js';
import { makeTempDir, removeTempDir } from '../harness/processes.js';
import { sharedGraphite } from '../harness/shared-graphite.js';

const BACKEND = 'be_ingest';
const SERVERS = ['s1', 's2', 's3'] as const;
const TIMEOUT_MS = 2_000;
const RETRIES = 2;
const MAX_BYTES = 1024 * 1024;
const FIFTY_MB = 50 * 1024 * 1024;

let fleet: HaproxyHandle[] = [];
let proxy: GraphiteFaultProxy;
let dir: string;
let configPath: string;

beforeAll(async () => {
  const graphite = await sharedGraphite();
  const target = await feedLoads(graphite, uniquePrefix('fault_graphite'), { s1: 4000, s2: 1000, s3: 1000 });
  fleet = await startHaproxyFleet(2, { backends: [{ name: BACKEND, balance: 'leastconn', servers: SERVERS.map((name) => ({ name })) }] });
  proxy = await startGraphiteFaultProxy(graphite.url);
  dir = makeTempDir('hw-fault-graphite');
  configPath = writeConfigFile(dir, {
    graphite: { url: proxy.url, timeoutMs: TIMEOUT_MS, retries: RETRIES, maxResponseBytes: MAX_BYTES },
    relay: { type: 'socket', loadBalancers: fleet.map((h, i) => ({ name: `lb${i + 1}`, endpoint: h.adminSocket })), connectTimeoutMs: 1000, readTimeoutMs: 3000 },
    backends: [
      {
        name: BACKEND,
        target,
        // Wide enough that the points written above stay in the window for the whole file.
        from: '-15min',
        aggregation: 'average',
        weighting: { function: 'limited-proportions', limitingFactor: 4, aggressiveness: 1 },
      },
    ],
  });
});

afterAll(async () => {
  await proxy.close();
  await stopAll(fleet);
  removeTempDir(dir);
});

beforeEach(async () => {
  await proxy.setFault({ kind: 'pass' });
  proxy.clear();
  // Every case starts from the configured weights, so "unchanged" means exactly 100 everywhere.
  await resetWeights(fleet, BACKEND, SERVERS);
});

async function apply(): Promise<{ code: number | null; report: CycleReport; stdout: string }> {
  const run = await runCli(['apply', '--json', '--config', configPath]);
  expect(run.stderr).toBe('');
  return { code: run.code, report: singleReport(run.stdout), stdout: run.stdout };
}

async function weightsOnEveryLoadBalancer(): Promise<Record<string, number>[]> {
  const out: Record<string, number>[] = [];
  for (const lb of fleet) out.push(await currentWeights(lb, BACKEND, SERVERS));
  return out;
}

const UNCHANGED = { s1: 100, s2: 100, s3: 100 };

describe('Graphite faults: nothing is written, the report names Graphite and the cause', () => {
  it('balances normally through the proxy when no fault is set (the control case)', async () => {
    const { code, report } = await apply();
    expect(code).toBe(0);
    expect(report.outcome).toBe('ok');
    const weights = await weightsOnEveryLoadBalancer();
    for (const w of weights) {
      expect(w.s1).toBeLessThan(100);
      expect(w.s2).toBe(256);
      expect(w.s3).toBe(256);
    }
    expect(report.serversChanged).toBe(6);
    expect(lambdaMetricsFor(report).totals).toMatchObject({ GraphiteFailures: 0, ServersChanged: 6, LoadBalancersFailed: 0 });
    expect(proxy.requests).toHaveLength(1);
  });

  const failures: [string, () => GraphiteFault, RegExp, number, ProblemCode][] = [
    ['connection refused', () => ({ kind: 'refuse' }), /failed after 3 attempt\(s\).*ECONNREFUSED/, 0, 'graphite-unreachable'],
    ['a connection reset', () => ({ kind: 'reset' }), /failed after 3 attempt\(s\).*(ECONNRESET|socket|closed)/i, 3, 'graphite-unreachable'],
    ['an answer slower than the timeout', () => ({ kind: 'delay', ms: TIMEOUT_MS * 2 }), new RegExp(`failed after 3 attempt\\(s\\): no answer within ${TIMEOUT_MS} ms`), 3, 'graphite-unreachable'],
    ['HTTP 500 on every attempt', () => ({ kind: 'status', status: 500, count: 100 }), /failed after 3 attempt\(s\): HTTP 500/, 3, 'graphite-http-status'],
    ['HTTP 502 on every attempt', () => ({ kind: 'status', status: 502, count: 100 }), /failed after 3 attempt\(s\): HTTP 502/, 3, 'graphite-http-status'],
    ['HTTP 429 on every attempt', () => ({ kind: 'status', status: 429, count: 100 }), /failed after 3 attempt\(s\): HTTP 429/, 3, 'graphite-http-status'],
    ['HTTP 429 asking to retry after 2 minutes', () => ({ kind: 'status', status: 429, count: 100, retryAfter: '120' }), /failed after 1 attempt\(s\): HTTP 429: fault proxy: HTTP 429; it asked to retry after 120 s \(Retry-After\), longer than the 5 s this client waits/, 1, 'graphite-http-status'],
    ['HTTP 401 (a key Graphite does not accept)', () => ({ kind: 'status', status: 401, count: 100 }), /did not accept the credentials \(HTTP 401\): graphite\.auth\.type is none, so no key was sent/, 1, 'graphite-auth'],
    ['HTTP 403', () => ({ kind: 'status', status: 403, count: 100 }), /refused this request with these credentials \(HTTP 403\): graphite\.auth\.type is none/, 1, 'graphite-auth'],
    ['HTTP 404', () => ({ kind: 'status', status: 404, count: 100 }), /answered HTTP 404/, 1, 'graphite-http-status'],
    ['an HTML page instead of JSON', () => ({ kind: 'body', body: '<html><body><h1>502 Bad Gateway</h1></body></html>', contentType: 'text/html' }), /did not answer JSON/, 1, 'graphite-bad-reply'],
    ['truncated JSON', () => ({ kind: 'rewrite', rewrite: (body) => body.slice(0, Math.floor(body.length / 2)) }), /did not answer JSON/, 1, 'graphite-bad-reply'],
    ['a JSON object instead of a list', () => ({ kind: 'rewrite', rewrite: (body) => JSON.stringify({ series: JSON.parse(body) as unknown }) }), /not a list of series/, 1, 'graphite-bad-reply'],
    ['series without target and datapoints', () => ({ kind: 'rewrite', rewrite: (body) => rewriteSeries(body, (s) => s.map((x) => ({ name: x.target, values: x.datapoints }))) }), /series #0 lacks a string "target" and a "datapoints" list/, 1, 'graphite-bad-reply'],
    ['datapoints that are not [value, timestamp] pairs', () => ({ kind: 'rewrite', rewrite: (body) => rewriteSeries(body, (s) => s.map((x) => ({ ...x, datapoints: x.datapoints.map(([v]) => v) }))) }), /has a datapoint that is not \[value, timestamp\]/, 1, 'graphite-bad-reply'],
    ['a negative value', () => ({ kind: 'rewrite', rewrite: (body) => withRawValue(body, 's2', '-5') }), /series "s2" has value -5; loads must be finite numbers in 0\.\.1000000000000/, 1, 'graphite-bad-reply'],
    ['the string "NaN" as a value', () => ({ kind: 'rewrite', rewrite: (body) => withRawValue(body, 's2', '"NaN"') }), /series "s2" has value "NaN"/, 1, 'graphite-bad-reply'],
    ['a bare NaN token', () => ({ kind: 'rewrite', rewrite: (body) => withRawValue(body, 's2', 'NaN') }), /did not answer JSON/, 1, 'graphite-bad-reply'],
    ['a bare Infinity token', () => ({ kind: 'rewrite', rewrite: (body) => withRawValue(body, 's2', 'Infinity') }), /did not answer JSON/, 1, 'graphite-bad-reply'],
    ['a number too large for a double (1e309, parsed as Infinity)', () => ({ kind: 'rewrite', rewrite: (body) => withRawValue(body, 's2', '1e309') }), /series "s2" has value Infinity/, 1, 'graphite-bad-reply'],
    ['an implausibly huge value', () => ({ kind: 'rewrite', rewrite: (body) => withRawValue(body, 's2', '1e13') }), /series "s2" has value 10000000000000; loads must be finite/, 1, 'graphite-bad-reply'],
    ['a number sent as a string', () => ({ kind: 'rewrite', rewrite: (body) => withRawValue(body, 's2', '"1000"') }), /series "s2" has value "1000"/, 1, 'graphite-bad-reply'],
    ['timestamps sent as strings', () => ({ kind: 'rewrite', rewrite: (body) => withRawTimestamp(body, 's2', '"1700000000"') }), /series "s2" has timestamp "1700000000" at point #0; timestamps must be epoch seconds/, 1, 'graphite-bad-reply'],
    ['timestamps that are objects', () => ({ kind: 'rewrite', rewrite: (body) => withRawTimestamp(body, 's2', '{"at":1}') }), /series "s2" has timestamp \{"at":1\} at point #0/, 1, 'graphite-bad-reply'],
    ['null timestamps', () => ({ kind: 'rewrite', rewrite: (body) => withRawTimestamp(body, 's2', 'null') }), /series "s2" has timestamp null at point #0/, 1, 'graphite-bad-reply'],
    ['timestamps in epoch milliseconds', () => ({ kind: 'rewrite', rewrite: (body) => rewriteSeries(body, (s) => s.map((x) => ({ ...x, datapoints: x.datapoints.map(([v, t]) => [v, t * 1000]) }))) }), /has timestamp \d{13} \(epoch milliseconds\?\) at point #0/, 1, 'graphite-bad-reply'],
    ['timestamps going backwards', () => ({ kind: 'rewrite', rewrite: (body) => rewriteSeries(body, (s) => s.map((x) => ({ ...x, datapoints: [...x.datapoints].reverse() }))) }), /at point #1, not later than \d+ at point #0; timestamps must increase/, 1, 'graphite-bad-reply'],
    ['a 50 MB body streamed without a length', () => ({ kind: 'huge', bytes: FIFTY_MB, declareLength: false }), new RegExp(`sent more than maxResponseBytes ${MAX_BYTES}`), 1, 'graphite-bad-reply'],
    ['a 50 MB body with its Content-Length', () => ({ kind: 'huge', bytes: FIFTY_MB, declareLength: true }), new RegExp(`sent ${FIFTY_MB} bytes, more than maxResponseBytes ${MAX_BYTES}`), 1, 'graphite-bad-reply'],
  ];

  it.each(failures)('writes nothing, exits 1 and names the cause for %s', async (_what, fault, cause, attempts, problemCode) => {
    await proxy.setFault(fault());
    const { code, report } = await apply();

    expect(code).toBe(1);
    expect(report.outcome).toBe('failed');
    expect(await weightsOnEveryLoadBalancer()).toEqual([UNCHANGED, UNCHANGED]);
    const [backend] = report.backends;
    expect(backend?.graphite.ok).toBe(false);
    const error = backend?.graphite.error ?? '';
    expect(error).toMatch(/^Graphite at http:\/\/127\.0\.0\.1:\d+\/render\?target=/);
    expect(error).toMatch(cause);
    expect(problemsOf(report)).toEqual([[problemCode, null, BACKEND, null]]);
    expect(report.problems[0]?.cause).toEqual({ type: 'graphite', kind: problemCode.slice('graphite-'.length), message: error });
    for (const lb of backend?.loadBalancers ?? []) expect(lb.plan).toMatchObject({ status: 'skipped', reason: 'graphite-failed' });
    expect(lambdaMetricsFor(report).totals).toMatchObject({ GraphiteFailures: 1, ServersChanged: 0, LoadBalancersFailed: 0 });
    expect(report.failedLoadBalancers).toEqual([]);
    expect(proxy.requests).toHaveLength(attempts);
  });

  it('stops reading a 50 MB body at the size cap instead of downloading it', async () => {
    await proxy.setFault({ kind: 'huge', bytes: FIFTY_MB, declareLength: false });
    const { code } = await apply();
    expect(code).toBe(1);
    const [body] = proxy.hugeBodies;
    expect(body?.completed).toBe(false);
    // The socket buffers hold a few MB at most: far from the 50 MB the proxy would have sent.
    expect(body?.sent).toBeLessThan(FIFTY_MB / 2);
  });

  it.each([
    ['HTTP 500', 500],
    ['HTTP 502', 502],
    ['HTTP 429', 429],
  ])('retries after %s and balances when the next attempt succeeds', async (_what, status) => {
    await proxy.setFault({ kind: 'status', status, count: 1 });
    const { code, report } = await apply();
    expect(code).toBe(0);
    expect(report.outcome).toBe('ok');
    expect(proxy.requests.map((r) => r.fault)).toEqual(['status', 'pass']);
    for (const w of await weightsOnEveryLoadBalancer()) expect(w.s1).toBeLessThan(w.s2 ?? 0);
    expect(lambdaMetricsFor(report).totals).toMatchObject({ GraphiteFailures: 0, ServersChanged: 6 });
  });
});

describe('Retries through undici\'s retry interceptor, with jitter and Retry-After', () => {
  it('waits what Retry-After asks (1 s) before the next attempt, then balances', async () => {
    await proxy.setFault({ kind: 'status', status: 503, count: 1, retryAfter: '1' });
    const { code, report } = await apply();
    expect(code).toBe(0);
    expect(report.outcome).toBe('ok');
    const [first, second] = proxy.requests;
    expect(proxy.requests.map((r) => r.fault)).toEqual(['status', 'pass']);
    // A lower bound only: a loaded machine makes the gap longer, never shorter. Without
    // Retry-After the first wait is 100 to 200 ms. 10 ms of slack for timers that fire a little
    // early on a cached loop clock.
    expect((second?.at ?? 0) - (first?.at ?? 0)).toBeGreaterThanOrEqual(990);
  });

  it('spaces its attempts at least by the lower bounds of the backoff (100 ms, then 200 ms)', async () => {
    await proxy.setFault({ kind: 'status', status: 500, count: 100 });
    const { code } = await apply();
    expect(code).toBe(1);
    const at = proxy.requests.map((r) => r.at);
    expect(at).toHaveLength(3);
    // Lower bounds only, with 10 ms of slack for timers that fire a little early on a cached loop
    // clock; retries without a backoff would come within a few milliseconds.
    expect((at[1] ?? 0) - (at[0] ?? 0)).toBeGreaterThanOrEqual(90);
    expect((at[2] ?? 0) - (at[1] ?? 0)).toBeGreaterThanOrEqual(190);
  });
});

describe('Graphite answers that are valid but not usable: each server without trustworthy data keeps its weight', () => {
  it('changes nothing and names the quorum for an empty list', async () => {
    await proxy.setFault({ kind: 'body', body: '[]' });
    const { code, report } = await apply();
    expect(code).toBe(1);
    expect(report.outcome).toBe('failed');
    expect(await weightsOnEveryLoadBalancer()).toEqual([UNCHANGED, UNCHANGED]);
    expect(problemsOf(report)).toEqual([
      ['no-quorum', 'lb1', BACKEND, null],
      ['no-quorum', 'lb2', BACKEND, null],
    ]);
    expect(report.problems[0]?.message).toBe('only 0 of 3 servers have data, quorum is 50%: no weight changed');
    expect(report.backends[0]?.graphite).toEqual({ ok: true, error: null, unmapped: [], unknownServers: [] });
    expect(lambdaMetricsFor(report).totals).toMatchObject({ GraphiteFailures: 0, ServersChanged: 0, LoadBalancersFailed: 0 });
  });

  it('changes nothing and says "only null points" for all-null series', async () => {
    await proxy.setFault({ kind: 'rewrite', rewrite: (body) => rewriteSeries(body, (s) => s.map((x) => ({ ...x, datapoints: x.datapoints.map(([, t]) => [null, t]) }))) });
    const { code, report } = await apply();
    expect(code).toBe(1);
    expect(await weightsOnEveryLoadBalancer()).toEqual([UNCHANGED, UNCHANGED]);
    // Every series is there, with no point in the window: the window is shorter than the metrics' delay.
    expect(problemsOf(report).map(([code]) => code)).toEqual(['window-empty', 'no-quorum', 'no-quorum']);
    expect(report.problems[0]?.severity).toBe('warning');
    const details = report.backends[0]?.loadBalancers[0]?.plan.actions.map((a) => (a.kind === 'skip' ? a.detail : a.kind));
    expect(details).toEqual(Array(3).fill('only null points in the window: keeps its weight'));
    expect(lambdaMetricsFor(report).totals).toMatchObject({ GraphiteFailures: 0, ServersChanged: 0 });
  });

  it('keeps the share of a server with two series and names the ambiguity', async () => {
    await proxy.setFault({
      kind: 'rewrite',
      rewrite: (body) => rewriteSeries(body, (s) => [...s, { target: 's1', datapoints: [[1, 1_700_000_000]] }]),
    });
    const { code, report } = await apply();
    expect(code).toBe(0);
    // s2 and s3 go from 100 to 256 each: s1 moves with them, keeping its third of new connections.
    for (const w of await weightsOnEveryLoadBalancer()) expect(w).toEqual({ s1: 256, s2: 256, s3: 256 });
    const s1 = report.backends[0]?.loadBalancers[0]?.plan.actions.find((a) => a.server === 's1');
    expect(s1).toMatchObject({ kind: 'set-weight', load: null, rule: 'keep-share', detail: 'several Graphite series map to this server' });
    expect(lambdaMetricsFor(report).totals).toMatchObject({ GraphiteFailures: 0, ServersChanged: 6 });
  });

  /** Real series plus two for servers no load balancer has; returns the control run's report and weights. */
  async function withGhosts(): Promise<{ control: CycleReport; expected: Record<string, number>[]; report: CycleReport; code: number | null }> {
    const control = await apply();
    const expected = await weightsOnEveryLoadBalancer();
    await resetWeights(fleet, BACKEND, SERVERS);
    await proxy.setFault({
      kind: 'rewrite',
      rewrite: (body) => rewriteSeries(body, (s) => [...s, { target: 'ghost1', datapoints: [[1, 1_700_000_000]] }, { target: 'ghost2', datapoints: [[90_000, 1_700_000_000]] }]),
    });
    const { code, report } = await apply();
    return { control: control.report, expected, report, code };
  }

  it('weights the known servers exactly as without series for unknown servers', async () => {
    const { control, expected, report, code } = await withGhosts();
    expect(code).toBe(0);
    expect(await weightsOnEveryLoadBalancer()).toEqual(expected);
    expect(report.serversChanged).toBe(control.serversChanged);
  });

  it('names the series for servers no load balancer has', async () => {
    const { report } = await withGhosts();
    expect(report.backends[0]?.graphite.unknownServers).toEqual(['ghost1', 'ghost2']);
    expect(report.problems).toEqual([]);
  });

  it('keeps series for unknown servers out of the backend imbalance (the Imbalance metric and its alarm)', async () => {
    const { control, report } = await withGhosts();
    expect(report.backends[0]?.imbalance).toBe(control.backends[0]?.imbalance);
    expect(lambdaMetricsFor(report).totals['MaxImbalance']).toBe(lambdaMetricsFor(control).totals['MaxImbalance']);
  });

  it('changes nothing when every series names an unknown server', async () => {
    await proxy.setFault({ kind: 'rewrite', rewrite: (body) => rewriteSeries(body, (s) => s.map((x, i) => ({ ...x, target: `ghost${i}` }))) });
    const { code, report } = await apply();
    expect(code).toBe(1);
    expect(await weightsOnEveryLoadBalancer()).toEqual([UNCHANGED, UNCHANGED]);
    expect(problemsOf(report).map(([code]) => code)).toEqual(['no-quorum', 'no-quorum']);
    expect(report.backends[0]?.graphite.unknownServers).toEqual(['ghost0', 'ghost1', 'ghost2']);
    expect(lambdaMetricsFor(report).totals).toMatchObject({ ServersChanged: 0 });
  });
});
