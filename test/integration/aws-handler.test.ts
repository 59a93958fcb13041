import { createServer, type Server } from 'node:http';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import type { Context } from 'aws-lambda';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { CycleReport } from '../../functions/core/cycle.js';
import { createHandler } from '../../functions/handler.js';
import type { BackendSpec } from '../harness/haproxy.js';
import { DOCUMENT_NAME, SOCKET_PATH, TEST_CREDENTIALS, startSsmFleet, type SsmFleet } from '../ssm-endpoint/fleet.js';

const GRAPHITE_KEY = 'sekret-graphite-key-4711';
const CONFIG_PARAMETER = '/haproxy-weighter/test/config';
const KEY_PARAMETER = '/haproxy-weighter/test/graphite-key';
const SERVERS = ['ingest-1', 'ingest-2', 'ingest-3'];
const BACKEND: BackendSpec = { name: 'be_ingest', balance: 'leastconn', servers: SERVERS.map((name) => ({ name })) };

const SCHEDULED_EVENT = {
  version: '0',
  id: '53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa',
  'detail-type': 'Scheduled Event',
  source: 'aws.events',
  account: '123456789012',
  time: '2024-01-01T00:00:00Z',
  region: 'us-east-1',
  resources: ['arn:aws:events:us-east-1:123456789012:rule/haproxy-weighter-prod-schedule'],
  detail: {},
};

