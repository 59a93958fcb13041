/**
 * The Lambda handler on the real parts: its configuration and Graphite key in the local SSM
 * endpoint's Parameter Store, Run Command through that endpoint to the real document and three
 * real HAProxy processes, and loads from the real Graphite of the test run. The Graphite path is
 * handler → key gate (checks and strips the API key in the first path segment, as a keyed Graphite
 * gateway does) → fault proxy (passes the real reply, or breaks it on demand) → graphite-web.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { HOSTILE_CHARACTERS, problemsOf, rawHostileCharacters, rewriteSeries, startGraphiteFaultProxy, withRawValue, type GraphiteFaultProxy } from '../harness/faults.js';
import { feedLoads, uniquePrefix } from '../harness/graphite.js';
import { startKeyedGraphite, type KeyedGraphite } from '../harness/graphite-key.js';
import { currentWeights, resetWeights, type BackendSpec } from '../harness/haproxy.js';
import { sharedGraphite } from '../harness/shared-graphite.js';
import { DOCUMENT_NAME, startSsmFleet, type SsmFleet } from '../ssm-endpoint/fleet.js';
import {
  CONFIG_PARAMETER,
  KEY_PARAMETER,
  failedLoadBalancerMetrics,
  invoke,
  messageOf,
  must,
  plannedWeights,
  testHandler,
  totalsOf,
  ssmTestConfig,
} from '../ssm-endpoint/lambda-invoke.js';

const GRAPHITE_KEY = 'sekret-graphite-key-4711';
const SERVERS = ['ingest-1', 'ingest-2', 'ingest-3'];
const LOADS: Readonly<Record<string, number>> = { 'ingest-1': 100, 'ingest-2': 200, 'ingest-3': 400 };
const BACKEND: BackendSpec = { name: 'be_ingest', balance: 'leastconn', servers: SERVERS.map((name) => ({ name })) };
const HOSTILE_SERIES = ['a;shutdown sessions', '$(reboot)', 'ingest-1\nshutdown sessions'];

/** Graphite's real reply plus, under each of `names`, a copy of its first series. */
const withCopiesOfFirst =
  (names: readonly string[]) =>
  (body: string): string =>
    rewriteSeries(body, (series) => {
      const [first] = series;
      if (first === undefined) throw new Error(`the real Graphite returned no series: ${body.slice(0, 200)}`);
      return [...series, ...names.map((name) => ({ ...first, target: name }))];
    });

