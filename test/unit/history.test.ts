/**
 * The weight history's pure parts (metric names, points of a report, the warning when sending
 * fails) and the HTTP sink's requests against undici's MockAgent. Carbon and the HTTP ingestion
 * on the real carbon and graphite-web: test/integration/history.test.ts.
 */
import { readFileSync } from 'node:fs';
import { MockAgent } from 'undici';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { carbonLines, createHistorySink, grafanaBody } from '../../functions/adapters/history-sink.js';
import { parseConfig } from '../../functions/core/config.js';
import { runCycle } from '../../functions/core/cycle.js';
import { ConfigError, HistoryError } from '../../functions/core/errors.js';
import { escapeNode, historyPoints, recordHistory, type HistoryPoint, type HistorySink } from '../../functions/core/history.js';
import { splitReplies } from '../../functions/core/haproxy-protocol.js';
import type { CycleReport } from '../../functions/core/report.js';
import type { RelayRequest } from '../../functions/core/types.js';
import { checkedReport } from '../harness/report.js';

describe('escapeNode', () => {
  it.each([
    ['s1', 's1'],
    ['ingest-1:9000', 'ingest-1:9000'],
    ['node.eu-1', 'node%2Eeu-1'],
    ['a_b', 'a_b'],
    ['100%', '100%25'],
    ['%2E', '%252E'],
    ['é', '%C3%A9'],
    ['a b', 'a%20b'],
    ['', '%'],
  ])('writes %j as the single node %j', (name, node) => {
    expect(escapeNode(name)).toBe(node);
    expect(node).not.toContain('.');
  });

  it('never gives two names one node', () => {
    const names = ['a.b', 'a_b', 'a%2Eb', 'a-b', 'a:b', 'a..b', 'a%b', 'a.b.', '.a.b'];
    expect(new Set(names.map(escapeNode)).size).toBe(names.length);
  });
});

// A real cycle on the recorded roundrobin backend: rr-a and rr-b, weights 1 and 5.
const OBSERVE_RR = readFileSync('test/fixtures/haproxy/observe-roundrobin.reply.txt', 'utf8');
const STATE_RR = `${splitReplies(['show stat rr 6 -1', 'show servers state rr'], OBSERVE_RR)[1] ?? ''}\n`;
const config = (history?: Record<string, unknown>) =>
  parseConfig({
    graphite: { url: 'http://graphite.test' },
    relay: { type: 'socket', loadBalancers: [{ name: 'lb.1', endpoint: '/x/1.sock' }] },
    backends: [{ name: 'rr', target: 'rr.*', weighting: { function: 'limited-proportions' } }],
    ...(history === undefined ? {} : { history }),
  });

async function cycle(mode: 'plan' | 'apply', setReply: (command: string) => string = () => '\n'): Promise<CycleReport> {
  return runCycle(
    {
      config: config(),
      metrics: { render: async () => [{ name: 'rr-a', values: [300] }, { name: 'rr-b', values: [100] }] },
      relay: {
        loadBalancers: ['lb.1'],
        run: async (requests: readonly RelayRequest[]) =>
          requests.map((req) => ({
            loadBalancer: req.loadBalancer,
            ok: true as const,
            reply: req.commands[0]?.startsWith('show stat') === true ? OBSERVE_RR : req.commands.map((c) => (c.startsWith('show servers state') ? STATE_RR : setReply(c))).join(''),
          })),
      },
      now: () => 1_700_000_003_500,
      version: '0.0.0-test',
    },
    { mode },
  );
}

const byPath = (points: readonly HistoryPoint[]): Record<string, number> => Object.fromEntries(points.map((p) => [p.path, p.value]));

