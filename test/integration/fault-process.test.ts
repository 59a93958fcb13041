/**
 * Fault matrix, process side, through the real CLI process:
 * - SIGTERM lands while a `run` cycle is in flight (held in Graphite by the delaying proxy): the
 *   cycle finishes, writes, prints its whole report, and the process exits 0.
 * - Two `apply` runs started together against the same sockets: a recording socket proxy in
 *   front of each HAProxy shows that their connections never overlap, so their batches cannot
 *   interleave. A control run without the shared lock shows that the proxy does see overlap.
 * (d) The Lambda has its own concurrency guard (reserved concurrency 1); here the report fields
 * its metrics derive from (serversChanged, outcome, failedLoadBalancers) are asserted.
 */
import { readFileSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { acquireRunLock, lockDirectory, lockPathFor } from '../../functions/adapters/run-lock.js';
import {
  cliRuntimeDir,
  isWriteBatch,
  parseReports,
  rewriteSeries,
  runCli,
  singleReport,
  startCli,
  startGraphiteFaultProxy,
  startSocketProxy,
  weightsAfter,
  writeConfigFile,
  type CliProcess,
  type ConnectionRecord,
  type GraphiteFaultProxy,
  type SocketProxy,
} from '../harness/faults.js';
import { feedLoads, uniquePrefix, type GraphiteClient } from '../harness/graphite.js';
import { startHaproxyFleet, stopAll, type HaproxyHandle } from '../harness/haproxy.js';
import { isProcessRunning, makeTempDir, removeTempDir } from '../harness/processes.js';
import { sharedGraphite } from '../harness/shared-graphite.js';

const BACKEND = 'be_ingest';
const SERVERS = ['s1', 's2', 's3'] as const;
/** How long the in-flight cycle is held in Graphite: well under the Graphite timeout below. */
const HOLD_MS = 1_500;

let graphite: GraphiteClient;
let target: string;
let dir: string;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  graphite = await sharedGraphite();
  target = await feedLoads(graphite, uniquePrefix('fault_process'), { s1: 4000, s2: 1000, s3: 1000 });
  dir = makeTempDir('hw-fault-process');
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

afterAll(() => {
  removeTempDir(dir);
});

let configCount = 0;
function configFile(graphiteUrl: string, loadBalancers: readonly { name: string; endpoint: string }[]): string {
  return writeConfigFile(
    dir,
    {
      graphite: { url: graphiteUrl, timeoutMs: HOLD_MS * 3, retries: 0 },
      relay: { type: 'socket', loadBalancers, connectTimeoutMs: 1000, readTimeoutMs: 10_000 },
      backends: [
        {
          name: BACKEND,
          target,
          from: '-15min',
          aggregation: 'average',
          weighting: { function: 'limited-proportions', limitingFactor: 4, aggressiveness: 1 },
        },
      ],
    },
    `config-${++configCount}.yaml`,
  );
}

async function fleetOf(count: number): Promise<HaproxyHandle[]> {
  const fleet = await startHaproxyFleet(count, { backends: [{ name: BACKEND, balance: 'leastconn', servers: SERVERS.map((name) => ({ name })) }] });
  cleanups.push(() => stopAll(fleet));
  return fleet;
}

async function weightsOf(lb: HaproxyHandle): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const s of SERVERS) out.set(`${BACKEND}/${s}`, (await lb.getWeight(BACKEND, s)).current);
  return out;
}

/** Graphite's reply with the loads of s1 and s2 swapped: the cycle that sees it must write. */
const swapS1S2 = (body: string): string =>
  rewriteSeries(body, (series) => series.map((s) => (s.target === 's1' ? { ...s, target: 's2' } : s.target === 's2' ? { ...s, target: 's1' } : s)));

