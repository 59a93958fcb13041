/**
 * The Lambda handler as the stack wires it, with its S3 output bucket (RELAY_OUTPUT_BUCKET): a
 * 1,000-server backend's observation is longer than the part of the output SSM returns with the
 * command's status, so the handler reads it from S3, through the S3 client it loads with that
 * first read. Real HAProxy behind the local SSM endpoint (the real document), the local S3
 * endpoint, loads from the real Graphite.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { feedLoads, uniquePrefix } from '../harness/graphite.js';
import type { BackendSpec } from '../harness/haproxy.js';
import { checkedReport } from '../harness/report.js';
import { sharedGraphite } from '../harness/shared-graphite.js';
import { startSsmFleet, type SsmFleet } from '../ssm-endpoint/fleet.js';
import { invoke, must, ssmTestConfig, testHandler } from '../ssm-endpoint/lambda-invoke.js';

const SERVERS = Array.from({ length: 1000 }, (_, i) => `ingest-${String(i + 1).padStart(4, '0')}`);
const BACKEND: BackendSpec = { name: 'be_ingest', balance: 'leastconn', servers: SERVERS.map((name) => ({ name })) };

describe('the Lambda with its S3 output bucket', () => {
  let fleet: SsmFleet;
  let target: string;

  beforeAll(async () => {
    const graphite = await sharedGraphite();
    target = await feedLoads(graphite, uniquePrefix('aws_output_bucket'), Object.fromEntries(SERVERS.map((s, i) => [s, 100 + (i % 7) * 50])), 'points');
    fleet = await startSsmFleet(2, [BACKEND], { s3: true });
  });
  afterAll(async () => {
    await fleet?.stop();
  });

  it('reads a long observation from the bucket and plans every server of it', async () => {
    const s3 = fleet.s3;
    if (s3 === undefined) throw new Error('the fleet has no S3 endpoint');
    const handler = testHandler(fleet, ssmTestConfig(fleet, { url: (await sharedGraphite()).url }, target), { outputBucket: true });
    const { result, error } = await invoke(handler, { dryRun: true });
    expect(error).toBeUndefined();
    const report = checkedReport(must(result));

    expect(report.outcome).toBe('ok');
    expect(report.problems.filter((p) => p.severity === 'error')).toEqual([]);
    const gets = s3.requests.filter((r) => r.method === 'GET' && r.status === 200);
    expect(gets.length).toBeGreaterThanOrEqual(fleet.instanceIds.length);
    const loadBalancers = report.backends[0]?.loadBalancers ?? [];
    expect(loadBalancers.map((l) => l.loadBalancer).sort()).toEqual([...fleet.instanceIds].sort());
    for (const lb of loadBalancers) expect(lb.plan.actions.map((a) => a.server).sort()).toEqual(SERVERS);
  });
});