describe('historyPoints', () => {
  it('gives the weights HAProxy holds after the cycle, the loads, the imbalance and the outcome, at the cycle start second', async () => {
    const report = await cycle('apply');
    const actions = report.backends[0]?.loadBalancers[0]?.plan.actions ?? [];
    const points = historyPoints(report, 'hw');
    expect(new Set(points.map((p) => p.timestamp))).toEqual(new Set([1_700_000_003]));
    expect(byPath(points)).toEqual({
      'hw.cycle.outcome': 0,
      'hw.cycle.servers_changed': 2,
      'hw.cycle.problems': 0,
      'hw.cycle.duration_ms': 0,
      'hw.backend.rr.imbalance': 1.5,
      'hw.backend.rr.changed': 2,
      'hw.backend.rr.load.rr-a': 300,
      'hw.backend.rr.load.rr-b': 100,
      // The load balancer's name holds a dot: one node.
      'hw.backend.rr.weight.lb%2E1.rr-a': actions.find((a) => a.server === 'rr-a')?.weight,
      'hw.backend.rr.weight.lb%2E1.rr-b': actions.find((a) => a.server === 'rr-b')?.weight,
    });
  });

  it('gives a weight whose write is not confirmed as the one read back, and leaves it out when none could be', async () => {
    // rr-a refused; no reply for rr-b: the batch failed, and the read-back found both at their old weights.
    const report = await cycle('apply', (c) => (c.includes('rr-a') ? 'No such server.\n\n' : ''));
    const entry = report.backends[0]?.loadBalancers[0];
    expect(entry?.apply.failed.map((f) => [f.server, f.heldWeight])).toEqual([
      ['rr-a', 1],
      ['rr-b', 5],
    ]);
    const weights = (r: CycleReport) => Object.fromEntries(Object.entries(byPath(historyPoints(r, 'hw'))).filter(([path]) => path.includes('.weight.')));
    expect(weights(report)).toEqual({ 'hw.backend.rr.weight.lb%2E1.rr-a': 1, 'hw.backend.rr.weight.lb%2E1.rr-b': 5 });
    expect(byPath(historyPoints(report, 'hw'))['hw.cycle.outcome']).toBe(2);

    // The same report had rr-b's weight not been read back: what HAProxy holds is unknown, so no point.
    const unknown = structuredClone(report);
    for (const f of unknown.backends[0]?.loadBalancers[0]?.apply.failed ?? []) if (f.server === 'rr-b') f.heldWeight = null;
    expect(weights(unknown)).toEqual({ 'hw.backend.rr.weight.lb%2E1.rr-a': 1 });
  });
});

describe('recordHistory', () => {
  const sink = (send: (points: readonly HistoryPoint[]) => Promise<void>): HistorySink & { sent: HistoryPoint[][] } => {
    const sent: HistoryPoint[][] = [];
    return {
      destination: 'carbon at c.test:2003',
      sent,
      send: async (points) => {
        sent.push([...points]);
        await send(points);
      },
    };
  };

  it('sends the points of an apply cycle and leaves the report as it was', async () => {
    const report = await cycle('apply');
    const s = sink(async () => undefined);
    expect(await recordHistory(report, s, 'hw')).toBe(report);
    expect(s.sent).toEqual([historyPoints(report, 'hw')]);
  });

  it('sends nothing for a plan: a plan changes nothing', async () => {
    const s = sink(async () => undefined);
    await recordHistory(await cycle('plan'), s, 'hw');
    expect(s.sent).toEqual([]);
  });

  it('turns a failure to send into one warning, keeping the outcome, and the report still matches the shipped schema', async () => {
    const report = await cycle('apply');
    const after = checkedReport(await recordHistory(report, sink(async () => Promise.reject(new HistoryError('carbon at c.test:2003: ECONNREFUSED'))), 'hw'));
    expect(after.outcome).toBe(report.outcome);
    expect(after.problems).toEqual([
      {
        code: 'history-not-sent',
        severity: 'warning',
        loadBalancer: null,
        backend: null,
        server: null,
        message: 'the weight history was not sent to carbon at c.test:2003 (the cycle itself is unaffected)',
        cause: { type: 'history', kind: null, message: 'carbon at c.test:2003: ECONNREFUSED' },
      },
    ]);
  });
});

describe('the history configuration', () => {
  it('defaults the prefix and carbon port', () => {
    expect(config({ carbon: { host: 'carbon.example' } }).history).toEqual({ prefix: 'haproxy-weighter', carbon: { host: 'carbon.example', port: 2003, timeoutMs: 5000 } });
  });

  it.each([
    ['no destination', {}, 'must name exactly one destination'],
    ['two destinations', { carbon: { host: 'c' }, http: { url: 'https://g.test/graphite/metrics' } }, 'must name exactly one destination'],
    ['a prefix with an empty node', { prefix: 'a..b', carbon: { host: 'c' } }, 'history.prefix'],
    ['a prefix with a space', { prefix: 'a b', carbon: { host: 'c' } }, 'history.prefix'],
    ['credentials in the URL', { http: { url: 'https://u:p@g.test/graphite/metrics' } }, 'must not embed credentials'],
    ['a url-key auth', { http: { url: 'https://g.test/graphite/metrics', auth: { type: 'url-key', keyEnv: 'K' } } }, 'history.http.auth'],
    ['an unknown key', { carbon: { host: 'c', protocol: 'udp' } }, 'unknown key(s) "protocol"'],
  ])('refuses %s, naming the key', (_what, history, named) => {
    expect(() => config(history)).toThrow(ConfigError);
    expect(() => config(history)).toThrow(named);
  });
});