describe('SIGTERM during run', () => {
  let proxy: GraphiteFaultProxy;
  let cli: CliProcess | undefined;

  beforeAll(async () => {
    proxy = await startGraphiteFaultProxy(graphite.url);
  });
  afterAll(async () => {
    await proxy.close();
  });
  afterEach(async () => {
    await cli?.stop();
    cli = undefined;
    await proxy.setFault({ kind: 'pass' });
    proxy.clear();
  });

  /**
   * Starts `run`, waits for two settled cycles, then holds the next cycle in Graphite (with new
   * loads it must write) and sends `signals` the moment its request arrives.
   */
  async function signalMidCycle(json: boolean, signals: readonly NodeJS.Signals[]) {
    const [lb] = await fleetOf(1);
    if (lb === undefined) throw new Error('fleet did not start');
    const args = ['run', '--interval', '0.2', '--config', configFile(proxy.url, [{ name: 'lb1', endpoint: lb.adminSocket }])];
    const running = startCli(json ? [...args, '--json'] : args);
    cli = running;
    if (json) await running.waitForLines(2);
    else await waitForText(running, 2);
    const before = await weightsOf(lb);

    let signalledAt: number | undefined;
    const unsubscribe = proxy.onRequest((record) => {
      if (signalledAt !== undefined || record.fault !== 'delay') return;
      signalledAt = record.seq;
      // Standard signals do not queue: a second one sent before the first is handled merges with
      // it. So the first goes at once, and the second again every 100 ms until the process exits,
      // however long a loaded machine takes to handle the first.
      const [first, second] = signals;
      if (first !== undefined) running.kill(first);
      if (second !== undefined) {
        const again = setInterval(() => running.kill(second), 100);
        void running.exited.then(() => clearInterval(again));
      }
    });
    await proxy.setFault({ kind: 'delay', ms: HOLD_MS, then: { kind: 'rewrite', rewrite: swapS1S2 } });
    const exit = await running.exited;
    unsubscribe();
    return { lb, exit, running, before, requests: proxy.requests.length, held: proxy.requests.filter((r) => r.fault === 'delay').length };
  }

  it('finishes the cycle in flight, prints its whole report and exits 0', async () => {
    const { lb, exit, running, before, requests, held } = await signalMidCycle(true, ['SIGTERM']);
    expect(exit).toEqual({ code: 0, signal: null });
    expect(held).toBe(1);
    const reports = parseReports(running.lines().join('\n'));
    // Every cycle that asked Graphite printed a report, including the one the signal interrupted.
    expect(reports).toHaveLength(requests);
    const last = reports[reports.length - 1];
    if (last === undefined) throw new Error('no report');
    expect(last.outcome).toBe('ok');
    // The held cycle saw swapped loads and wrote s1 and s2: the write happened after the signal.
    expect(last.serversChanged).toBe(2);
    const after = await weightsOf(lb);
    expect(after).toEqual(weightsAfter(last, 'lb1'));
    expect(after.get(`${BACKEND}/s2`)).toBeLessThan(before.get(`${BACKEND}/s2`) ?? 0);
    expect(running.stderr()).toBe('');
  });

  it('says it stopped after finishing the cycle in flight, in the human report too', async () => {
    const { exit, running } = await signalMidCycle(false, ['SIGTERM']);
    expect(exit.code).toBe(0);
    const out = running.lines().join('\n');
    expect(out.trimEnd()).toMatch(/outcome: ok \(2 weight\(s\) written; \d+ ms\)$/);
    expect(running.stderr()).toBe('haproxy-weighter: stopped by SIGTERM after finishing the cycle in flight\n');
  });

  it('exits 130 on a second signal without writing anything of the interrupted cycle', async () => {
    const { lb, exit, running, before } = await signalMidCycle(true, ['SIGTERM', 'SIGTERM']);
    expect(exit.code).toBe(130);
    // The cycle was still waiting for Graphite: nothing of it reached HAProxy.
    expect(await weightsOf(lb)).toEqual(before);
    expect(parseReports(running.lines().join('\n')).every((r) => r.outcome === 'ok')).toBe(true);
    // The killed run could not release its lock: the kernel did, so the next run takes it at once.
    const lockDir = await lockDirectory({ XDG_RUNTIME_DIR: cliRuntimeDir() });
    const owner = Number(readFileSync(lockPathFor(lb.adminSocket, lockDir), 'utf8'));
    expect(owner).toBe(running.pid);
    expect(isProcessRunning(owner)).toBe(false);
    await (await acquireRunLock([lb.adminSocket], { dir: lockDir, timeoutMs: 0 })).release();
    const next = await runCli(['apply', '--json', '--config', configFile(graphite.url, [{ name: 'lb1', endpoint: lb.adminSocket }])]);
    expect(next.code).toBe(0);
  });
});

