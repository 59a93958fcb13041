/**
 * How the real Lambda handler sets itself up before a cycle, and what it tells the operator when
 * that fails: the Graphite secret only when the configuration needs one, stage isolation (the
 * configured targets against the tag the stack's role may use), Powertools' middlewares (request
 * id and cold start on log lines, ColdStart metric, metrics flushed at the end of the invocation),
 * and a load balancer whose admin socket another command keeps locked. Everything goes through the
 * local SSM endpoint (Parameter Store and Run Command with the real document), three real HAProxy
 * processes and the real Graphite of the test run.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { createHandler } from '../../functions/handler.js';
import { holdLock, type HeldLock } from '../harness/flock.js';
import { checkedReport } from '../harness/report.js';
import { feedLoads, uniquePrefix } from '../harness/graphite.js';
import { currentWeights, resetWeights, type BackendSpec } from '../harness/haproxy.js';
import { sharedGraphite } from '../harness/shared-graphite.js';
import { DOCUMENT_NAME, TAG, TEST_CREDENTIALS, startSsmFleet, type SsmFleet } from '../ssm-endpoint/fleet.js';
import { CONFIG_PARAMETER, LAMBDA_CONTEXT, SCHEDULED_EVENT, capture, invoke, messageOf, must, plannedWeights, ssmTestConfig, testHandler, totalsOf } from '../ssm-endpoint/lambda-invoke.js';

const SERVERS = ['ingest-1', 'ingest-2', 'ingest-3'];
const LOADS: Readonly<Record<string, number>> = { 'ingest-1': 100, 'ingest-2': 200, 'ingest-3': 400 };
const BACKEND: BackendSpec = { name: 'be_ingest', balance: 'leastconn', servers: SERVERS.map((name) => ({ name })) };
/** The name the stack gives GRAPHITE_KEY_PARAMETER; these tests never create it unless they say so. */
const ABSENT_KEY = '/haproxy-weighter/test/graphite-key-not-created';

/** The JSON log lines Powertools printed. */
function logLines(output: string): Record<string, unknown>[] {
  return output
    .split('\n')
    .filter((l) => l.startsWith('{') && l.includes('"level"'))
    .map((l): Record<string, unknown> => JSON.parse(l));
}