/** A Graphite `/render` endpoint: per-server load series, and a record of the paths asked for. */
async function startGraphiteStub(series: () => { target: string; datapoints: [number | null, number][] }[]): Promise<{ url: string; paths: string[]; fail: { on: boolean }; close(): Promise<void> }> {
  const paths: string[] = [];
  const fail = { on: false };
  const server: Server = createServer((req, res) => {
    paths.push(req.url ?? '');
    if (fail.on) {
      res.writeHead(500).end('carbon is down');
      return;
    }
    const body = JSON.stringify(series());
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
  });
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, () => resolve()));
  const address = server.address();
  if (address === null || typeof address !== 'object') throw new Error('no address');
  return {
    url: `http://127.0.0.1:${address.port}/`,
    paths,
    fail,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function configYaml(graphiteUrl: string, instanceIds: readonly string[]): string {
  return [
    'graphite:',
    `  url: ${graphiteUrl}`,
    '  auth: { type: url-key, keyEnv: GRAPHITE_API_KEY }',
    '  retries: 0',
    'relay:',
    '  type: ssm',
    `  documentName: ${DOCUMENT_NAME}`,
    `  socketPath: ${SOCKET_PATH}`,
    `  targets: { instanceIds: [${instanceIds.join(', ')}] }`,
    '  pollIntervalMs: 20',
    '  maxWaitMs: 15000',
    'backends:',
    '  - name: be_ingest',
    "    target: 'aliasByNode(ingest.*.points, 1)'",
    '    weighting: { function: limited-proportions }',
    '',
  ].join('\n');
}

const context = {
  callbackWaitsForEmptyEventLoop: true,
  functionName: 'haproxy-weighter-test-rebalance',
  functionVersion: '$LATEST',
  invokedFunctionArn: 'arn:aws:lambda:us-east-1:123456789012:function:haproxy-weighter-test-rebalance',
  memoryLimitInMB: '256',
  awsRequestId: 'c6af9ac6-7b61-11e6-9a41-93e812345678',
  logGroupName: '/aws/lambda/haproxy-weighter-test-rebalance',
  logStreamName: '2024/01/01/[$LATEST]abcdef',
  getRemainingTimeInMillis: () => 300_000,
  done: () => undefined,
  fail: () => undefined,
  succeed: () => undefined,
} satisfies Context;

interface Captured<T> {
  readonly result: T | undefined;
  readonly error: unknown;
  readonly output: string;
  /** The EMF documents printed, one per line. */
  readonly emf: Record<string, unknown>[];
}

/** Runs `fn` while recording everything Powertools prints (logs on stdout and stderr, EMF metrics on stdout). */
async function capture<T>(fn: () => Promise<T>): Promise<Captured<T>> {
  const chunks: string[] = [];
  const record = (chunk: string | Uint8Array): boolean => {
    chunks.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
    return true;
  };
  const spies = [vi.spyOn(process.stdout, 'write').mockImplementation(record), vi.spyOn(process.stderr, 'write').mockImplementation(record)];
  let result: T | undefined;
  let error: unknown;
  try {
    result = await fn();
  } catch (e) {
    error = e;
  } finally {
    for (const spy of spies) spy.mockRestore();
  }
  const output = chunks.join('');
  const emf = output
    .split('\n')
    .filter((l) => l.includes('"_aws"'))
    .map((l): Record<string, unknown> => JSON.parse(l));
  return { result, error, output, emf };
}

function must<T>(value: T | undefined): T {
  if (value === undefined) throw new Error('the handler returned nothing');
  return value;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function plannedWeights(report: CycleReport, loadBalancer: string): Record<string, number> {
  const plan = report.backends[0]?.loadBalancers.find((l) => l.loadBalancer === loadBalancer)?.plan;
  if (plan?.status !== 'planned') throw new Error(`no plan for ${loadBalancer}`);
  return Object.fromEntries(plan.actions.flatMap((a) => (a.kind === 'set-weight' ? [[a.server, a.weight]] : [])));
}

describe('the Lambda handler through the local SSM endpoint and three real HAProxy processes', () => {
  let fleet: SsmFleet;
  let graphite: Awaited<ReturnType<typeof startGraphiteStub>>;
  let loads: Record<string, number> = { 'ingest-1': 100, 'ingest-2': 200, 'ingest-3': 400 };
  let extraSeries: string[] = [];
  let cacheCount = 0;

  beforeAll(async () => {
    graphite = await startGraphiteStub(() =>
      [...Object.entries(loads), ...extraSeries.map((name): [string, number] => [name, 1])].map(([target, value]) => ({
        target,
        datapoints: [
          [value, 1_700_000_000],
          [value, 1_700_000_010],
        ],
      })),
    );
    fleet = await startSsmFleet(3, [BACKEND], {
      parameters: {
        [CONFIG_PARAMETER]: { type: 'String', value: '' },
        [KEY_PARAMETER]: { type: 'SecureString', value: GRAPHITE_KEY },
      },
    });
  });
  afterAll(async () => {
    await Promise.allSettled([fleet?.stop(), graphite?.close()]);
  });
  afterEach(async () => {
    fleet.endpoint.clearFaults();
    graphite.fail.on = false;
    extraSeries = [];
    loads = { 'ingest-1': 100, 'ingest-2': 200, 'ingest-3': 400 };
    await Promise.all(fleet.haproxies.map((h) => h.runtime(SERVERS.map((s) => `set server be_ingest/${s} weight 100`).join('; '))));
  });

  /** A handler as the stack wires it, with its own parameter cache and the config in Parameter Store. */
  const makeHandler = (config = configYaml(graphite.url, fleet.instanceIds)) => {
    fleet.endpoint.setParameter(CONFIG_PARAMETER, { type: 'String', value: config });
    return createHandler({
      env: { CONFIG_PARAMETER, GRAPHITE_KEY_PARAMETER: KEY_PARAMETER, RELAY_DOCUMENT_NAME: DOCUMENT_NAME },
      aws: { endpoint: fleet.endpoint.url, region: 'us-east-1', credentials: TEST_CREDENTIALS, maxAttempts: 4 },
      logger: new Logger({ serviceName: 'haproxy-weighter', logLevel: 'DEBUG' }),
      metrics: new Metrics({ serviceName: 'haproxy-weighter', namespace: 'HaproxyWeighterTest' }),
      cache: { key: `handler-test-${++cacheCount}`, expiryMs: -1 },
    });
  };

  const sentCommands = (from: number): string[] =>
    fleet.endpoint.calls
      .slice(from)
      .filter((c) => c.operation === 'SendCommand' && c.status === 200)
      .map((c) => JSON.stringify(c.body));

  it('sets the weights on all three HAProxy processes when the schedule fires', async () => {
    const handler = makeHandler();
    const { result, error, emf } = await capture(() => handler(SCHEDULED_EVENT, context));
    expect(error).toBeUndefined();
    const report = must(result);

    expect(report.outcome).toBe('ok');
    expect(report.mode).toBe('apply');
    expect(report.serversChanged).toBe(9);
    for (const [i, h] of fleet.haproxies.entries()) {
      const planned = plannedWeights(report, String(fleet.instanceIds[i]));
      expect(Object.keys(planned).sort()).toEqual(SERVERS);
      for (const server of SERVERS) expect((await h.getWeight('be_ingest', server)).current).toBe(planned[server]);
      // Least loaded gets the most new connections.
      expect(planned['ingest-1']).toBeGreaterThan(planned['ingest-3'] ?? Infinity);
    }
    const totals = emf.find((m) => 'CyclesCompleted' in m);
    expect(totals).toMatchObject({ CyclesCompleted: 1, ServersChanged: 9, LoadBalancersFailed: 0, GraphiteFailures: 0, service: 'haproxy-weighter' });
    expect(emf.find((m) => m.Backend === 'be_ingest')).toMatchObject({ Imbalance: report.backends[0]?.imbalance });
  });

  it('writes nothing on a dry run and still reports the plan', async () => {
    const handler = makeHandler();
    const from = fleet.endpoint.calls.length;
    const { result, error } = await capture(() => handler({ dryRun: true }, context));
    expect(error).toBeUndefined();
    const report = must(result);

    expect(report.mode).toBe('plan');
    expect(report.serversChanged).toBe(0);
    expect(Object.keys(plannedWeights(report, String(fleet.instanceIds[0])))).toEqual(SERVERS);
    expect(sentCommands(from).some((c) => c.includes('set server'))).toBe(false);
    for (const h of fleet.haproxies) for (const s of SERVERS) expect((await h.getWeight('be_ingest', s)).current).toBe(100);
  });

  it('applies on the other instances when one fails, and names it in the report and a metric', async () => {
    const handler = makeHandler();
    const [good1, bad, good2] = fleet.instanceIds.map(String);
    fleet.endpoint.failInstance(String(bad), 'the SSM Agent on this node crashed');
    const { result, error, emf } = await capture(() => handler(SCHEDULED_EVENT, context));
    expect(error).toBeUndefined();
    const report = must(result);

    expect(report.outcome).toBe('partial');
    expect(report.failedLoadBalancers).toEqual([bad]);
    expect(report.problems.join('\n')).toContain('the SSM Agent on this node crashed');
    expect(report.serversChanged).toBe(6);
    for (const id of [good1, good2]) {
      const h = fleet.byInstance(String(id));
      expect((await h.getWeight('be_ingest', 'ingest-3')).current).toBe(plannedWeights(report, String(id))['ingest-3']);
    }
    for (const s of SERVERS) expect((await fleet.byInstance(String(bad)).getWeight('be_ingest', s)).current).toBe(100);
    expect(emf.find((m) => 'LoadBalancersFailed' in m)).toMatchObject({ LoadBalancersFailed: 1 });
    expect(emf.find((m) => m.LoadBalancer === bad)).toMatchObject({ LoadBalancerFailed: 1 });
  });

  it('retries a throttled SendCommand and completes the cycle', async () => {
    const handler = makeHandler();
    const from = fleet.endpoint.calls.length;
    fleet.endpoint.throttle('SendCommand', 2);
    const { result, error } = await capture(() => handler(SCHEDULED_EVENT, context));
    expect(error).toBeUndefined();

    expect(must(result).outcome).toBe('ok');
    const sends = fleet.endpoint.calls.slice(from).filter((c) => c.operation === 'SendCommand');
    expect(sends.slice(0, 3).map((c) => c.error ?? 'ok')).toEqual(['ThrottlingException', 'ThrottlingException', 'ok']);
    const planned = plannedWeights(must(result), String(fleet.instanceIds[0]));
    expect((await fleet.haproxies[0]?.getWeight('be_ingest', 'ingest-1'))?.current).toBe(planned['ingest-1']);
  });

  it('counts a Graphite failure, changes no weight and names no load balancer as failed', async () => {
    const handler = makeHandler();
    graphite.fail.on = true;
    const { result, error, emf } = await capture(() => handler(SCHEDULED_EVENT, context));
    expect(error).toBeUndefined();

    expect(must(result).serversChanged).toBe(0);
    expect(emf.find((m) => 'GraphiteFailures' in m)).toMatchObject({ GraphiteFailures: 1, LoadBalancersFailed: 0 });
    for (const h of fleet.haproxies) expect((await h.getWeight('be_ingest', 'ingest-2')).current).toBe(100);
  });

  it('reads the parameters once and reuses them on warm invocations', async () => {
    const handler = makeHandler();
    const from = fleet.endpoint.calls.length;
    await capture(() => handler({ dryRun: true }, context));
    await capture(() => handler({ dryRun: true }, context));
    const reads = fleet.endpoint.calls.slice(from).filter((c) => c.operation === 'GetParameters');
    expect(reads.length).toBe(1);
    expect(reads[0]?.body).toMatchObject({ Names: [CONFIG_PARAMETER, KEY_PARAMETER], WithDecryption: true });
  });

  it('uses the Graphite key from the SecureString and never prints it', async () => {
    const handler = makeHandler();
    const from = graphite.paths.length;
    const { result, output } = await capture(() => handler(SCHEDULED_EVENT, context));

    expect(graphite.paths.slice(from).every((p) => p.startsWith(`/${GRAPHITE_KEY}/render?`))).toBe(true);
    expect(output).toContain('cycle finished');
    expect(output).not.toContain(GRAPHITE_KEY);
    expect(JSON.stringify(result)).not.toContain(GRAPHITE_KEY);
  });

  it('keeps the key out of the logs when Graphite fails on the URL that carries it', async () => {
    const handler = makeHandler();
    graphite.fail.on = true;
    const { result, output } = await capture(() => handler(SCHEDULED_EVENT, context));

    expect(output).toContain('cycle finished with problems');
    expect(JSON.stringify(must(result).problems)).toContain('***');
    expect(output).not.toContain(GRAPHITE_KEY);
    expect(JSON.stringify(result)).not.toContain(GRAPHITE_KEY);
  });

  it('never sends a hostile server name that Graphite reports', async () => {
    const handler = makeHandler();
    extraSeries = ['a;shutdown sessions', '$(reboot)', 'ingest-1\nshutdown sessions'];
    const from = fleet.endpoint.calls.length;
    const { result, error } = await capture(() => handler(SCHEDULED_EVENT, context));
    expect(error).toBeUndefined();

    expect(must(result).backends[0]?.graphite).toMatchObject({ ok: true, unmapped: ['a;shutdown sessions', '$(reboot)', 'ingest-1\\nshutdown sessions'] });
    const sent = sentCommands(from).join('\n');
    expect(sent).toContain('set server be_ingest/ingest-1 weight');
    expect(sent).not.toMatch(/shutdown|reboot/);
  });

  it.each([
    ['a command separator', 'a;shutdown sessions'],
    ['a command substitution', '$(reboot)'],
    ['a newline', 'be_ingest\nshutdown sessions'],
  ])('rejects a backend name with %s in a manual invoke, naming the field, sending nothing', async (_label, name) => {
    const handler = makeHandler();
    const from = fleet.endpoint.calls.length;
    const { error } = await capture(() => handler({ backends: [name] }, context));

    expect(error).toBeInstanceOf(Error);
    expect(messageOf(error)).toMatch(/^Invalid invocation payload[\s\S]*backends\.0: must be 1-64 characters/);
    expect(sentCommands(from)).toEqual([]);
  });

  it.each([
    [{ dryRun: 'yes' }, /dryRun: .*expected boolean/i],
    [{ force: 1 }, /force: .*expected boolean/i],
    [{ backend: ['be_ingest'] }, /unknown key\(s\) "backend"/],
    [{ backends: [] }, /backends: .*(at least|>=) ?1/i],
  ])('rejects the manual payload %j with a message naming the bad field', async (payload, message) => {
    const handler = makeHandler();
    const { error } = await capture(() => handler(payload, context));
    expect(messageOf(error)).toMatch(message);
  });

  it('rejects a configuration that names a document the stack does not deploy', async () => {
    const handler = makeHandler(configYaml(graphite.url, fleet.instanceIds).replace(`documentName: ${DOCUMENT_NAME}`, 'documentName: AWS-RunShellScript'));
    const { error } = await capture(() => handler(SCHEDULED_EVENT, context));
    expect(messageOf(error)).toContain(`relay.documentName: this stack deploys and may only run the document "${DOCUMENT_NAME}"`);
  });
});
