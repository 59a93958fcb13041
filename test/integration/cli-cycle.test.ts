/**
 * The rebalance cycle end to end through the real CLI, against real HAProxy processes (one per
 * emulated load balancer) and the real Graphite of the test run. Every assertion about weights
 * reads them back from HAProxy itself with `get weight`.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { CycleReport } from '../../functions/core/cycle.js';
import { feedLoads, uniquePrefix, type GraphiteClient } from '../harness/graphite.js';
import { startHaproxy, startHaproxyFleet, stopAll, type BackendSpec, type HaproxyHandle } from '../harness/haproxy.js';
import { sharedGraphite } from '../harness/shared-graphite.js';
import { parseReports, runCli, singleReport, startCli } from '../harness/cli.js';
import { problemsOf } from '../harness/report.js';

function reportOf(run: { readonly stdout: string }): CycleReport {
  return singleReport(run.stdout);
}

/** Starts `run --json`, waits for `count` reports, sends SIGTERM and returns the exit code and every report. */
async function runUntil(count: number, configPath: string): Promise<{ code: number | null; reports: CycleReport[] }> {
  const cli = startCli(['run', '--json', '--interval', '0.2', '--config', configPath]);
  try {
    await cli.waitForLines(count);
    cli.kill('SIGTERM');
    const { code } = await cli.exited;
    return { code, reports: parseReports(cli.lines().join('\n')) };
  } finally {
    await cli.stop();
  }
}

let graphite: GraphiteClient;
const dirs: string[] = [];
const started: HaproxyHandle[] = [];

beforeAll(async () => {
  graphite = await sharedGraphite();
});
afterEach(async () => {
  await stopAll(started.splice(0));
});
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function writeConfig(config: unknown): string {
  const dir = mkdtempSync(join(tmpdir(), 'hw-cli-'));
  dirs.push(dir);
  const path = join(dir, 'config.yaml');
  writeFileSync(path, stringify(config));
  return path;
}

function configFor(prefix: string, lbs: readonly { name: string; endpoint: string }[], backends: readonly Record<string, unknown>[], graphiteUrl = graphite.url) {
  return {
    graphite: { url: graphiteUrl, timeoutMs: 3000, retries: 1 },
    relay: { type: 'socket', loadBalancers: lbs, connectTimeoutMs: 1000, readTimeoutMs: 3000 },
    backends: backends.map((b) => ({
      target: `aliasByNode(${prefix}.*.load, ${prefix.split('.').length})`,
      from: '-2min',
      aggregation: 'average',
      weighting: { function: 'limited-proportions', limitingFactor: 4, aggressiveness: 1 },
      ...b,
    })),
  };
}

const feed = (prefix: string, loads: Record<string, number>): Promise<string> => feedLoads(graphite, prefix, loads);

const ingest = (servers: BackendSpec['servers'], name = 'be_ingest', balance: BackendSpec['balance'] = 'leastconn'): BackendSpec => ({ name, balance, servers });
const lbsOf = (handles: readonly HaproxyHandle[]) => handles.map((h, i) => ({ name: `lb${i + 1}`, endpoint: h.adminSocket }));

