/**
 * Fault matrix, HAProxy side: real HAProxy processes, the real Graphite of the test run, and the
 * real CLI wherever the fault can be set up from outside; the two races (a server removed, or put
 * in MAINT, between observe and act) run the real cycle in-process with the socket relay wrapped
 * so that HAProxy is changed right after the observe round trip. Every case asserts
 *   (a) exit code (exitCodeFor for the in-process cases) and outcome,
 *   (b) the weight every HAProxy holds afterwards, read with `get weight`,
 *   (c) the problems by code and place (load balancer, backend, server) and the cause's class,
 *   (d) the metrics the Lambda would emit for the report (LoadBalancersFailed and the
 *       LoadBalancerFailed dimension, ServersChanged): they derive from failedLoadBalancers and
 *       serversChanged.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createGraphiteSource } from '../../functions/adapters/graphite.js';
import { createSocketRelay } from '../../functions/adapters/socket-relay.js';
import { parseConfig } from '../../functions/core/config.js';
import { exitCodeFor, runCycle, type CycleReport } from '../../functions/core/cycle.js';
import type { RuntimeRelay } from '../../functions/core/types.js';
import {
  checkedReport,
  commandsThroughFirstWrite,
  isWriteBatch,
  lambdaMetricsFor,
  problemsOf,
  runCli,
  singleReport,
  startSilentSocket,
  startSocketProxy,
  writeConfigFile,
  type ConnectionFault,
} from '../harness/faults.js';
import { feedLoads, uniquePrefix, type GraphiteClient } from '../harness/graphite.js';
import { currentWeights, startHaproxy, startHaproxyFleet, stopAll, type BackendSpec, type HaproxyHandle } from '../harness/haproxy.js';
import { makeTempDir, removeTempDir } from '../harness/processes.js';
import { sharedGraphite } from '../harness/shared-graphite.js';

const BACKEND = 'be_ingest';
const SERVERS = ['s1', 's2', 's3'] as const;
const READ_TIMEOUT_MS = 1_000;

let graphite: GraphiteClient;
let target: string;
let dir: string;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  graphite = await sharedGraphite();
  target = await feedLoads(graphite, uniquePrefix('fault_haproxy'), { s1: 4000, s2: 1000, s3: 1000 });
  dir = makeTempDir('hw-fault-haproxy');
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

afterAll(() => {
  removeTempDir(dir);
});

const ingest = (overrides: Partial<BackendSpec> = {}): BackendSpec => ({ name: BACKEND, balance: 'leastconn', servers: SERVERS.map((name) => ({ name })), ...overrides });

async function fleetOf(count: number, backends: readonly BackendSpec[] = [ingest()]): Promise<HaproxyHandle[]> {
  const fleet = await startHaproxyFleet(count, { backends });
  cleanups.push(() => stopAll(fleet));
  return fleet;
}

function configFor(loadBalancers: readonly { name: string; endpoint: string }[], backends: readonly string[] = [BACKEND]) {
  return {
    graphite: { url: graphite.url, timeoutMs: 5000, retries: 1 },
    relay: { type: 'socket', loadBalancers, connectTimeoutMs: 1000, readTimeoutMs: READ_TIMEOUT_MS },
    backends: backends.map((name) => ({
      name,
      target,
      from: '-15min',
      aggregation: 'average',
      weighting: { function: 'limited-proportions', limitingFactor: 4, aggressiveness: 1 },
    })),
  };
}

let configCount = 0;
async function apply(loadBalancers: readonly { name: string; endpoint: string }[], backends?: readonly string[]): Promise<{ code: number | null; report: CycleReport }> {
  const path = writeConfigFile(dir, configFor(loadBalancers, backends), `config-${++configCount}.yaml`);
  const run = await runCli(['apply', '--json', '--config', path]);
  expect(run.stderr).toBe('');
  return { code: run.code, report: singleReport(run.stdout) };
}

const weightsOf = (lb: HaproxyHandle, backend = BACKEND, servers: readonly string[] = SERVERS): Promise<Record<string, number>> => currentWeights(lb, backend, servers);

const UNCHANGED = { s1: 100, s2: 100, s3: 100 };

/** What a healthy cycle writes for loads 4000/1000/1000: s1 low, the others at the top. */
function expectBalanced(weights: Record<string, number>): void {
  expect(weights.s1).toBeLessThan(100);
  expect(weights.s2).toBe(256);
  expect(weights.s3).toBe(256);
}

