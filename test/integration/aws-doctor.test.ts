/**
 * The Lambda's doctor (`{"doctor": true}`) and its weight history, on the real parts: the handler
 * reads its configuration from the local SSM endpoint's Parameter Store, asks Systems Manager about
 * the Command document and the instances (GetDocument, DescribeInstanceInformation), and runs the
 * real document with bash against three real HAProxy processes, which answer `show cli level` and
 * the observation; loads come from the real Graphite of the test run. Each broken piece is named
 * with its code and fix, and no weight moves.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DoctorCheck, DoctorReport } from '../../functions/core/doctor.js';
import { bucketOf, feedLoads, uniquePrefix, valueAt, type GraphiteClient } from '../harness/graphite.js';
import type { BackendSpec } from '../harness/haproxy.js';
import { checksOf } from '../harness/report.js';
import { sharedGraphite } from '../harness/shared-graphite.js';
import { SOCKET_PATH, TAG, startSsmFleet, type SsmFleet } from '../ssm-endpoint/fleet.js';
import { commandsOf, invoke, invokeDoctor, messageOf, must, ssmTestConfig, testHandler } from '../ssm-endpoint/lambda-invoke.js';
import { DEFAULT_AGENT_VERSION } from '../ssm-endpoint/ssm-endpoint.js';

const SERVERS = ['ingest-1', 'ingest-2', 'ingest-3'];
const BACKEND: BackendSpec = { name: 'be_ingest', balance: 'leastconn', servers: SERVERS.map((name) => ({ name })) };

let fleet: SsmFleet;
let graphite: GraphiteClient;
let target: string;

beforeAll(async () => {
  graphite = await sharedGraphite();
  target = await feedLoads(graphite, uniquePrefix('aws_doctor'), { 'ingest-1': 300, 'ingest-2': 100, 'ingest-3': 100 }, 'points');
  fleet = await startSsmFleet(3, [BACKEND]);
});
afterAll(async () => {
  await fleet?.stop();
});
afterEach(() => {
  fleet.endpoint.clearFaults();
  // Every instance back as the fleet started it.
  for (const id of fleet.instanceIds) fleet.endpoint.updateInstance(id, { online: true, agentVersion: DEFAULT_AGENT_VERSION, tags: { [TAG.key]: TAG.value }, paths: { [SOCKET_PATH]: fleet.byInstance(id).adminSocket } });
});

const config = (documentName?: string): unknown => ssmTestConfig(fleet, { url: graphite.url }, target, { maxWaitMs: 15_000, ...(documentName === undefined ? {} : { documentName }) });

async function weights(): Promise<number[][]> {
  return Promise.all(fleet.instanceIds.map((id) => Promise.all(SERVERS.map(async (s) => (await fleet.byInstance(id).getWeight('be_ingest', s)).current))));
}

/** `{"doctor": true}` through a freshly deployed handler; the report matches the shipped schema and no weight moved. */
async function doctor(options: { documentName?: string } = {}): Promise<{ report: DoctorReport; output: string }> {
  const before = await weights();
  const handler = testHandler(fleet, config(options.documentName), options);
  const { result, error, output } = await invokeDoctor(handler);
  expect(error).toBeUndefined();
  expect(await weights()).toEqual(before);
  return { report: must(result), output };
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
const notOk = (report: DoctorReport) => checksOf(report).filter(([, status]) => status !== 'ok');
const find = (report: DoctorReport, check: DoctorCheck['check'], loadBalancer: string | null = null): DoctorCheck | undefined =>
  report.checks.find((c) => c.check === check && (loadBalancer === null || c.loadBalancer === loadBalancer));

describe('the Lambda answers {"doctor": true}', () => {
  it('finds the document, every instance and every runtime socket in order, through Run Command', async () => {
    const from = fleet.endpoint.calls.length;
    const { report, output } = await doctor();
    expect(report.outcome).toBe('ok');
    expect(notOk(report)).toEqual([]);
    const kinds = new Set(report.checks.map((c) => c.check));
    for (const kind of ['ssm-document', 'instances-found', 'instance-online', 'instance-tag', 'ssm-agent-version', 'graphite-reachable', 'load-balancer-reachable', 'admin-level', 'target-coverage', 'backend-present', 'backend-algorithm', 'servers'] as const) {
      expect(kinds.has(kind)).toBe(true);
    }
    for (const id of fleet.instanceIds) expect(find(report, 'admin-level', id)?.message).toContain('level admin');
    expect(find(report, 'target-coverage')?.coverage).toMatchObject({ servers: 3, withData: 3 });
    // What reached the instances: the level and the observation in one batch, and never a write.
    const sent = fleet.endpoint.calls.slice(from).filter((c) => c.operation === 'SendCommand' && c.status === 200).map((c) => (isRecord(c.body) ? commandsOf(c.body) : ''));
    expect(sent).toEqual(['show cli level; show stat be_ingest 6 -1; show servers state be_ingest']);
    expect(output).toContain('doctor finished');
  });

  it('names an SSM Agent too old for ENV_VAR, and the document that exits 64 on it', async () => {
    const [old] = fleet.instanceIds;
    if (old === undefined) throw new Error('no instance');
    fleet.endpoint.updateInstance(old, { agentVersion: '3.2.1705.0' });
    const { report } = await doctor();
    expect(notOk(report)).toEqual([
      ['ssm-agent-version', 'failed', 'agent-too-old', old, null],
      ['load-balancer-reachable', 'failed', 'relay-failed', old, null],
      ['admin-level', 'skipped', null, old, null],
      ['backend-present', 'skipped', null, old, 'be_ingest'],
      ['backend-algorithm', 'skipped', null, old, 'be_ingest'],
      ['servers', 'skipped', null, old, 'be_ingest'],
    ]);
    expect(find(report, 'ssm-agent-version', old)?.fix).toContain('3.3.2746.0 or later');
    expect(find(report, 'load-balancer-reachable', old)?.message).toContain('exit code 64');
  });

  it('names an instance at level operator', async () => {
    const [id] = fleet.instanceIds;
    if (id === undefined) throw new Error('no instance');
    fleet.endpoint.updateInstance(id, { paths: { [SOCKET_PATH]: fleet.byInstance(id).operatorSocket } });
    const { report } = await doctor();
    expect(notOk(report)).toEqual([['admin-level', 'failed', 'level-not-admin', id, null]]);
    expect(find(report, 'admin-level', id)?.fix).toContain(`stats socket ${SOCKET_PATH} level admin`);
  });

  it('names an instance without the stack tag, and one Systems Manager sees offline', async () => {
    const [untagged, offline] = fleet.instanceIds;
    if (untagged === undefined || offline === undefined) throw new Error('no instance');
    fleet.endpoint.updateInstance(untagged, { tags: {} });
    fleet.endpoint.updateInstance(offline, { online: false });
    const { report } = await doctor();
    expect(find(report, 'instance-tag', untagged)).toMatchObject({ status: 'failed', code: 'instance-not-tagged' });
    expect(find(report, 'instance-online', offline)).toMatchObject({ status: 'failed', code: 'instance-offline' });
    expect(find(report, 'instance-online', offline)?.message).toContain('ConnectionLost');
    expect(report.outcome).toBe('failed');
  });

  it('names a Command document that does not exist, with the deploy that creates it', async () => {
    const { report } = await doctor({ documentName: 'haproxy-weighter-other-relay' });
    expect(find(report, 'ssm-document')).toMatchObject({ status: 'failed', code: 'document-missing' });
    expect(find(report, 'ssm-document')?.fix).toContain('npx serverless deploy');
  });

  it('refuses a doctor payload that asks for a write, naming the field', async () => {
    const handler = testHandler(fleet, config());
    const { error } = await invokeDoctor(handler, { force: true });
    expect(messageOf(error)).toContain('force: the doctor changes nothing; only "backends" goes with "doctor"');
  });
});

describe('the Lambda sends the weight history', () => {
  it('after a scheduled cycle, to the real carbon, where graphite-web reads the weights HAProxy holds', async () => {
    const prefix = uniquePrefix('aws_history');
    const handler = testHandler(fleet, { ...(config() as Record<string, unknown>), history: { prefix, carbon: { host: '127.0.0.1', port: graphite.carbonPort } } });
    const { result, error } = await invoke(handler);
    expect(error).toBeUndefined();
    const report = must(result);
    expect(report.problems.filter((p) => p.code === 'history-not-sent')).toEqual([]);
    const at = Math.floor(Date.parse(report.startedAt) / 1000);
    const window = { from: bucketOf(at) - 10, until: bucketOf(at) + 20 };
    for (const id of fleet.instanceIds) {
      const held = (await fleet.byInstance(id).getWeight('be_ingest', 'ingest-1')).current;
      await graphite.waitForSeries(`${prefix}.backend.be_ingest.weight.${id}.ingest-1`, (s) => s[0] !== undefined && valueAt(s[0], at) === held, 30_000, window);
    }
  });
});