async function waitForText(cli: CliProcess, cycles: number): Promise<void> {
  for (let lines = 1; ; lines++) {
    const seen = await cli.waitForLines(lines);
    if (seen.filter((l) => l.startsWith('outcome: ')).length >= cycles) return;
  }
}

describe('two apply runs at once against the same sockets', () => {
  /** [open, close] of every connection, in the order they opened. */
  function intervals(proxy: SocketProxy): ConnectionRecord[] {
    return [...proxy.connections].sort((a, b) => a.openedAt - b.openedAt);
  }

  async function twoRuns(sharedLock: boolean) {
    const fleet = await fleetOf(2);
    const proxies = await Promise.all(fleet.map((h) => startSocketProxy(h.adminSocket)));
    cleanups.push(async () => {
      for (const p of proxies) await p.close();
    });
    // Each observation is held until another client is connected too: if the second run could
    // start while the first is between observe and write, the proxies would record it. With a
    // shared lock no other client comes and the hold ends after 3 s; without one, the other run's
    // connection ends it as soon as it arrives, up to 8 s late (inside the 10 s read timeout) on a
    // loaded machine.
    const holdMs = sharedLock ? 3_000 : 8_000;
    for (const p of proxies) p.setFault((request) => (isWriteBatch(request) ? { kind: 'pass' } : { kind: 'delay-reply', ms: holdMs, untilAnotherConnection: true }));
    const config = configFile(graphite.url, proxies.map((p, i) => ({ name: `lb${i + 1}`, endpoint: p.path })));
    const lockDir = makeTempDir('hw-lock');
    cleanups.push(async () => removeTempDir(lockDir));
    const [a, b] = await Promise.all([
      runCli(['apply', '--force', '--json', '--config', config]),
      runCli(['apply', '--force', '--json', '--config', config], sharedLock ? {} : { env: { TMPDIR: lockDir, XDG_RUNTIME_DIR: '' } }),
    ]);
    return { fleet, proxies, a, b };
  }

  it('never lets their connections overlap: observe and write of one run, then of the other', async () => {
    const { fleet, proxies, a, b } = await twoRuns(true);
    expect([a.code, b.code]).toEqual([0, 0]);
    const reports = [singleReport(a.stdout), singleReport(b.stdout)];
    for (const r of reports) expect(r).toMatchObject({ outcome: 'ok', serversChanged: 6, failedLoadBalancers: [] });
    for (const proxy of proxies) {
      const conns = intervals(proxy);
      expect(conns.map((c) => (isWriteBatch(c.request) ? 'write' : 'observe'))).toEqual(['observe', 'write', 'observe', 'write']);
      for (let i = 1; i < conns.length; i++) {
        const previous = conns[i - 1];
        const current = conns[i];
        expect(previous?.closedAt).toBeDefined();
        expect(previous?.closedAt ?? Infinity).toBeLessThan(current?.openedAt ?? -Infinity);
      }
    }
    // Both runs wrote the same weights; what HAProxy holds is what the last report says.
    for (const [i, lb] of fleet.entries()) for (const r of reports) expect(await weightsOf(lb)).toEqual(weightsAfter(r, `lb${i + 1}`));
  });

  it('records overlapping connections when the two runs do not share a lock (the detector works)', async () => {
    const { proxies, a, b } = await twoRuns(false);
    expect([a.code, b.code]).toEqual([0, 0]);
    for (const proxy of proxies) {
      const [first, second] = intervals(proxy);
      expect(second?.openedAt ?? Infinity).toBeLessThan(first?.closedAt ?? -Infinity);
    }
  });
});