describe('a load balancer that cannot be reached: the others are balanced, it is named, nothing else changes', () => {
  it('exits 3 and names the load balancer whose socket is missing', async () => {
    const fleet = await fleetOf(2);
    const gone = `${dir}/no-such-admin.sock`;
    const { code, report } = await apply([
      { name: 'lb1', endpoint: fleet[0]?.adminSocket ?? '' },
      { name: 'lb2', endpoint: fleet[1]?.adminSocket ?? '' },
      { name: 'lb-gone', endpoint: gone },
    ]);
    expect(code).toBe(3);
    expect(report.outcome).toBe('partial');
    for (const lb of fleet) expectBalanced(await weightsOf(lb));
    expect(report.failedLoadBalancers).toEqual(['lb-gone']);
    expect(report.loadBalancers.find((l) => l.name === 'lb-gone')).toMatchObject({ observe: 'failed', error: `lb-gone (${gone}): cannot connect: ENOENT` });
    expect(problemsOf(report)).toEqual([['observe-failed', 'lb-gone', null, null]]);
    expect(report.problems[0]?.cause).toEqual({ type: 'relay', kind: null, message: `lb-gone (${gone}): cannot connect: ENOENT` });
    const metrics = lambdaMetricsFor(report);
    expect(metrics.totals).toMatchObject({ LoadBalancersFailed: 1, ServersChanged: 6 });
    expect(metrics.failedLoadBalancers).toEqual(['lb-gone']);
  });

  it('exits 1 and writes nothing when the only socket is missing', async () => {
    const { code, report } = await apply([{ name: 'lb-gone', endpoint: `${dir}/also-missing.sock` }]);
    expect(code).toBe(1);
    expect(report.outcome).toBe('failed');
    expect(problemsOf(report)).toEqual([['observe-failed', 'lb-gone', null, null]]);
    expect(report.problems[0]?.cause?.message).toMatch(/cannot connect: ENOENT/);
    expect(lambdaMetricsFor(report).totals).toMatchObject({ LoadBalancersFailed: 1, ServersChanged: 0 });
  });

  it('exits 3 and says "level admin" for a socket at level operator (Permission denied)', async () => {
    const fleet = await fleetOf(2);
    const [lb1, lb2] = fleet;
    if (lb1 === undefined || lb2 === undefined) throw new Error('fleet did not start');
    const { code, report } = await apply([
      { name: 'lb1', endpoint: lb1.adminSocket },
      { name: 'lb2-operator', endpoint: lb2.operatorSocket },
    ]);
    expect(code).toBe(3);
    expectBalanced(await weightsOf(lb1));
    expect(await weightsOf(lb2)).toEqual(UNCHANGED);
    expect(report.failedLoadBalancers).toEqual(['lb2-operator']);
    expect(problemsOf(report)).toEqual(SERVERS.map((s) => ['weight-refused', 'lb2-operator', BACKEND, s]));
    expect(report.problems.map((p) => p.cause?.kind)).toEqual(['permission-denied', 'permission-denied', 'permission-denied']);
    expect(report.problems[0]?.cause?.message).toContain('needs a runtime socket at "level admin"');
    const metrics = lambdaMetricsFor(report);
    expect(metrics.totals).toMatchObject({ LoadBalancersFailed: 1, ServersChanged: 3 });
    expect(metrics.failedLoadBalancers).toEqual(['lb2-operator']);
  });

  it('exits 3 after the read timeout for a socket that accepts and never answers', async () => {
    const [lb1] = await fleetOf(1);
    if (lb1 === undefined) throw new Error('fleet did not start');
    const silent = await startSilentSocket();
    cleanups.push(() => silent.close());
    const { code, report } = await apply([
      { name: 'lb1', endpoint: lb1.adminSocket },
      { name: 'lb-silent', endpoint: silent.path },
    ]);
    expect(code).toBe(3);
    expectBalanced(await weightsOf(lb1));
    expect(silent.accepted()).toBe(1);
    expect(report.failedLoadBalancers).toEqual(['lb-silent']);
    expect(problemsOf(report)).toEqual([['observe-failed', 'lb-silent', null, null]]);
    expect(report.problems[0]?.cause?.message).toBe(`lb-silent (${silent.path}): no complete reply within ${READ_TIMEOUT_MS} ms (received 0 bytes)`);
    expect(lambdaMetricsFor(report).totals).toMatchObject({ LoadBalancersFailed: 1, ServersChanged: 3 });
  });
});

