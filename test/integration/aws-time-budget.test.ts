/**
 * The Lambda handler within its time budget, on the real parts: five real HAProxy processes behind
 * the local SSM endpoint (the real document), loads from the real Graphite, the handler as the
 * stack wires it, with its S3 output bucket.
 *
 * Time is the handler's injected clock: each write command SSM receives moves it a minute on, as a
 * slow write would, so when the budget runs out does not depend on how fast this machine is (a
 * real command here may take up to ten seconds without changing the outcome).
 *
 * A Graphite slower than the budget is the real graphite-web behind the fault proxy, holding each
 * request: the budget's end (or middy's early timeout) must end the wait, not Graphite's timeouts.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Context } from 'aws-lambda';
import { startGraphiteFaultProxy, type GraphiteFaultProxy } from '../harness/faults.js';
import { feedLoads, uniquePrefix } from '../harness/graphite.js';
import { currentWeights, type BackendSpec } from '../harness/haproxy.js';
import { checkedReport } from '../harness/report.js';
import { sharedGraphite } from '../harness/shared-graphite.js';
import { startSsmFleet, type SsmFleet } from '../ssm-endpoint/fleet.js';
import { LAMBDA_CONTEXT, SCHEDULED_EVENT, capture, commandsOf, must, plannedWeights, ssmTestConfig, testHandler } from '../ssm-endpoint/lambda-invoke.js';

const SERVERS = ['ingest-1', 'ingest-2', 'ingest-3'];
const LOADS: Readonly<Record<string, number>> = { 'ingest-1': 100, 'ingest-2': 200, 'ingest-3': 400 };
const BACKEND: BackendSpec = { name: 'be_ingest', balance: 'leastconn', servers: SERVERS.map((name) => ({ name })) };
/** What each load balancer holds before the cycle: different on each, so that each gets its own write command. */
const INITIAL = [60, 80, 100, 120, 140];
const STEP_MS = 60_000;
/** Lambda leaves 160 s; the budget is 150 s: the observation and two one-minute writes fit, a third does not. */
const REMAINING_MS = 160_000;