describe('the Lambda handler through the local SSM endpoint, three real HAProxy processes and the real Graphite', () => {
  let fleet: SsmFleet;
  let proxy: GraphiteFaultProxy;
  let gate: KeyedGraphite;
  let target: string;

  beforeAll(async () => {
    const graphite = await sharedGraphite();
    const prefix = uniquePrefix('aws_handler');
    target = await feedLoads(graphite, prefix, Object.fromEntries(SERVERS.map((s) => [s, LOADS[s] ?? 0])), 'points');
    proxy = await startGraphiteFaultProxy(graphite.url);
    gate = await startKeyedGraphite(proxy.url, GRAPHITE_KEY);
    fleet = await startSsmFleet(3, [BACKEND], {
      parameters: {
        [CONFIG_PARAMETER]: { type: 'String', value: '' },
        [KEY_PARAMETER]: { type: 'SecureString', value: GRAPHITE_KEY },
      },
    });
  });
  afterAll(async () => {
    await Promise.allSettled([fleet?.stop(), gate?.stop(), proxy?.close()]);
  });
  afterEach(async () => {
    fleet.endpoint.clearFaults();
    await proxy.setFault({ kind: 'pass' });
    await resetWeights(fleet.haproxies, 'be_ingest', SERVERS);
  });

  const config = (overrides: { documentName?: string } = {}): unknown =>
    ssmTestConfig(fleet, { url: gate.url, auth: { type: 'url-key', keyEnv: 'GRAPHITE_API_KEY' } }, target, { maxWaitMs: 15_000, ...overrides });

  /** A handler as the stack wires it, with its own parameter cache and the config in Parameter Store. */
  const makeHandler = (document: unknown = config()) => testHandler(fleet, document, { keyParameter: KEY_PARAMETER });

  const sentCommands = (from: number): string[] =>
    fleet.endpoint.calls
      .slice(from)
      .filter((c) => c.operation === 'SendCommand' && c.status === 200)
      .map((c) => JSON.stringify(c.body));

  const weightsOn = async (index: number): Promise<Record<string, number>> => {
    const h = fleet.haproxies[index];
    if (h === undefined) throw new Error(`no HAProxy #${index}`);
    return currentWeights(h, 'be_ingest', SERVERS);
  };

  it('sets the weights on all three HAProxy processes from the loads in Graphite when the schedule fires', async () => {
    const { result, error, emf } = await invoke(makeHandler());
    expect(error).toBeUndefined();
    const report = must(result);

    expect(report.outcome).toBe('ok');
    expect(report.mode).toBe('apply');
    expect(report.backends[0]?.loads).toEqual(LOADS);
    expect(report.serversChanged).toBe(9);
    for (const [i, id] of fleet.instanceIds.entries()) {
      const planned = plannedWeights(report, id);
      expect(Object.keys(planned).sort()).toEqual(SERVERS);
      expect(await weightsOn(i)).toEqual(planned);
      // Least loaded gets the most new connections.
      expect(planned['ingest-1']).toBeGreaterThan(planned['ingest-3'] ?? Infinity);
    }
    expect(totalsOf(emf)).toMatchObject({ CyclesCompleted: 1, ServersChanged: 9, LoadBalancersFailed: 0, GraphiteFailures: 0, service: 'haproxy-weighter' });
    expect(emf.find((m) => m.Backend === 'be_ingest')).toMatchObject({ Imbalance: report.backends[0]?.imbalance });
  });

  it('writes nothing on a dry run and still reports the plan', async () => {
    const from = fleet.endpoint.calls.length;
    const { result, error } = await invoke(makeHandler(), { dryRun: true });
    expect(error).toBeUndefined();
    const report = must(result);

    expect(report.mode).toBe('plan');
    expect(report.serversChanged).toBe(0);
    expect(report.backends[0]?.loads).toEqual(LOADS);
    expect(Object.keys(plannedWeights(report, String(fleet.instanceIds[0])))).toEqual(SERVERS);
    expect(sentCommands(from).some((c) => c.includes('set server'))).toBe(false);
    for (const i of fleet.haproxies.keys()) expect(await weightsOn(i)).toEqual({ 'ingest-1': 100, 'ingest-2': 100, 'ingest-3': 100 });
  });

  it('applies on the other instances when one fails, and names it in the report and a metric', async () => {
    const [good1, bad, good2] = fleet.instanceIds.map(String);
    fleet.endpoint.failInstance(String(bad), 'the SSM Agent on this node crashed');
    const { result, error, emf } = await invoke(makeHandler());
    expect(error).toBeUndefined();
    const report = must(result);

    expect(report.outcome).toBe('partial');
    expect(report.failedLoadBalancers).toEqual([bad]);
    expect(problemsOf(report)).toEqual([['observe-failed', bad, null, null]]);
    expect(report.problems[0]?.cause?.message).toContain('the SSM Agent on this node crashed');
    expect(report.serversChanged).toBe(6);
    expect(await weightsOn(0)).toEqual(plannedWeights(report, String(good1)));
    expect(await weightsOn(2)).toEqual(plannedWeights(report, String(good2)));
    expect(await weightsOn(1)).toEqual({ 'ingest-1': 100, 'ingest-2': 100, 'ingest-3': 100 });
    expect(totalsOf(emf)).toMatchObject({ LoadBalancersFailed: 1, ServersChanged: 6 });
    expect(failedLoadBalancerMetrics(emf)).toEqual([bad]);
  });

  it('retries a throttled SendCommand and completes the cycle', async () => {
    const from = fleet.endpoint.calls.length;
    fleet.endpoint.throttle('SendCommand', 2);
    const { result, error } = await invoke(makeHandler());
    expect(error).toBeUndefined();
    const report = must(result);

    expect(report.outcome).toBe('ok');
    const sends = fleet.endpoint.calls.slice(from).filter((c) => c.operation === 'SendCommand');
    expect(sends.slice(0, 3).map((c) => c.error ?? 'ok')).toEqual(['ThrottlingException', 'ThrottlingException', 'ok']);
    for (const [i, id] of fleet.instanceIds.entries()) expect(await weightsOn(i)).toEqual(plannedWeights(report, id));
  });

  it('counts a Graphite failure, changes no weight and names no load balancer as failed', async () => {
    await proxy.setFault({ kind: 'status', status: 500, count: 100 });
    const { result, error, emf } = await invoke(makeHandler());
    expect(error).toBeUndefined();
    const report = must(result);

    expect(report.serversChanged).toBe(0);
    expect(report.backends[0]?.graphite).toMatchObject({ ok: false, error: expect.stringContaining('HTTP 500') });
    expect(problemsOf(report)).toEqual([['graphite-http-status', null, 'be_ingest', null]]);
    expect(totalsOf(emf)).toMatchObject({ GraphiteFailures: 1, LoadBalancersFailed: 0 });
    for (const i of fleet.haproxies.keys()) expect(await weightsOn(i)).toEqual({ 'ingest-1': 100, 'ingest-2': 100, 'ingest-3': 100 });
  });

  it('reads the configuration, then the Graphite key it needs, once each, and reuses them on warm invocations', async () => {
    const from = fleet.endpoint.calls.length;
    const handler = makeHandler();
    await invoke(handler, { dryRun: true });
    await invoke(handler, { dryRun: true });
    const reads = fleet.endpoint.calls.slice(from).filter((c) => c.operation === 'GetParameters');
    expect(reads.map((r) => r.body)).toEqual([
      { Names: [CONFIG_PARAMETER], WithDecryption: true },
      { Names: [KEY_PARAMETER], WithDecryption: true },
    ]);
  });

  it('uses the Graphite key from the SecureString and never prints it', async () => {
    const from = gate.paths.length;
    const { result, output } = await invoke(makeHandler());

    const asked = gate.paths.slice(from);
    expect(asked.length).toBeGreaterThan(0);
    expect(asked.every((p) => p.startsWith(`/${GRAPHITE_KEY}/render?`))).toBe(true);
    // The key reached the gate and nothing behind it: the real Graphite answered the stripped request.
    expect(must(result).backends[0]?.loads).toEqual(LOADS);
    expect(output).toContain('cycle finished');
    expect(output).not.toContain(GRAPHITE_KEY);
    expect(JSON.stringify(result)).not.toContain(GRAPHITE_KEY);
  });

  it('names the SecureString parameter (and GRAPHITE_KEY_PARAMETER) when Graphite refuses the key in it, and never the key', async () => {
    const wrongKey = 'an-old-graphite-key-0815';
    fleet.endpoint.setParameter(KEY_PARAMETER, { type: 'SecureString', value: wrongKey });
    try {
      const { result, output } = await invoke(makeHandler());
      const report = must(result);
      expect(problemsOf(report)).toEqual([['graphite-auth', null, 'be_ingest', null]]);
      expect(report.backends[0]?.graphite.error).toMatch(
        new RegExp(`did not accept the credentials \\(HTTP 401\\): check the API key sent in the URL path \\(graphite\\.auth url-key\\), read from the SecureString parameter ${KEY_PARAMETER} \\(named by GRAPHITE_KEY_PARAMETER\\)$`),
      );
      expect(output).not.toContain(wrongKey);
      expect(JSON.stringify(result)).not.toContain(wrongKey);
    } finally {
      fleet.endpoint.setParameter(KEY_PARAMETER, { type: 'SecureString', value: GRAPHITE_KEY });
    }
  });

  it('keeps the key out of the logs when Graphite fails on the URL that carries it', async () => {
    await proxy.setFault({ kind: 'status', status: 500, count: 100 });
    const { result, output } = await invoke(makeHandler());

    expect(output).toContain('cycle finished with problems');
    const problems = JSON.stringify(must(result).problems);
    expect(problems).toContain('HTTP 500');
    expect(problems).toContain('/***/render?');
    expect(output).not.toContain(GRAPHITE_KEY);
    expect(JSON.stringify(result)).not.toContain(GRAPHITE_KEY);
  });

  it('never sends a hostile server name that Graphite reports', async () => {
    await proxy.setFault({ kind: 'rewrite', rewrite: withCopiesOfFirst(HOSTILE_SERIES) });
    const from = fleet.endpoint.calls.length;
    const { result, error } = await invoke(makeHandler());
    expect(error).toBeUndefined();
    const report = must(result);

    expect(report.backends[0]?.graphite).toMatchObject({ ok: true, unmapped: ['a;shutdown sessions', '$(reboot)', 'ingest-1\\nshutdown sessions'] });
    expect(report.backends[0]?.loads).toEqual(LOADS);
    const sent = sentCommands(from).join('\n');
    expect(sent).toContain('set server be_ingest/ingest-1 weight');
    expect(sent).not.toMatch(/shutdown|reboot/);
  });

  it('returns and logs hostile series names escaped: no bidi, invisible or control character raw', async () => {
    const hostile = HOSTILE_CHARACTERS.map(([, raw]) => `evil${raw}name`);
    // The names are listed as unmapped; one of them also carries an impossible load, so that the
    // next invocation's problem names it.
    await proxy.setFault({ kind: 'rewrite', rewrite: withCopiesOfFirst(hostile) });
    const listed = await invoke(makeHandler());
    expect(listed.error).toBeUndefined();
    expect(must(listed.result).backends[0]?.graphite.unmapped).toEqual(HOSTILE_CHARACTERS.map(([, , escaped]) => `evil${escaped}name`));

    await proxy.setFault({ kind: 'rewrite', rewrite: (body) => withRawValue(rewriteSeries(body, (series) => series.map((x) => (x.target === 'ingest-2' ? { ...x, target: hostile.join('') } : x))), hostile.join(''), '-5') });
    const refused = await invoke(makeHandler());
    expect(must(refused.result).outcome).toBe('failed');
    expect(JSON.stringify(must(refused.result).problems)).toContain('evil\\\\u{202E}name');

    for (const { result, output } of [listed, refused]) {
      expect(output).toContain('cycle finished');
      expect({ logs: rawHostileCharacters(output, { lines: true }), report: rawHostileCharacters(JSON.stringify(result)) }).toEqual({ logs: [], report: [] });
    }
  });

  it.each([
    ['a command separator', 'a;shutdown sessions'],
    ['a command substitution', '$(reboot)'],
    ['a newline', 'be_ingest\nshutdown sessions'],
  ])('rejects a backend name with %s in a manual invoke, naming the field, sending nothing', async (_label, name) => {
    const from = fleet.endpoint.calls.length;
    const { error } = await invoke(makeHandler(), { backends: [name] });

    expect(error).toBeInstanceOf(Error);
    expect(messageOf(error)).toMatch(/^Invalid invocation payload[\s\S]*backends\.0: must be 1-1024 characters/);
    expect(sentCommands(from)).toEqual([]);
  });

  it.each([
    [{ dryRun: 'yes' }, /dryRun: .*expected boolean/i],
    [{ force: 1 }, /force: .*expected boolean/i],
    [{ backend: ['be_ingest'] }, /unknown key\(s\) "backend"/],
    [{ backends: [] }, /backends: .*(at least|>=) ?1/i],
  ])('rejects the manual payload %j with a message naming the bad field', async (payload, message) => {
    const { error } = await invoke(makeHandler(), payload);
    expect(messageOf(error)).toMatch(message);
  });

  it('rejects a configuration that names a document the stack does not deploy', async () => {
    const { error } = await invoke(makeHandler(config({ documentName: 'AWS-RunShellScript' })));
    expect(messageOf(error)).toContain(`relay.documentName: this stack deploys and may only run the document "${DOCUMENT_NAME}"`);
  });
});