describe('a connection that fails in the middle of a batch: the report says what each HAProxy holds', () => {
  async function throughProxy(fault: ConnectionFault | ((request: string) => ConnectionFault), onlyWrites: boolean) {
    const fleet = await fleetOf(2);
    const [lb1, lb2] = fleet;
    if (lb1 === undefined || lb2 === undefined) throw new Error('fleet did not start');
    const proxy = await startSocketProxy(lb2.adminSocket);
    cleanups.push(() => proxy.close());
    proxy.setFault((request) => (!onlyWrites || isWriteBatch(request) ? (typeof fault === 'function' ? fault(request) : fault) : { kind: 'pass' }));
    const result = await apply([
      { name: 'lb1', endpoint: lb1.adminSocket },
      { name: 'lb2', endpoint: proxy.path },
    ]);
    return { ...result, lb1, lb2, proxy };
  }

  it('skips a load balancer whose observe reply is cut short and names the truncation', async () => {
    const { code, report, lb1, lb2 } = await throughProxy({ kind: 'close-after-reply-bytes', bytes: 300 }, false);
    expect(code).toBe(3);
    expectBalanced(await weightsOf(lb1));
    expect(await weightsOf(lb2)).toEqual(UNCHANGED);
    expect(report.failedLoadBalancers).toEqual(['lb2']);
    expect(problemsOf(report)).toEqual([['observe-failed', 'lb2', null, null]]);
    expect(report.problems[0]?.cause).toMatchObject({ type: 'haproxy', kind: 'unexpected-reply' });
    expect(report.problems[0]?.cause?.message).toMatch(/HAProxy reply to command 1 of 2 \(show stat be_ingest 6 -1\) does not end with an empty line: the reply is truncated/);
    expect(lambdaMetricsFor(report).totals).toMatchObject({ LoadBalancersFailed: 1, ServersChanged: 3 });
  });

  it('confirms by reading back when the connection closes after the batch but before its reply', async () => {
    const { code, report, lb2, proxy } = await throughProxy({ kind: 'close-before-reply' }, true);
    // HAProxy ran the whole batch; the read-back proves it, so nothing is reported as lost.
    expect(proxy.connections.map((c) => c.fault)).toEqual(['pass', 'close-before-reply', 'pass']);
    expectBalanced(await weightsOf(lb2));
    expect(code).toBe(0);
    expect(report.outcome).toBe('ok');
    expect(report.loadBalancers.find((l) => l.name === 'lb2')).toMatchObject({ apply: 'ok', error: expect.stringMatching(/HAProxy replied with 0 block\(s\) for \d+ command\(s\)/) });
    expect(report.problems).toEqual([]);
    expect(report.backends[0]?.loadBalancers.find((l) => l.loadBalancer === 'lb2')?.apply).toMatchObject({ status: 'applied', changed: 3, readBack: true });
    expect(report.serversChanged).toBe(6);
  });

  it('reports exactly which weights landed when the connection is cut in the middle of the batch', async () => {
    // HAProxy gets the batch up to the first weight, then the connection is gone.
    const { code, report, lb1, lb2 } = await throughProxy((request) => ({ kind: 'cut-request', commands: commandsThroughFirstWrite(request) }), true);
    expect(code).toBe(3);
    expect(report.outcome).toBe('partial');
    expectBalanced(await weightsOf(lb1));
    const held = await weightsOf(lb2);
    expect(held.s1).toBeLessThan(100);
    expect({ s2: held.s2, s3: held.s3 }).toEqual({ s2: 100, s3: 100 });
    expect(report.failedLoadBalancers).toEqual(['lb2']);
    expect(problemsOf(report)).toEqual([
      ['batch-unconfirmed', 'lb2', BACKEND, 's2'],
      ['batch-unconfirmed', 'lb2', BACKEND, 's3'],
    ]);
    const lb2Apply = report.backends[0]?.loadBalancers.find((l) => l.loadBalancer === 'lb2')?.apply;
    expect(lb2Apply).toMatchObject({ status: 'failed', changed: 1, readBack: true, error: expect.stringMatching(/^HAProxy replied with 0 block\(s\) for \d+ command\(s\): .*; the batch may have been partly applied$/) });
    expect(lb2Apply?.failed.map((f) => [f.server, f.heldWeight])).toEqual([
      ['s2', 100],
      ['s3', 100],
    ]);
    expect(lambdaMetricsFor(report).totals).toMatchObject({ LoadBalancersFailed: 1, ServersChanged: 4 });
  });

  it('reads back after a write that is never answered, and says nothing landed', async () => {
    const { code, report, lb2 } = await throughProxy({ kind: 'hang' }, true);
    expect(code).toBe(3);
    expect(await weightsOf(lb2)).toEqual(UNCHANGED);
    expect(problemsOf(report)).toEqual(SERVERS.map((s) => ['batch-unconfirmed', 'lb2', BACKEND, s]));
    expect(report.problems[0]?.cause).toMatchObject({ type: 'relay', message: expect.stringContaining(`no complete reply within ${READ_TIMEOUT_MS} ms (received 0 bytes)`) });
    const lb2Apply = report.backends[0]?.loadBalancers.find((l) => l.loadBalancer === 'lb2')?.apply;
    expect(lb2Apply?.failed.map((f) => [f.server, f.heldWeight])).toEqual(SERVERS.map((s) => [s, 100]));
    expect(lambdaMetricsFor(report).totals).toMatchObject({ LoadBalancersFailed: 1, ServersChanged: 3 });
  });
});