describe('a cycle whose time budget runs out while it writes', () => {
  let fleet: SsmFleet;
  let target: string;

  beforeAll(async () => {
    const graphite = await sharedGraphite();
    target = await feedLoads(graphite, uniquePrefix('aws_budget'), LOADS, 'points');
    fleet = await startSsmFleet(5, [BACKEND], { s3: true });
    await Promise.all(fleet.haproxies.map((h, i) => h.runtime(SERVERS.map((s) => `set server be_ingest/${s} weight ${INITIAL[i] ?? 100}`).join('; '))));
  });
  afterAll(async () => {
    await fleet?.stop();
  });

  const weightsOn = async (index: number): Promise<Record<string, number>> => {
    const h = fleet.haproxies[index];
    if (h === undefined) throw new Error(`no HAProxy #${index}`);
    const out = await currentWeights(h, 'be_ingest', SERVERS);
    // show stat agrees with get weight.
    const rows = await h.showStat('be_ingest');
    for (const s of SERVERS) expect(Number(rows.find((r) => r.svname === s)?.weight)).toBe(out[s]);
    return out;
  };

  it('returns a partial report naming what was and was not written, and HAProxy holds exactly that', async () => {
    let offset = 0;
    const now = (): number => Date.now() + offset;
    const unsubscribe = fleet.endpoint.onRequest((operation, body) => {
      if (operation === 'SendCommand' && commandsOf(body).includes('set server ')) offset += STEP_MS;
    });
    const config = ssmTestConfig(fleet, { url: (await sharedGraphite()).url }, target, { maxWaitMs: 60_000 });
    const relay = (config as { relay: Record<string, unknown> }).relay;
    // One write command at a time, and at most 10 points of weight per cycle: each load balancer's batch differs.
    const withLimits = { ...(config as Record<string, unknown>), relay: { ...relay, maxConcurrentCommands: 1 }, backends: [{ ...((config as { backends: Record<string, unknown>[] }).backends[0] ?? {}), maxChangePerCycle: 10 }] };
    const handler = testHandler(fleet, withLimits, { now, outputBucket: true });
    const context: Context = { ...LAMBDA_CONTEXT, getRemainingTimeInMillis: () => REMAINING_MS };

    const { result, error, output } = await capture(() => handler(SCHEDULED_EVENT, context));
    unsubscribe();
    expect(error).toBeUndefined();
    const report = checkedReport(must(result));

    const [written, notWritten] = [fleet.instanceIds.slice(0, 2), fleet.instanceIds.slice(2)];
    expect(report.outcome).toBe('partial');
    expect(report.serversChanged).toBe(written.length * SERVERS.length);
    const applyOf = (lb: string) => report.backends[0]?.loadBalancers.find((l) => l.loadBalancer === lb)?.apply;
    for (const lb of written) expect(applyOf(lb)).toMatchObject({ status: 'applied', changed: SERVERS.length, failed: [] });
    for (const lb of notWritten) {
      const apply = applyOf(lb);
      expect(apply?.status).toBe('failed');
      expect(apply?.changed).toBe(0);
      expect(apply?.failed.map((f) => [f.server, f.code])).toEqual(SERVERS.map((s) => [s, 'not-sent']));
      expect(apply?.readBack).toBe(false);
    }
    const notSent = report.problems.filter((p) => p.code === 'write-not-sent');
    expect(notSent.map((p) => p.loadBalancer).sort()).toEqual([...notWritten].sort());
    for (const p of notSent) expect(p.message).toMatch(/^3 weight\(s\) not sent: \d+ ms of the cycle's time budget left and a command takes about \d+ ms; HAProxy keeps the weights it had$/);
    expect(report.failedLoadBalancers.sort()).toEqual([...notWritten].sort());
    // The log says it too.
    expect(output).toContain('cycle finished with problems');
    expect(output).toContain('write-not-sent');

    // HAProxy holds exactly that: the planned weights where written, the old ones elsewhere.
    for (const [i, lb] of fleet.instanceIds.entries()) {
      const held = await weightsOn(i);
      if (written.includes(lb)) expect(held).toEqual(plannedWeights(report, lb));
      else expect(held).toEqual(Object.fromEntries(SERVERS.map((s) => [s, INITIAL[i]])));
    }
    // No write command went to the load balancers the report says were not written.
    const writes = fleet.endpoint.calls.filter((c) => c.operation === 'SendCommand' && c.status === 200 && commandsOf(c.body as Record<string, unknown>).includes('set server '));
    expect(writes.flatMap((c) => (c.body as { InstanceIds?: string[] }).InstanceIds ?? [])).toEqual(written);
  });
});

describe('a cycle waiting on a slow Graphite (the real graphite-web behind a proxy that holds each request two minutes)', () => {
  let fleet: SsmFleet;
  let proxy: GraphiteFaultProxy;
  let target = '';

  beforeAll(async () => {
    const graphite = await sharedGraphite();
    target = await feedLoads(graphite, uniquePrefix('aws_slow_graphite'), LOADS, 'points');
    fleet = await startSsmFleet(1, [BACKEND]);
    proxy = await startGraphiteFaultProxy(graphite.url);
    await proxy.setFault({ kind: 'delay', ms: 120_000 });
  });
  afterAll(async () => {
    await proxy?.close();
    await fleet?.stop();
  });
  beforeEach(() => {
    proxy.clear();
  });

  /** Graphite's own timeouts (a minute for the answer) are not what ends the wait. */
  const handlerFor = (options: { timeReserveMs?: number } = {}) => testHandler(fleet, ssmTestConfig(fleet, { url: proxy.url, timeoutMs: 60_000 }, target), options);
  const writesSent = () => fleet.endpoint.calls.filter((c) => c.operation === 'SendCommand' && commandsOf(c.body as Record<string, unknown>).includes('set server '));

  it('returns a report when its time budget ends, having stopped waiting for Graphite and changed nothing', async () => {
    const before = writesSent().length;
    // Lambda leaves 13 s: the budget is 3 s, middy's early timeout 12 s.
    const context: Context = { ...LAMBDA_CONTEXT, getRemainingTimeInMillis: () => 13_000 };
    const { result, error } = await capture(() => handlerFor()(SCHEDULED_EVENT, context));

    expect(error).toBeUndefined();
    const report = checkedReport(must(result));
    const graphiteProblem = report.problems.find((p) => p.backend === 'be_ingest' && p.code === 'graphite-unreachable');
    expect(graphiteProblem?.cause?.message).toMatch(/failed after 1 attempt\(s\): stopped waiting after \d+ ms: the cycle's time budget ended$/);
    expect(report.serversChanged).toBe(0);
    // It asked once, and went away without waiting for the answer.
    expect(proxy.requests).toHaveLength(1);
    await expect.poll(() => proxy.abandoned).toEqual([proxy.requests[0]?.seq]);
    expect(writesSent()).toHaveLength(before);
  });

  it('fails with a clear error in the log from middy’s early timeout instead of being killed without a word, and stops waiting for Graphite', async () => {
    const before = writesSent().length;
    // No reserve: the budget would last until Lambda's limit, so middy answers first (1 s before it) and aborts the cycle.
    const context: Context = { ...LAMBDA_CONTEXT, getRemainingTimeInMillis: () => 1_200 };
    const { result, error, output } = await capture(() => handlerFor({ timeReserveMs: 0 })(SCHEDULED_EVENT, context));

    expect(result).toBeUndefined();
    expect(error).toMatchObject({ name: 'TimeoutError', message: 'the cycle had not returned 1000 ms before the Lambda time limit: no report (its own budget ended 0 ms before the limit)' });
    expect(output).toContain('cycle failed');
    expect(output).toContain('the cycle had not returned 1000 ms before the Lambda time limit');
    // Middy's signal reached the Graphite request: the proxy saw the client go.
    await expect.poll(() => proxy.abandoned).toHaveLength(1);
    expect(writesSent()).toHaveLength(before);
  });
});
