/**
 * `haproxy-weighter doctor` through the real CLI, against a real HAProxy (admin and operator
 * sockets, a dynamic, a static and a hashing backend) and the real Graphite of the test run: all
 * good, then each way a piece can be broken, each named with its code and its fix. The doctor
 * changes nothing: every test reads the weights back from HAProxy itself afterwards.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DoctorCheck, DoctorReport } from '../../functions/core/doctor.js';
import { runCli, runMain, writeConfigFile } from '../harness/cli.js';
import { feedLoads, uniquePrefix, type GraphiteClient } from '../harness/graphite.js';
import { startKeyedGraphite, type KeyedGraphite } from '../harness/graphite-key.js';
import { startHaproxy, type HaproxyHandle } from '../harness/haproxy.js';
import { freePorts, makeTempDir, removeTempDir } from '../harness/processes.js';
import { checkedDoctorReport, checksOf } from '../harness/report.js';
import { sharedGraphite } from '../harness/shared-graphite.js';

const SERVERS = ['s1', 's2', 's3', 's4'];
const KEY = 'k3y-for-the-doctor';

let graphite: GraphiteClient;
let lb: HaproxyHandle;
let keyed: KeyedGraphite;
let target: string;
let prefix: string;
let dir: string;

beforeAll(async () => {
  graphite = await sharedGraphite();
  dir = makeTempDir('hw-doctor');
  lb = await startHaproxy({
    tcpRuntime: true,
    backends: [
      { name: 'be_ingest', balance: 'leastconn', servers: SERVERS.map((name, i) => ({ name, weight: 10 + i })) },
      { name: 'be_static', balance: 'static-rr', servers: SERVERS.map((name) => ({ name })) },
      { name: 'be_hash', balance: 'source', servers: SERVERS.map((name) => ({ name })) },
    ],
  });
  prefix = uniquePrefix('doctor');
  target = await feedLoads(graphite, prefix, { s1: 400, s2: 100, s3: 100, s4: 100 });
  keyed = await startKeyedGraphite(graphite.url, KEY);
});

afterAll(async () => {
  await keyed.stop();
  await lb.stop();
  removeTempDir(dir);
});

let configs = 0;
function config(edit: { graphite?: Record<string, unknown>; endpoint?: string; backends?: readonly Record<string, unknown>[]; loadBalancers?: readonly { name: string; endpoint: string }[] } = {}): string {
  return writeConfigFile(
    dir,
    {
      graphite: { url: graphite.url, timeoutMs: 5000, retries: 0, ...edit.graphite },
      relay: { type: 'socket', loadBalancers: edit.loadBalancers ?? [{ name: 'lb1', endpoint: edit.endpoint ?? lb.adminSocket }], connectTimeoutMs: 2000, readTimeoutMs: 5000 },
      backends: (edit.backends ?? [{ name: 'be_ingest' }]).map((b) => ({ target, from: '-2min', weighting: { function: 'feedback' }, ...b })),
    },
    `doctor-${++configs}.yaml`,
  );
}

async function weightsNow(): Promise<number[]> {
  return Promise.all(SERVERS.map(async (s) => (await lb.getWeight('be_ingest', s)).current));
}

/** Runs `doctor --json`, checks the report against the shipped schema and that no weight moved. */
async function doctor(configPath: string, env: Record<string, string> = {}): Promise<{ code: number | null; report: DoctorReport; stderr: string }> {
  const before = await weightsNow();
  const run = await runCli(['doctor', '--json', '--config', configPath], { env });
  const report = checkedDoctorReport(JSON.parse(run.stdout));
  expect(await weightsNow()).toEqual(before);
  return { code: run.code, report, stderr: run.stderr };
}

function only(report: DoctorReport, check: DoctorCheck['check'], backend: string | null = null): DoctorCheck {
  const found = report.checks.filter((c) => c.check === check && (backend === null || c.backend === backend));
  expect(found).toHaveLength(1);
  const [first] = found;
  if (first === undefined) throw new Error(`no ${check} check`);
  return first;
}

const notOk = (report: DoctorReport): [string, string, string | null, string | null, string | null][] => checksOf(report).filter(([, status]) => status !== 'ok');