describe('backends HAProxy does not have or cannot weight', () => {
  it('exits 1 and names a backend that does not exist', async () => {
    const [lb1] = await fleetOf(1);
    if (lb1 === undefined) throw new Error('fleet did not start');
    const { code, report } = await apply([{ name: 'lb1', endpoint: lb1.adminSocket }], ['be_missing']);
    expect(code).toBe(1);
    expect(report.backends[0]?.loadBalancers[0]?.plan).toMatchObject({ status: 'skipped', reason: 'backend-not-found' });
    expect(problemsOf(report)).toEqual([['backend-not-found', 'lb1', 'be_missing', null]]);
    expect(report.problems[0]?.cause).toMatchObject({ type: 'haproxy', kind: 'no-such-backend', message: expect.stringContaining('HAProxy has no backend be_missing') });
    expect(await weightsOf(lb1)).toEqual(UNCHANGED);
    expect(lambdaMetricsFor(report).totals).toMatchObject({ ServersChanged: 0, LoadBalancersFailed: 0 });
  });

  it('balances the backends that exist and exits 3 when one does not', async () => {
    const [lb1] = await fleetOf(1);
    if (lb1 === undefined) throw new Error('fleet did not start');
    const { code, report } = await apply([{ name: 'lb1', endpoint: lb1.adminSocket }], [BACKEND, 'be_missing']);
    expect(code).toBe(3);
    expectBalanced(await weightsOf(lb1));
    expect(problemsOf(report)).toEqual([['backend-not-found', 'lb1', 'be_missing', null]]);
  });

  it('reports static-rr as unsupported and writes nothing', async () => {
    const [lb1] = await fleetOf(1, [ingest({ balance: 'static-rr' })]);
    if (lb1 === undefined) throw new Error('fleet did not start');
    const { code, report } = await apply([{ name: 'lb1', endpoint: lb1.adminSocket }]);
    expect(code).toBe(1);
    expect(report.backends[0]?.loadBalancers[0]?.plan).toMatchObject({ status: 'skipped', reason: 'unsupported-algorithm' });
    expect(problemsOf(report)).toEqual([['unsupported-algorithm', 'lb1', BACKEND, null]]);
    expect(report.problems[0]?.message).toMatch(/uses 'static-rr', a static algorithm/);
    expect(await weightsOf(lb1)).toEqual(UNCHANGED);
    expect(lambdaMetricsFor(report).totals).toMatchObject({ ServersChanged: 0 });
  });

  it('names the static algorithm when map-based hashing refuses every weight, and nothing changes', async () => {
    const [lb1] = await fleetOf(1, [ingest({ balance: 'source', hashType: 'map-based' })]);
    if (lb1 === undefined) throw new Error('fleet did not start');
    const { code, report } = await apply([{ name: 'lb1', endpoint: lb1.adminSocket }]);
    expect(code).toBe(1);
    expect(problemsOf(report)).toEqual([['static-refused', 'lb1', BACKEND, null]]);
    expect(report.problems[0]?.message).toMatch(/it uses a static algorithm .*'source'.*hash-type consistent/);
    expect(report.staticRefusals).toEqual([`${BACKEND}@lb1`]);
    expect(await weightsOf(lb1)).toEqual(UNCHANGED);
    expect(lambdaMetricsFor(report).totals).toMatchObject({ ServersChanged: 0, LoadBalancersFailed: 1 });
  });
});