describe('what the sinks send', () => {
  const points: HistoryPoint[] = [
    { path: 'hw.backend.rr.weight.lb1.rr-a', value: 37, timestamp: 1_700_000_000 },
    { path: 'hw.backend.rr.imbalance', value: 1.25, timestamp: 1_700_000_000 },
  ];

  it("writes carbon's plaintext lines", () => {
    expect(carbonLines(points)).toBe('hw.backend.rr.weight.lb1.rr-a 37 1700000000\nhw.backend.rr.imbalance 1.25 1700000000\n');
  });

  it.each([
    ['a path with a space', { path: 'hw.a b', value: 1, timestamp: 1 }],
    ['a path with a newline', { path: 'hw.a\nevil 1 1', value: 1, timestamp: 1 }],
    ['an empty node', { path: 'hw..a', value: 1, timestamp: 1 }],
    ['a value that is not finite', { path: 'hw.a', value: Number.NaN, timestamp: 1 }],
  ])('refuses %s before it reaches a socket', (_what, point) => {
    expect(() => carbonLines([point])).toThrow(HistoryError);
    expect(() => grafanaBody([point], 60)).toThrow(HistoryError);
  });

  it("writes Grafana Cloud's JSON points", () => {
    expect(JSON.parse(grafanaBody(points, 60))).toEqual([
      { name: 'hw.backend.rr.weight.lb1.rr-a', interval: 60, value: 37, time: 1_700_000_000, mtype: 'gauge', tags: [] },
      { name: 'hw.backend.rr.imbalance', interval: 60, value: 1.25, time: 1_700_000_000, mtype: 'gauge', tags: [] },
    ]);
  });
});

describe('the HTTP sink', () => {
  const ORIGIN = 'https://graphite-prod.grafana.test';
  let agent: MockAgent;
  beforeEach(() => {
    agent = new MockAgent();
    agent.disableNetConnect();
  });
  afterEach(async () => {
    await agent.close();
  });
  const httpSink = (auth: Record<string, unknown>, env: Record<string, string> = { TOKEN: 'glc_secret' }) => {
    const history = config({ http: { url: `${ORIGIN}/graphite/metrics`, auth } }).history;
    const sink = createHistorySink(history, { env, intervalSeconds: 60, dispatcher: agent });
    if (sink === undefined) throw new Error('no sink');
    return sink;
  };
  const point: HistoryPoint[] = [{ path: 'hw.cycle.outcome', value: 0, timestamp: 1_700_000_000 }];

  it.each([
    ['basic', { type: 'basic', username: '123456', passwordEnv: 'TOKEN' }, `Basic ${Buffer.from('123456:glc_secret').toString('base64')}`],
    ['bearer', { type: 'header', header: 'Authorization', prefix: 'Bearer ', valueEnv: 'TOKEN' }, 'Bearer glc_secret'],
  ])('POSTs the JSON points with %s authentication', async (_what, auth, authorization) => {
    let body = '';
    agent
      .get(ORIGIN)
      .intercept({ path: '/graphite/metrics', method: 'POST', headers: { authorization, 'content-type': 'application/json' }, body: (b) => ((body = b), true) })
      .reply(200, { Invalid: 0, Published: 1, ValidationErrors: {} });
    await httpSink(auth).send(point);
    expect(JSON.parse(body)).toEqual([{ name: 'hw.cycle.outcome', interval: 60, value: 0, time: 1_700_000_000, mtype: 'gauge', tags: [] }]);
  });

  it('says to check the token and its scope when the API answers 401', async () => {
    agent.get(ORIGIN).intercept({ path: '/graphite/metrics', method: 'POST' }).reply(401, { error: 'authentication error' });
    await expect(httpSink({ type: 'basic', username: '1', passwordEnv: 'TOKEN' }).send(point)).rejects.toThrow(/HTTP 401: check the token \(history\.http\.auth\) and that its access policy has the metrics:write scope/);
  });

  it('counts points the API refused as a failure, quoting its validation errors', async () => {
    agent.get(ORIGIN).intercept({ path: '/graphite/metrics', method: 'POST' }).reply(200, { Invalid: 1, Published: 0, ValidationErrors: { '0': 'bad name' } });
    await expect(httpSink({ type: 'none' }).send(point)).rejects.toThrow(/refused 1 of 1 point\(s\): .*bad name/);
  });

  it('names the environment variable a secret is missing from, before anything is sent', () => {
    expect(() => httpSink({ type: 'basic', username: '1', passwordEnv: 'TOKEN' }, {})).toThrow('history.http.auth.passwordEnv: environment variable TOKEN is not set');
  });
});

describe('the interval sent over HTTP', () => {
  it('is whole seconds of at least 1, whatever run --interval says', async () => {
    const agent = new MockAgent();
    agent.disableNetConnect();
    let body = '';
    agent
      .get('https://g.test')
      .intercept({ path: '/graphite/metrics', method: 'POST', body: (b) => ((body = b), true) })
      .reply(200, { Invalid: 0, Published: 1 });
    const sink = createHistorySink(config({ http: { url: 'https://g.test/graphite/metrics' } }).history, { env: {}, intervalSeconds: 0.2, dispatcher: agent });
    await sink?.send([{ path: 'hw.cycle.outcome', value: 0, timestamp: 1_700_000_000 }]);
    expect(JSON.parse(body)).toEqual([expect.objectContaining({ interval: 1 })]);
    await agent.close();
  });
});