describe('haproxy-weighter apply against real HAProxy and Graphite', () => {
  it('gives the loaded server a lower weight than the others on every load balancer', async () => {
    const prefix = uniquePrefix('loaded');
    const fleet = await startHaproxyFleet(3, { backends: [ingest([{ name: 's1' }, { name: 's2' }, { name: 's3' }, { name: 's4' }])] });
    started.push(...fleet);
    await feed(prefix, { s1: 5000, s2: 1000, s3: 1000, s4: 1000 });
    const run = await runCli(['apply', '--json', '--config', writeConfig(configFor(prefix, lbsOf(fleet), [{ name: 'be_ingest' }]))]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(reportOf(run).outcome).toBe('ok');
    for (const lb of fleet) {
      const s1 = (await lb.getWeight('be_ingest', 's1')).current;
      for (const other of ['s2', 's3', 's4']) expect(s1).toBeLessThan((await lb.getWeight('be_ingest', other)).current);
      expect((await lb.getWeight('be_ingest', 's2')).current).toBe(256);
    }
  });

  it('leaves MAINT, DRAIN and weight-0 servers untouched and keeps the share of a server without metrics', async () => {
    const prefix = uniquePrefix('guards');
    const lb = await startHaproxy({
      backends: [
        ingest([
          { name: 'busy' },
          { name: 'idle' },
          { name: 'idle2' },
          { name: 'maint', state: 'maint', weight: 50 },
          { name: 'drain', state: 'drain', weight: 60 },
          { name: 'zero', weight: 0 },
          { name: 'nodata', weight: 70 },
        ]),
      ],
    });
    started.push(lb);
    await feed(prefix, { busy: 900, idle: 100, idle2: 100, maint: 1, drain: 1, zero: 1 });
    const run = await runCli(['apply', '--json', '--config', writeConfig(configFor(prefix, lbsOf([lb]), [{ name: 'be_ingest' }]))]);
    expect(run.code).toBe(0);
    expect((await lb.getWeight('be_ingest', 'maint')).current).toBe(50);
    expect((await lb.getWeight('be_ingest', 'drain')).current).toBe(60);
    expect((await lb.getWeight('be_ingest', 'zero')).current).toBe(0);
    // The weighed servers went from 100 each to new weights; nodata's share of the weight of the
    // servers in play (70 of 370 before) is the same after.
    const weighed = await Promise.all(['busy', 'idle', 'idle2'].map(async (s) => (await lb.getWeight('be_ingest', s)).current));
    const nodata = (await lb.getWeight('be_ingest', 'nodata')).current;
    expect(nodata / (nodata + weighed.reduce((a, b) => a + b, 0))).toBeCloseTo(70 / 370, 2);
    expect(weighed[0]).toBeLessThan(weighed[1] ?? 0);
    const plan = reportOf(run).backends[0]?.loadBalancers[0]?.plan;
    const reasons = Object.fromEntries((plan?.actions ?? []).filter((a) => a.kind === 'skip').map((a) => [a.server, a.kind === 'skip' ? a.reason : '']));
    expect(reasons).toEqual({ maint: 'maint', drain: 'drain', zero: 'weight-zero' });
    expect(plan?.actions.find((a) => a.server === 'nodata')).toMatchObject({ rule: 'keep-share', load: null });
  });

  it('writes nothing with plan, and shows what it would do in a table', async () => {
    const prefix = uniquePrefix('plan');
    const lb = await startHaproxy({ backends: [ingest([{ name: 's1' }, { name: 's2' }])] });
    started.push(lb);
    await feed(prefix, { s1: 3000, s2: 1000 });
    const run = await runCli(['plan', '--config', writeConfig(configFor(prefix, lbsOf([lb]), [{ name: 'be_ingest' }]))]);
    expect(run.code).toBe(0);
    // server, load, load now, sessions, weight, target, new, rule, action
    expect(run.stdout).toMatch(/s1\s+3000\s+-\s+0\s+100\s+[\d.]+\s+\d+\s+function\s+set-weight/);
    expect(run.stdout).toContain('plan only, nothing written');
    expect((await lb.getWeight('be_ingest', 's1')).current).toBe(100);
    expect((await lb.getWeight('be_ingest', 's2')).current).toBe(100);
  });

  it('writes nothing, exits 1 and names Graphite and its URL when Graphite is down', async () => {
    const prefix = uniquePrefix('down');
    const lb = await startHaproxy({ backends: [ingest([{ name: 's1' }, { name: 's2' }])] });
    started.push(lb);
    const deadUrl = 'http://127.0.0.1:9';
    const run = await runCli(['apply', '--config', writeConfig(configFor(prefix, lbsOf([lb]), [{ name: 'be_ingest' }], deadUrl))]);
    expect(run.code).toBe(1);
    expect(run.stdout).toContain('Graphite');
    expect(run.stdout).toContain('127.0.0.1:9');
    expect((await lb.getWeight('be_ingest', 's1')).current).toBe(100);
  });

  it('updates the other load balancers, exits 3 and names the one whose socket is missing', async () => {
    const prefix = uniquePrefix('missing');
    const fleet = await startHaproxyFleet(2, { backends: [ingest([{ name: 's1' }, { name: 's2' }])] });
    started.push(...fleet);
    await feed(prefix, { s1: 4000, s2: 1000 });
    const lbs = [...lbsOf(fleet), { name: 'lb-gone', endpoint: join(tmpdir(), `no-such-${process.pid}.sock`) }];
    const run = await runCli(['apply', '--json', '--config', writeConfig(configFor(prefix, lbs, [{ name: 'be_ingest' }]))]);
    expect(run.code).toBe(3);
    const report = reportOf(run);
    expect(report.outcome).toBe('partial');
    expect(report.failedLoadBalancers).toEqual(['lb-gone']);
    expect(problemsOf(report)).toEqual([['observe-failed', 'lb-gone', null, null]]);
    for (const lb of fleet) expect((await lb.getWeight('be_ingest', 's1')).current).toBeLessThan(100);
  });

  it('reports a static-rr backend as unsupported and changes nothing', async () => {
    const prefix = uniquePrefix('static');
    const lb = await startHaproxy({ backends: [ingest([{ name: 's1' }, { name: 's2' }], 'be_static', 'static-rr')] });
    started.push(lb);
    await feed(prefix, { s1: 4000, s2: 1000 });
    const run = await runCli(['apply', '--json', '--config', writeConfig(configFor(prefix, lbsOf([lb]), [{ name: 'be_static' }]))]);
    expect(run.code).toBe(1);
    const plan = reportOf(run).backends[0]?.loadBalancers[0]?.plan;
    expect(plan).toMatchObject({ status: 'skipped', reason: 'unsupported-algorithm' });
    expect(problemsOf(reportOf(run))).toEqual([['unsupported-algorithm', 'lb1', 'be_static', null]]);
    expect((await lb.getWeight('be_static', 's1')).current).toBe(100);
  });

  it('gives a clear permission error for a socket at level operator', async () => {
    const prefix = uniquePrefix('operator');
    const lb = await startHaproxy({ backends: [ingest([{ name: 's1' }, { name: 's2' }])] });
    started.push(lb);
    await feed(prefix, { s1: 4000, s2: 1000 });
    const run = await runCli(['apply', '--config', writeConfig(configFor(prefix, [{ name: 'lb-op', endpoint: lb.operatorSocket }], [{ name: 'be_ingest' }]))]);
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/lb-op.*[Pp]ermission denied.*level admin/s);
    expect((await lb.getWeight('be_ingest', 's1')).current).toBe(100);
  });

  it('reaches a runtime API exposed over TCP', async () => {
    const prefix = uniquePrefix('tcp');
    const lb = await startHaproxy({ backends: [ingest([{ name: 's1' }, { name: 's2' }])], tcpRuntime: true });
    started.push(lb);
    await feed(prefix, { s1: 4000, s2: 1000 });
    const endpoint = lb.tcpEndpoint;
    if (endpoint === undefined) throw new Error('no tcp endpoint');
    const run = await runCli(['apply', '--json', '--config', writeConfig(configFor(prefix, [{ name: 'lb-tcp', endpoint }], [{ name: 'be_ingest' }]))]);
    expect(run.code).toBe(0);
    expect((await lb.getWeight('be_ingest', 's1')).current).toBeLessThan((await lb.getWeight('be_ingest', 's2')).current);
  });

  it('run repeats cycles and, on SIGTERM, finishes the cycle in flight and exits 0', async () => {
    const prefix = uniquePrefix('run');
    const lb = await startHaproxy({ backends: [ingest([{ name: 's1' }, { name: 's2' }])] });
    started.push(lb);
    await feed(prefix, { s1: 4000, s2: 1000 });
    const { code, reports } = await runUntil(3, writeConfig(configFor(prefix, lbsOf([lb]), [{ name: 'be_ingest' }])));
    expect(code).toBe(0);
    expect(reports.length).toBeGreaterThanOrEqual(3);
    // Every cycle printed is a whole report: the first writes, the following ones find nothing to change.
    expect(reports[0]?.serversChanged).toBe(2);
    for (const r of reports.slice(1)) expect(r).toMatchObject({ outcome: 'ok', serversChanged: 0 });
  });

  it('run stops writing to a map-based hashing backend after HAProxy refused every weight once', async () => {
    const prefix = uniquePrefix('mapbased');
    const lb = await startHaproxy({ backends: [{ name: 'be_src', balance: 'source', hashType: 'map-based', servers: [{ name: 's1' }, { name: 's2' }] }] });
    started.push(lb);
    await feed(prefix, { s1: 4000, s2: 1000 });
    const { code, reports } = await runUntil(2, writeConfig(configFor(prefix, lbsOf([lb]), [{ name: 'be_src' }])));
    expect(code).toBe(0);
    const [first, second] = reports;
    expect(first?.staticRefusals).toEqual(['be_src@lb1']);
    expect(problemsOf(first ?? { problems: [] })).toEqual([['static-refused', 'lb1', 'be_src', null]]);
    expect(second?.backends[0]?.loadBalancers[0]?.plan).toMatchObject({ status: 'skipped', reason: 'unsupported-algorithm' });
    expect(second?.loadBalancers[0]?.apply).toBe('not-needed');
    expect((await lb.getWeight('be_src', 's1')).current).toBe(100);
  });
});