describe('HAProxy reloaded between cycles', () => {
  it('finds the weights back at the configuration after a reload, and the next cycle restores them', async () => {
    const [lb1] = await fleetOf(1);
    if (lb1 === undefined) throw new Error('fleet did not start');
    const lbs = [{ name: 'lb1', endpoint: lb1.adminSocket }];
    const first = await apply(lbs);
    expect(first.code).toBe(0);
    const balanced = await weightsOf(lb1);
    expectBalanced(balanced);

    await lb1.reload();
    expect(await weightsOf(lb1)).toEqual(UNCHANGED);

    const second = await apply(lbs);
    expect(second.code).toBe(0);
    expect(second.report.serversChanged).toBe(3);
    expect(await weightsOf(lb1)).toEqual(balanced);
    expect(lambdaMetricsFor(second.report).totals).toMatchObject({ ServersChanged: 3, LoadBalancersFailed: 0 });
  });
});

describe('HAProxy changed between observe and act (in-process cycle, relay wrapped)', () => {
  /** The real socket relay; `between` runs once, right after the observe round trip. */
  function wrapped(loadBalancers: readonly { name: string; endpoint: string }[], between: () => Promise<void>) {
    const config = parseConfig(configFor(loadBalancers));
    if (config.relay.type !== 'socket') throw new Error('socket relay expected');
    const real = createSocketRelay(config.relay);
    let calls = 0;
    const relay: RuntimeRelay = {
      loadBalancers: real.loadBalancers,
      run: async (requests) => {
        const results = await real.run(requests);
        if (calls++ === 0) await between();
        return results;
      },
    };
    return { config, relay };
  }

  async function cycle(loadBalancers: readonly { name: string; endpoint: string }[], between: () => Promise<void>): Promise<CycleReport> {
    const { config, relay } = wrapped(loadBalancers, between);
    return checkedReport(await runCycle({ config, metrics: createGraphiteSource(config.graphite, { env: {} }), relay, now: Date.now, version: '0.0.0-test' }, { mode: 'apply' }));
  }

  it('writes the other servers and names a server removed by a reload in between', async () => {
    const lb1 = await startHaproxy({ backends: [ingest()] });
    cleanups.push(() => lb1.stop());
    const report = await cycle([{ name: 'lb1', endpoint: lb1.adminSocket }], () => lb1.reload({ backends: [ingest({ servers: [{ name: 's1' }, { name: 's2' }] })] }));
    expect(exitCodeFor(report)).toBe(3);
    expect(report.outcome).toBe('partial');
    const held = await weightsOf(lb1, BACKEND, ['s1', 's2']);
    expect(held.s1).toBeLessThan(100);
    expect(held.s2).toBe(256);
    expect(problemsOf(report)).toEqual([['weight-refused', 'lb1', BACKEND, 's3']]);
    expect(report.problems[0]?.cause).toMatchObject({ type: 'haproxy', kind: 'no-such-server' });
    expect(report.backends[0]?.loadBalancers[0]?.apply).toMatchObject({ status: 'failed', changed: 2, failed: [{ server: 's3', code: 'weight-refused', kind: 'no-such-server' }] });
    expect(lambdaMetricsFor(report).totals).toMatchObject({ LoadBalancersFailed: 1, ServersChanged: 2 });
  });

  it.each([
    ['put in MAINT', 'set server be_ingest/s2 state maint', /MAINT/],
    ['put in DRAIN', 'set server be_ingest/s2 state drain', /DRAIN/],
    ['given weight 0 by an operator', 'set server be_ingest/s2 weight 0', /weight 0/],
  ])('keeps the weight of a server %s between observe and act, and says so', async (_what, command, named) => {
    const lb1 = await startHaproxy({ backends: [ingest()] });
    cleanups.push(() => lb1.stop());
    const before = (await lb1.getWeight(BACKEND, 's2')).current;
    let operatorWeight = before;
    const report = await cycle([{ name: 'lb1', endpoint: lb1.adminSocket }], async () => {
      expect(await lb1.runtime(command)).toBe('\n');
      operatorWeight = (await lb1.getWeight(BACKEND, 's2')).current;
    });
    // The operator's decision wins: s2 keeps the weight it had when the operator acted.
    expect((await lb1.getWeight(BACKEND, 's2')).current).toBe(operatorWeight);
    expect((await lb1.getWeight(BACKEND, 's1')).current).toBeLessThan(100);
    expect(problemsOf(report)).toEqual([['operator-conflict-restored', 'lb1', BACKEND, 's2']]);
    expect(report.problems[0]?.message).toMatch(named);
    expect(report.problems[0]?.message).toContain(`its weight was put back to ${operatorWeight}`);
  });
});