describe('haproxy-weighter doctor against real HAProxy and Graphite', () => {
  it('finds everything in order and exits 0, with every check ok and the coverage counted', async () => {
    const { code, report, stderr } = await doctor(config({ loadBalancers: [{ name: 'lb1', endpoint: lb.adminSocket }, { name: 'lb1-tcp', endpoint: lb.tcpEndpoint ?? '' }] }));
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(report.outcome).toBe('ok');
    expect(notOk(report)).toEqual([]);
    expect(checksOf(report).map(([check, , , loadBalancer]) => `${check}${loadBalancer === null ? '' : `@${loadBalancer}`}`)).toEqual([
      'graphite-reachable',
      'graphite-authenticated',
      'load-balancer-reachable@lb1',
      'admin-level@lb1',
      'load-balancer-reachable@lb1-tcp',
      'admin-level@lb1-tcp',
      'target-coverage',
      'backend-present@lb1',
      'backend-algorithm@lb1',
      'servers@lb1',
      'backend-present@lb1-tcp',
      'backend-algorithm@lb1-tcp',
      'servers@lb1-tcp',
    ]);
    expect(only(report, 'target-coverage').coverage).toEqual({ servers: 4, withData: 4, withoutData: [], series: 4, unmappedSeries: [], unknownServers: [] });
  });

  it('prints the same checks for a person, one line per check, load balancers that agree on one line', async () => {
    const run = await runCli(['doctor', '--config', config({ loadBalancers: [{ name: 'lb1', endpoint: lb.adminSocket }, { name: 'lb2', endpoint: lb.adminSocket }] })]);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^doctor: 0 failed, 0 warning\(s\), 13 ok \(haproxy-weighter \d+\.\d+\.\d+/);
    expect(run.stdout).toContain('  ok       lb1, lb2: present: 4 server(s)');
    expect(run.stdout).toContain('  ok       lb1, lb2: level admin: the session is at level admin');
    expect(run.stdout).toContain('  ok       target coverage: 4 of 4 server(s) have data (4 series)');
    expect(run.stdout.trimEnd().endsWith('outcome: ok (exit 0)')).toBe(true);
  });

  it('names Graphite down, with the URL to check, and still checks every load balancer', async () => {
    const [closed] = await freePorts(1);
    const { code, report } = await doctor(config({ graphite: { url: `http://127.0.0.1:${String(closed)}` } }));
    expect(code).toBe(1);
    expect(notOk(report)).toEqual([
      ['graphite-reachable', 'failed', 'graphite-unreachable', null, null],
      ['graphite-authenticated', 'skipped', null, null, null],
      ['target-coverage', 'skipped', null, null, 'be_ingest'],
    ]);
    expect(only(report, 'graphite-reachable').fix).toContain(`check graphite.url (http://127.0.0.1:${String(closed)})`);
    expect(only(report, 'admin-level').status).toBe('ok');
  });

  it('names a key Graphite refuses, and the environment variable it came from', async () => {
    const path = config({ graphite: { url: keyed.url, auth: { type: 'url-key', keyEnv: 'HW_DOCTOR_KEY' } } });
    const wrong = await doctor(path, { HW_DOCTOR_KEY: 'not-the-key' });
    expect(wrong.code).toBe(1);
    expect(notOk(wrong.report)).toEqual([
      ['graphite-authenticated', 'failed', 'graphite-auth', null, null],
      ['target-coverage', 'skipped', null, null, 'be_ingest'],
    ]);
    expect(only(wrong.report, 'graphite-authenticated').message).toContain('HTTP 401');
    expect(only(wrong.report, 'graphite-authenticated').fix).toContain('environment variable HW_DOCTOR_KEY');
    expect(JSON.stringify(wrong.report)).not.toContain('not-the-key');

    const right = await doctor(path, { HW_DOCTOR_KEY: KEY });
    expect(right.code).toBe(0);
    expect(only(right.report, 'graphite-authenticated')).toMatchObject({ status: 'ok', message: 'accepted the url-key credentials' });
  });

  it('names a secret missing from the environment as a failed check, and runs every other check', async () => {
    const { code, stdout } = await runMain(['doctor', '--json', '--config', config({ graphite: { auth: { type: 'basic', username: 'u', passwordEnv: 'HW_DOCTOR_UNSET' } } })]);
    expect(code).toBe(1);
    const report = checkedDoctorReport(JSON.parse(stdout));
    expect(notOk(report)).toEqual([
      ['graphite-reachable', 'skipped', null, null, null],
      ['graphite-authenticated', 'failed', 'graphite-secret-missing', null, null],
      ['target-coverage', 'skipped', null, null, 'be_ingest'],
    ]);
    expect(only(report, 'graphite-authenticated').message).toContain('HW_DOCTOR_UNSET is not set');
  });

  it('names a target that returns series for no server of the backend, with the series it saw', async () => {
    // Without aliasByNode the series carry their whole path: no server is called that.
    const { code, report } = await doctor(config({ backends: [{ name: 'be_ingest', target: `${prefix}.*.load` }] }));
    expect(code).toBe(1);
    expect(notOk(report)).toEqual([['target-coverage', 'failed', 'target-matches-no-server', null, 'be_ingest']]);
    const check = only(report, 'target-coverage');
    expect(check.message).toContain(`${prefix}.s1.load`);
    expect(check.fix).toContain('aliasByNode');
    expect(check.coverage).toMatchObject({ servers: 4, withData: 0, series: 4 });
  });

  it('names a target that returns no series at all', async () => {
    const { code, report } = await doctor(config({ backends: [{ name: 'be_ingest', target: `${prefix}.nothing.*` }] }));
    expect(code).toBe(1);
    expect(notOk(report)).toEqual([['target-coverage', 'failed', 'target-no-series', null, 'be_ingest']]);
  });

  it('warns about servers the target has no data for, which keep their weight', async () => {
    const partial = await feedLoads(graphite, uniquePrefix('doctor-partial'), { s1: 300, s2: 100, s3: 100 });
    const { code, report } = await doctor(config({ backends: [{ name: 'be_ingest', target: partial }] }));
    expect(code).toBe(0);
    expect(notOk(report)).toEqual([['target-coverage', 'warning', 'coverage-partial', null, 'be_ingest']]);
    expect(only(report, 'target-coverage').coverage?.withoutData).toEqual(['s4']);
  });

  it('fails the coverage below the quorum with the servers that lack data', async () => {
    const sparse = await feedLoads(graphite, uniquePrefix('doctor-sparse'), { s1: 300 });
    const { code, report } = await doctor(config({ backends: [{ name: 'be_ingest', target: sparse }] }));
    expect(code).toBe(1);
    expect(notOk(report)).toEqual([['target-coverage', 'failed', 'coverage-below-quorum', null, 'be_ingest']]);
    expect(only(report, 'target-coverage').fix).toContain('backends[].quorum');
  });

  it('names a missing socket with the stats socket line to add', async () => {
    const missing = `${dir}/no-such.sock`;
    const { code, report } = await doctor(config({ endpoint: missing }));
    expect(code).toBe(1);
    expect(notOk(report)).toEqual([
      ['load-balancer-reachable', 'failed', 'socket-missing', 'lb1', null],
      ['admin-level', 'skipped', null, 'lb1', null],
      ['backend-present', 'skipped', null, 'lb1', 'be_ingest'],
      ['backend-algorithm', 'skipped', null, 'lb1', 'be_ingest'],
      ['servers', 'skipped', null, 'lb1', 'be_ingest'],
      ['target-coverage', 'skipped', null, null, 'be_ingest'],
    ].sort(byCheckOrder(report)));
    expect(only(report, 'load-balancer-reachable').fix).toContain(`stats socket ${missing} level admin`);
  });

  it('names a socket at level operator, which passes plan and fails every write, with the fix', async () => {
    const { code, report } = await doctor(config({ endpoint: lb.operatorSocket }));
    expect(code).toBe(1);
    expect(notOk(report)).toEqual([['admin-level', 'failed', 'level-not-admin', 'lb1', null]]);
    expect(only(report, 'admin-level').message).toContain('level operator');
    expect(only(report, 'admin-level').fix).toContain(`stats socket ${lb.operatorSocket} level admin`);
  });

  it('names a static algorithm, and warns that hashing needs hash-type consistent', async () => {
    const { code, report } = await doctor(config({ backends: [{ name: 'be_static' }, { name: 'be_hash' }] }));
    expect(code).toBe(1);
    expect(notOk(report)).toEqual([
      ['backend-algorithm', 'failed', 'static-algorithm', 'lb1', 'be_static'],
      ['backend-algorithm', 'warning', 'hash-type-unverified', 'lb1', 'be_hash'],
    ]);
    expect(only(report, 'backend-algorithm', 'be_static').fix).toContain('balance leastconn');
    expect(only(report, 'backend-algorithm', 'be_hash').fix).toContain('hash-type consistent');
  });

  it('names a backend HAProxy does not have', async () => {
    const { code, report } = await doctor(config({ backends: [{ name: 'be_missing' }] }));
    expect(code).toBe(1);
    expect(notOk(report)).toEqual([
      ['target-coverage', 'skipped', null, null, 'be_missing'],
      ['backend-present', 'failed', 'backend-not-found', 'lb1', 'be_missing'],
      ['backend-algorithm', 'skipped', null, 'lb1', 'be_missing'],
      ['servers', 'skipped', null, 'lb1', 'be_missing'],
    ]);
    expect(only(report, 'backend-present').fix).toContain('backend be_missing');
  });

  it('refuses an unknown --backend as a usage error (exit 2)', async () => {
    const run = await runMain(['doctor', '--config', config(), '--backend', 'nope']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('Unknown backend(s) "nope"');
  });
});

/** Orders expected rows as the report does, so a test lists them in any order. */
function byCheckOrder(report: DoctorReport) {
  const order = checksOf(report).map((row) => JSON.stringify(row));
  return (a: unknown[], b: unknown[]): number => order.indexOf(JSON.stringify(a)) - order.indexOf(JSON.stringify(b));
}