describe('the Lambda handler’s setup, through the local SSM endpoint and real HAProxy', () => {
  let fleet: SsmFleet;
  let graphiteUrl: string;
  let target: string;
  let held: HeldLock | undefined;

  beforeAll(async () => {
    const graphite = await sharedGraphite();
    graphiteUrl = graphite.url;
    target = await feedLoads(graphite, uniquePrefix('aws_setup'), LOADS, 'points');
    fleet = await startSsmFleet(3, [BACKEND]);
  });
  afterAll(async () => {
    await held?.release();
    await fleet?.stop();
  });
  afterEach(async () => {
    await held?.release();
    held = undefined;
    await resetWeights(fleet.haproxies, 'be_ingest', SERVERS);
  });

  /** The configuration in Parameter Store: Graphite without auth, the fleet by instance id unless `targets` says otherwise. */
  const openConfig = (targets?: unknown): unknown => ssmTestConfig(fleet, { url: graphiteUrl, auth: { type: 'none' } }, target, targets === undefined ? {} : { targets });
  const keyedConfig = (): unknown => ssmTestConfig(fleet, { url: graphiteUrl, auth: { type: 'url-key', keyEnv: 'GRAPHITE_API_KEY' } }, target);
  const callsFrom = (from: number, operation: string) => fleet.endpoint.calls.slice(from).filter((c) => c.operation === operation);
  const weightsOn = async (index: number): Promise<Record<string, number>> => {
    const h = fleet.haproxies[index];
    if (h === undefined) throw new Error(`no HAProxy #${index}`);
    return currentWeights(h, 'be_ingest', SERVERS);
  };

  describe('the Graphite secret', () => {
    it('runs the cycle with graphite.auth none when no secret parameter exists, and never asks for one', async () => {
      const from = fleet.endpoint.calls.length;
      const { result, error } = await invoke(testHandler(fleet, openConfig(), { keyParameter: ABSENT_KEY }));

      expect(error).toBeUndefined();
      const report = must(result);
      expect(report.outcome).toBe('ok');
      expect(report.backends[0]?.loads).toEqual(LOADS);
      for (const [i, id] of fleet.instanceIds.entries()) expect(await weightsOn(i)).toEqual(plannedWeights(report, id));
      expect(callsFrom(from, 'GetParameters').map((c) => c.body)).toEqual([{ Names: [CONFIG_PARAMETER], WithDecryption: true }]);
    });

    it('fails with a message naming the missing secret parameter, logs the cause, and sends nothing', async () => {
      const from = fleet.endpoint.calls.length;
      const { error, output } = await invoke(testHandler(fleet, keyedConfig(), { keyParameter: ABSENT_KEY }));

      const message = `Cannot read the Graphite secret (graphite.auth.type is url-key) from the SSM parameter ${ABSENT_KEY}: it does not exist (GetParameters lists it as an invalid parameter)`;
      expect(messageOf(error)).toBe(message);
      const failed = logLines(output).find((l) => l.message === 'cycle failed');
      expect(failed).toMatchObject({ level: 'ERROR', error: message, code: 'config' });
      expect(String(failed?.cause)).toContain(`InvalidParameter ${ABSENT_KEY}`);
      expect(callsFrom(from, 'SendCommand')).toEqual([]);
    });

    it('reads the secret on the next invocation once the operator has created it', async () => {
      const key = `${ABSENT_KEY}-created-later`;
      const handler = testHandler(fleet, keyedConfig(), { keyParameter: key });
      expect(messageOf((await invoke(handler, { dryRun: true })).error)).toContain(`from the SSM parameter ${key}: it does not exist`);

      // A Graphite that ignores the key still answers; what matters is that the key is read now.
      fleet.endpoint.setParameter(key, { type: 'SecureString', value: 'now-it-exists-4711' });
      const from = fleet.endpoint.calls.length;
      const { result, error, output } = await invoke(handler, { dryRun: true });
      expect(error).toBeUndefined();
      expect(must(result).mode).toBe('plan');
      expect(callsFrom(from, 'GetParameters').map((c) => c.body)).toEqual([{ Names: [key], WithDecryption: true }]);
      expect(output).not.toContain('now-it-exists-4711');
    });

    it('names the configuration parameter when it is missing', async () => {
      const missing = '/haproxy-weighter/test/config-not-created';
      const handler = createHandler({
        env: { CONFIG_PARAMETER: missing, GRAPHITE_KEY_PARAMETER: ABSENT_KEY, RELAY_DOCUMENT_NAME: DOCUMENT_NAME },
        aws: { endpoint: fleet.endpoint.url, region: 'us-east-1', credentials: TEST_CREDENTIALS, maxAttempts: 2 },
        logger: new Logger({ serviceName: 'haproxy-weighter', logLevel: 'SILENT' }),
        metrics: new Metrics({ serviceName: 'haproxy-weighter', namespace: 'HaproxyWeighterTest' }),
        cache: { key: `setup-missing-config-${process.pid}`, expiryMs: -1 },
      });
      const { error } = await capture(() => handler(SCHEDULED_EVENT, { ...LAMBDA_CONTEXT }));
      expect(messageOf(error)).toBe(`Cannot read the configuration from the SSM parameter ${missing}: it does not exist (GetParameters lists it as an invalid parameter)`);
    });
  });

  describe('stage isolation', () => {
    it('refuses a configuration whose target tag is not the one the stack’s role may use, naming both, before sending anything', async () => {
      const from = fleet.endpoint.calls.length;
      const { error } = await invoke(testHandler(fleet, openConfig({ tag: { key: 'haproxy-weighter', value: 'prod' } })));

      expect(messageOf(error)).toContain(
        `relay.targets.tag: this stack's role may only run commands on instances tagged ${TAG.key}=${TAG.value}; the configuration targets haproxy-weighter=prod`,
      );
      expect(callsFrom(from, 'SendCommand')).toEqual([]);
    });

    it('runs the cycle on the instances found by the stack’s own tag', async () => {
      const { result, error } = await invoke(testHandler(fleet, openConfig({ tag: { ...TAG } })));
      expect(error).toBeUndefined();
      expect(must(result).loadBalancers.map((l) => l.name)).toEqual([...fleet.instanceIds].sort());
    });

    it('runs the cycle on the online instances found by the tag and reports an offline one as a problem of its own load balancer, sending it nothing', async () => {
      const mixed = await startSsmFleet(3, [BACKEND], { instances: { 2: { online: false } } });
      try {
        const { result, error } = await invoke(testHandler(mixed, openConfig({ tag: { ...TAG } })));
        expect(error).toBeUndefined();
        const report = must(result);
        const [up1, up2, offline] = mixed.instanceIds.map(String);

        expect(report.loadBalancers.map((l) => l.name)).toEqual([up1, up2, offline]);
        expect(report.outcome).toBe('partial');
        expect(report.failedLoadBalancers).toEqual([offline]);
        expect(report.problems.map((p) => [p.code, p.loadBalancer])).toEqual([['observe-failed', offline]]);
        expect(report.problems[0]?.cause?.message).toMatch(new RegExp(`^${offline}: not sent: Systems Manager reports its SSM Agent as ConnectionLost, last ping \\S+: it cannot run a command now$`));
        expect(mixed.endpoint.invocations().filter((i) => i.instanceId === offline)).toEqual([]);
        for (const [i, id] of [up1, up2].entries()) {
          for (const s of SERVERS) expect((await mixed.haproxies[i]?.getWeight('be_ingest', s))?.current).toBe(plannedWeights(report, String(id))[s]);
        }
        for (const s of SERVERS) expect((await mixed.haproxies[2]?.getWeight('be_ingest', s))?.current).toBe(100);
      } finally {
        await mixed.stop();
      }
    });

    it('refuses instance ids that do not carry the stack’s tag, and ids Systems Manager does not know, naming them', async () => {
      const from = fleet.endpoint.calls.length;
      const unknown = 'i-0fffffffffffffff0';
      const handler = testHandler(fleet, openConfig({ instanceIds: [...fleet.instanceIds, unknown] }), { targetTag: { key: TAG.key, value: 'prod' } });
      const { error } = await invoke(handler);

      const message = messageOf(error);
      expect(message).toContain(`relay.targets.instanceIds: ${fleet.instanceIds.join(', ')} not tagged haproxy-weighter=prod, the only instances this stack's role may run commands on`);
      expect(message).toContain(`relay.targets.instanceIds: ${unknown} not registered with Systems Manager in this region`);
      expect(callsFrom(from, 'SendCommand')).toEqual([]);
    });
  });

  describe('Powertools', () => {
    // Set by the Lambda runtime for on-demand environments; Powertools reports cold starts only then.
    beforeEach(() => vi.stubEnv('AWS_LAMBDA_INITIALIZATION_TYPE', 'on-demand'));
    afterEach(() => vi.unstubAllEnvs());

    it('puts the request id and cold start on every log line, and flushes the metrics with a ColdStart metric and the cycle’s tick as timestamp', async () => {
      const handler = testHandler(fleet, openConfig());
      const tick = new Date(Math.floor(Date.now() / 60_000) * 60_000).toISOString();
      const first = await invoke(handler, { ...SCHEDULED_EVENT, time: tick });
      const second = await invoke(handler, { ...SCHEDULED_EVENT, time: tick });

      for (const [run, coldStart] of [
        [first, true],
        [second, false],
      ] as const) {
        expect(run.error).toBeUndefined();
        const lines = logLines(run.output).filter((l) => l.message === 'cycle started' || l.message === 'cycle finished');
        expect(lines).toHaveLength(2);
        for (const line of lines) expect(line).toMatchObject({ function_request_id: LAMBDA_CONTEXT.awsRequestId, cold_start: coldStart, function_name: LAMBDA_CONTEXT.functionName });
        expect(totalsOf(run.emf)._aws).toMatchObject({ Timestamp: Date.parse(tick) });
      }
      expect(first.emf.filter((m) => m.ColdStart === 1)).toHaveLength(1);
      expect(second.emf.filter((m) => 'ColdStart' in m)).toEqual([]);
    });

    it('still flushes the ColdStart metric when the invocation fails, and emits no cycle totals then', async () => {
      const { error, emf } = await invoke(testHandler(fleet, keyedConfig(), { keyParameter: ABSENT_KEY }));
      expect(error).toBeInstanceOf(Error);
      expect(emf.filter((m) => m.ColdStart === 1)).toHaveLength(1);
      expect(emf.filter((m) => 'ServersChanged' in m)).toEqual([]);
    });
  });

  describe('a load balancer whose admin socket another command keeps locked', () => {
    it('is reported with the lock message while the others are applied', async () => {
      const [locked, ...others] = fleet.instanceIds.map(String);
      held = await holdLock(`${fleet.byInstance(String(locked)).adminSocket}.haproxy-weighter.lock`);
      const { result, error } = await invoke(testHandler(fleet, openConfig()), {});

      expect(error).toBeUndefined();
      const report = must(result);
      expect(report.failedLoadBalancers).toEqual([locked]);
      expect(JSON.stringify(report.problems)).toContain(
        `${String(locked)}: SSM command`,
      );
      expect(JSON.stringify(report.problems)).toContain('exit code 75: haproxy-weighter: another haproxy-weighter command held the admin socket lock for 10 s (a cycle still running, or a manual invoke): nothing was sent to HAProxy');
      expect(await weightsOn(0)).toEqual({ 'ingest-1': 100, 'ingest-2': 100, 'ingest-3': 100 });
      for (const id of others) expect(await weightsOn(fleet.instanceIds.indexOf(id))).toEqual(plannedWeights(report, id));
    });

    it('lets a manual invoke and a scheduled cycle that run at the same time both complete', async () => {
      const config = openConfig();
      const scheduled = testHandler(fleet, config);
      const manual = testHandler(fleet, config);
      const { result, error } = await capture(() => Promise.all([scheduled(SCHEDULED_EVENT, { ...LAMBDA_CONTEXT }), manual({ force: true }, { ...LAMBDA_CONTEXT })]));
      expect(error).toBeUndefined();
      const [fromSchedule, fromManual] = must(result).map((r) => checkedReport(r));
      expect([fromSchedule?.outcome, fromManual?.outcome]).toEqual(['ok', 'ok']);
      for (const [i, id] of fleet.instanceIds.entries()) expect(await weightsOn(i)).toEqual(plannedWeights(must(fromManual), id));
    });
  });
});
