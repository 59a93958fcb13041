/**
 * The cycle's bookkeeping with in-process fakes of its two adapters (the real adapters are tested
 * against real HAProxy and Graphite in test/integration). The observe replies are the ones recorded
 * from the real HAProxy in test/fixtures/haproxy.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../functions/core/config.js';
import { REPORT_SCHEMA_VERSION } from '../../functions/core/report-schema.js';
import { createControlMemory } from '../../functions/core/control-memory.js';
import { createStaticMemory, exitCodeFor, runCycle } from '../../functions/core/cycle.js';
import { GraphiteError, RelayError } from '../../functions/core/errors.js';
import { splitReplies } from '../../functions/core/haproxy-protocol.js';
import { checkedReport, problemsOf } from '../harness/report.js';
import type { MetricSource, RelayRequest, RelayResult, RuntimeRelay } from '../../functions/core/types.js';

const OBSERVE_RR = readFileSync('test/fixtures/haproxy/observe-roundrobin.reply.txt', 'utf8');
/** The recorded `show servers state rr` block: what a write batch reads before its weights. */
const STATE_RR = `${splitReplies(['show stat rr 6 -1', 'show servers state rr'], OBSERVE_RR)[1] ?? ''}\n`;

/** The reply of a write batch: the guard state for each `show servers state`, then `setReply` per weight. */
const writeReply = (req: RelayRequest, setReply = '\n'): string => req.commands.map((c) => (c.startsWith('show servers state') ? STATE_RR : setReply)).join('');

const config = parseConfig({
  graphite: { url: 'http://graphite.test' },
  relay: { type: 'socket', loadBalancers: [{ name: 'lb1', endpoint: '/x/1.sock' }, { name: 'lb2', endpoint: '/x/2.sock' }] },
  backends: [{ name: 'rr', target: 'rr.*', weighting: { function: 'limited-proportions' } }],
});

const metrics = (loads: Record<string, number>): MetricSource => ({
  render: async () => Object.entries(loads).map(([name, v]) => ({ name, values: [v] })),
});

/** A relay whose write replies are chosen per load balancer. */
function fakeRelay(writeReply: (lb: string, req: RelayRequest) => RelayResult): RuntimeRelay & { writes: RelayRequest[] } {
  const writes: RelayRequest[] = [];
  return {
    loadBalancers: ['lb1', 'lb2'],
    writes,
    run: async (requests) =>
      requests.map((req) => {
        if (req.commands[0]?.startsWith('show stat')) return { loadBalancer: req.loadBalancer, ok: true, reply: OBSERVE_RR };
        writes.push(req);
        return writeReply(req.loadBalancer, req);
      }),
  };
}

const success = (lb: string, req: RelayRequest): RelayResult => ({ loadBalancer: lb, ok: true, reply: writeReply(req) });
const clock = (): (() => number) => {
  let t = 1_700_000_000_000;
  return () => (t += 5);
};

describe('runCycle', () => {
  it('plans from the recorded HAProxy state and writes one batch per load balancer', async () => {
    const relay = fakeRelay(success);
    const report = await runCycle({ config, metrics: metrics({ 'rr-a': 300, 'rr-b': 100 }), relay, now: clock(), version: '0.0.0-test' }, { mode: 'apply' });
    expect(report.outcome).toBe('ok');
    expect(relay.writes.map((w) => w.loadBalancer)).toEqual(['lb1', 'lb2']);
    expect(relay.writes[0]?.commands).toEqual(['show servers state rr', 'set server rr/rr-a weight 85', 'set server rr/rr-b weight 256']);
    expect(report.serversChanged).toBe(4);
    expect(report.durationMs).toBe(5);
    expect(exitCodeFor(report)).toBe(0);
  });

  it('writes nothing in plan mode', async () => {
    const relay = fakeRelay(success);
    const report = await runCycle({ config, metrics: metrics({ 'rr-a': 300, 'rr-b': 100 }), relay, now: clock(), version: '0.0.0-test' }, { mode: 'plan' });
    expect(relay.writes).toEqual([]);
    expect(report.loadBalancers.map((l) => l.apply)).toEqual(['not-run', 'not-run']);
  });

  it('says a batch may be partly applied when the reply is cut short, and marks the cycle partial', async () => {
    const relay = fakeRelay((lb, req) => (lb === 'lb2' ? { loadBalancer: lb, ok: true, reply: '\n' } : success(lb, req)));
    const report = await runCycle({ config, metrics: metrics({ 'rr-a': 300, 'rr-b': 100 }), relay, now: clock(), version: '0.0.0-test' }, { mode: 'apply' });
    expect(report.outcome).toBe('partial');
    expect(report.failedLoadBalancers).toEqual(['lb2']);
    expect(problemsOf(report)).toEqual([
      ['batch-unconfirmed', 'lb2', 'rr', 'rr-a'],
      ['batch-unconfirmed', 'lb2', 'rr', 'rr-b'],
    ]);
    expect(report.problems[0]?.cause).toMatchObject({ type: 'haproxy', kind: 'unexpected-reply' });
    // The weights were read back from the load balancer: the report says what it holds now.
    const lb2 = report.backends[0]?.loadBalancers.find((l) => l.loadBalancer === 'lb2')?.apply;
    expect(lb2).toMatchObject({ status: 'failed', changed: 0, readBack: true, error: expect.stringContaining('the batch may have been partly applied') });
    expect(lb2?.failed.map((f) => [f.server, f.code, f.heldWeight])).toEqual([
      ['rr-a', 'batch-unconfirmed', 1],
      ['rr-b', 'batch-unconfirmed', 5],
    ]);
    expect(exitCodeFor(report)).toBe(3);
  });

  it('reports every weight refused by a map-based hashing backend as a static algorithm', async () => {
    const refusal = "Backend is using a static LB algorithm and only accepts weights '0%' and '100%'.\n\n";
    const relay = fakeRelay((lb, req) => ({ loadBalancer: lb, ok: true, reply: writeReply(req, refusal) }));
    const report = await runCycle({ config, metrics: metrics({ 'rr-a': 300, 'rr-b': 100 }), relay, now: clock(), version: '0.0.0-test' }, { mode: 'apply' });
    expect(report.outcome).toBe('failed');
    expect(problemsOf(report)).toEqual([
      ['static-refused', 'lb1', 'rr', null],
      ['static-refused', 'lb2', 'rr', null],
    ]);
    expect(report.problems[0]?.cause).toMatchObject({ type: 'haproxy', kind: 'static-algorithm' });
  });

  it('remembers a backend that refused every weight and skips it in later cycles instead of retrying', async () => {
    const refusal = "Backend is using a static LB algorithm and only accepts weights '0%' and '100%'.\n\n";
    const relay = fakeRelay((lb, req) => ({ loadBalancer: lb, ok: true, reply: refusal.repeat(req.commands.length) }));
    const memory = createStaticMemory(1000);
    const first = await runCycle({ config, metrics: metrics({ 'rr-a': 300, 'rr-b': 100 }), relay, now: clock(), version: '0.0.0-test' }, { mode: 'apply', knownStatic: memory.current(0) });
    expect(first.staticRefusals).toEqual(['rr@lb1', 'rr@lb2']);
    memory.remember(first.staticRefusals, 0);
    const writesBefore = relay.writes.length;
    const second = await runCycle({ config, metrics: metrics({ 'rr-a': 300, 'rr-b': 100 }), relay, now: clock(), version: '0.0.0-test' }, { mode: 'apply', knownStatic: memory.current(500) });
    expect(relay.writes.length).toBe(writesBefore);
    expect(second.backends[0]?.loadBalancers.map((l) => l.plan.reason)).toEqual(['unsupported-algorithm', 'unsupported-algorithm']);
    expect(problemsOf(second)).toEqual([
      ['unsupported-algorithm', 'lb1', 'rr', null],
      ['unsupported-algorithm', 'lb2', 'rr', null],
    ]);
    // After the memory expires the backend is tried again (it may have been switched to consistent hashing).
    expect(memory.current(1000)).toEqual([]);
  });

  it('keeps going when one load balancer cannot be reached', async () => {
    const relay: RuntimeRelay = {
      loadBalancers: ['lb1', 'lb2'],
      run: async (requests) =>
        requests.map((r) =>
          r.loadBalancer === 'lb1'
            ? { loadBalancer: 'lb1', ok: false, error: new RelayError('lb1 (/x/1.sock): cannot connect: ENOENT', { loadBalancer: 'lb1' }) }
            : r.commands[0]?.startsWith('show stat')
              ? { loadBalancer: 'lb2', ok: true, reply: OBSERVE_RR }
              : { loadBalancer: 'lb2', ok: true, reply: writeReply(r) },
        ),
    };
    const report = await runCycle({ config, metrics: metrics({ 'rr-a': 300, 'rr-b': 100 }), relay, now: clock(), version: '0.0.0-test' }, { mode: 'apply' });
    expect(report.outcome).toBe('partial');
    expect(report.loadBalancers).toEqual([
      { name: 'lb1', observe: 'failed', apply: 'not-needed', error: 'lb1 (/x/1.sock): cannot connect: ENOENT' },
      { name: 'lb2', observe: 'ok', apply: 'ok', error: null },
    ]);
    // Reported once for the load balancer, not once per backend.
    expect(problemsOf(report)).toEqual([['observe-failed', 'lb1', null, null]]);
    expect(report.problems[0]?.cause).toEqual({ type: 'relay', kind: null, message: 'lb1 (/x/1.sock): cannot connect: ENOENT' });
  });

  it('names every series for a server no load balancer has and keeps it out of the loads and the imbalance', async () => {
    const ghosts = Object.fromEntries(Array.from({ length: 50_000 }, (_, i) => [`ghost-${i}`, 1]));
    const report = await runCycle({ config, metrics: metrics({ 'rr-a': 300, ...ghosts, 'rr-b': 100 }), relay: fakeRelay(success), now: clock(), version: '0.0.0-test' }, { mode: 'plan' });
    const [backend] = report.backends;
    expect(backend?.loads).toEqual({ 'rr-a': 300, 'rr-b': 100 });
    expect(backend?.imbalance).toBe(1.5);
    const unknown = backend?.graphite.unknownServers ?? [];
    expect(unknown).toHaveLength(50_000);
    expect(unknown[0]).toBe('ghost-0');
    expect(unknown[49_999]).toBe('ghost-49999');
  });

  it("gives Graphite the time budget's signal, so that a render stops when the budget ends", async () => {
    const stop = new AbortController();
    const seen: (AbortSignal | undefined)[] = [];
    const source: MetricSource = {
      render: async (_target, _from, _until, options) => {
        seen.push(options?.signal);
        stop.abort();
        throw new GraphiteError("Graphite at http://graphite.test/render failed after 1 attempt(s): stopped waiting after 5 ms: the cycle's time budget ended", { url: 'http://graphite.test/render' }, { kind: 'unreachable' });
      },
    };
    const report = await runCycle({ config, metrics: source, relay: fakeRelay(success), now: clock(), version: '0.0.0-test' }, { mode: 'plan', budget: { signal: stop.signal } });
    expect(seen).toEqual([stop.signal]);
    expect(problemsOf(report)).toContainEqual(['graphite-unreachable', null, 'rr', null]);
  });

  it('rejects an unknown backend name in the request', async () => {
    await expect(runCycle({ config, metrics: metrics({}), relay: fakeRelay(success), now: clock(), version: '0.0.0-test' }, { mode: 'plan', backends: ['nope'] })).rejects.toThrow(/"nope"/);
  });

  it.each([
    ['unreachable', 'graphite-unreachable'],
    ['http-status', 'graphite-http-status'],
    ['auth', 'graphite-auth'],
    ['bad-reply', 'graphite-bad-reply'],
  ] as const)('skips the backend on every load balancer when Graphite fails (%s), and says so once', async (kind, code) => {
    const failing: MetricSource = {
      render: async () => {
        throw new GraphiteError('Graphite at http://graphite.test/render failed', { url: 'http://graphite.test/render' }, { kind });
      },
    };
    const relay = fakeRelay(success);
    const report = await runCycle({ config, metrics: failing, relay, now: clock(), version: '0.0.0-test' }, { mode: 'apply' });
    expect(relay.writes).toEqual([]);
    expect(report.outcome).toBe('failed');
    expect(report.backends[0]?.loadBalancers.map((l) => l.plan.reason)).toEqual(['graphite-failed', 'graphite-failed']);
    expect(problemsOf(report)).toEqual([[code, null, 'rr', null]]);
    expect(report.problems[0]?.cause).toMatchObject({ type: 'graphite', kind });
  });

  it('writes reports that the shipped JSON Schema accepts, whatever went wrong', async () => {
    const refusal = "Backend is using a static LB algorithm and only accepts weights '0%' and '100%'.\n\n";
    const relays = [
      fakeRelay(success),
      fakeRelay((lb, req) => (lb === 'lb2' ? { loadBalancer: lb, ok: true, reply: '\n' } : success(lb, req))),
      fakeRelay((lb, req) => ({ loadBalancer: lb, ok: true, reply: writeReply(req, refusal) })),
    ];
    for (const relay of relays) {
      for (const mode of ['plan', 'apply'] as const) {
        const report = await runCycle({ config, metrics: metrics({ 'rr-a': 300, 'rr-b': 100, stranger: 5 }), relay, now: clock(), version: '1.2.3' }, { mode });
        expect(checkedReport(report)).toEqual(report);
        expect(report).toMatchObject({ schemaVersion: REPORT_SCHEMA_VERSION, version: '1.2.3' });
      }
    }
  });
});

/** The recorded roundrobin reply with chosen sessions (scur), sessions since start (stot) and statuses per server. */
function observeWith(servers: Record<string, { scur: number; stot: number; status?: string }>): string {
  const [header = '', ...rest] = OBSERVE_RR.split('\n');
  const columns = header.slice(2).split(',');
  const at = (name: string): number => columns.indexOf(name);
  return [
    header,
    ...rest.map((line) => {
      const fields = line.split(',');
      const s = servers[fields[1] ?? ''];
      if (fields[0] !== 'rr' || s === undefined) return line;
      fields[at('scur')] = String(s.scur);
      fields[at('stot')] = String(s.stot);
      if (s.status !== undefined) fields[at('status')] = s.status;
      return fields.join(',');
    }),
  ].join('\n');
}

describe('runCycle: the control loop across cycles', () => {
  const feedbackConfig = parseConfig({
    graphite: { url: 'http://graphite.test' },
    relay: { type: 'socket', loadBalancers: [{ name: 'lb1', endpoint: '/x/1.sock' }] },
    backends: [{ name: 'rr', target: 'rr.*' }],
  });

  /** One load balancer whose observation reply is whatever `reply()` says at the time. */
  function relayOf(reply: () => string): RuntimeRelay {
    return {
      loadBalancers: ['lb1'],
      run: async (requests) => requests.map((req) => ({ loadBalancer: req.loadBalancer, ok: true, reply: req.commands[0]?.startsWith('show stat') ? reply() : writeReply(req) })),
    };
  }

  it('names a reload in the report when the session counters fall between two cycles of run, and not in a one-shot apply', async () => {
    let reply = observeWith({ 'rr-a': { scur: 200, stot: 9000 }, 'rr-b': { scur: 200, stot: 8000 } });
    const relay = relayOf(() => reply);
    const memory = createControlMemory();
    const deps = { config: feedbackConfig, metrics: metrics({ 'rr-a': 300, 'rr-b': 100 }), relay, now: clock(), version: '0.0.0-test' };
    const first = checkedReport(await runCycle(deps, { mode: 'plan', memory }));
    expect(first.backends[0]?.loadBalancers[0]?.plan.reload).toBeNull();
    reply = observeWith({ 'rr-a': { scur: 1, stot: 1 }, 'rr-b': { scur: 0, stot: 0 } });
    const second = checkedReport(await runCycle(deps, { mode: 'plan', memory }));
    expect(second.backends[0]?.loadBalancers[0]?.plan.reload).toContain('fell from 9000 to 1');
    expect(problemsOf(second)).toEqual([['reload-detected', 'lb1', 'rr', null]]);
    expect(second.problems[0]?.severity).toBe('warning');
    expect(second.outcome).toBe('ok');
    const oneShot = checkedReport(await runCycle(deps, { mode: 'plan' }));
    expect(oneShot.backends[0]?.loadBalancers[0]?.plan.reload).toBeNull();
  });

  it('explains each weight: load, sessions, target and the rule that decided it', async () => {
    const relay = relayOf(() => observeWith({ 'rr-a': { scur: 100, stot: 500 }, 'rr-b': { scur: 100, stot: 500 } }));
    const report = checkedReport(await runCycle({ config: feedbackConfig, metrics: metrics({ 'rr-a': 300, 'rr-b': 100 }), relay, now: clock(), version: '0.0.0-test' }, { mode: 'plan' }));
    const actions = report.backends[0]?.loadBalancers[0]?.plan.actions ?? [];
    expect(actions.map((a) => [a.server, a.load, a.sessions, a.rule])).toEqual([
      ['rr-a', 300, 100, 'deficit'],
      ['rr-b', 100, 100, 'deficit'],
    ]);
    expect(actions.every((a) => typeof a.target === 'number')).toBe(true);
  });

  it('says the render window is shorter than the metrics\' delay when every series is empty in it', async () => {
    const relay = relayOf(() => OBSERVE_RR);
    const empty: MetricSource = { render: async () => [{ name: 'rr-a', values: [null, null] }, { name: 'rr-b', values: [null] }] };
    const report = checkedReport(await runCycle({ config: feedbackConfig, metrics: empty, relay, now: clock(), version: '0.0.0-test' }, { mode: 'plan' }));
    const warning = report.problems.find((p) => p.code === 'window-empty');
    expect(warning).toMatchObject({ severity: 'warning', backend: 'rr', loadBalancer: null });
    expect(warning?.message).toContain('from: -15min');
    expect(warning?.message).toContain('shorter than the metrics');
  });

  it.each([
    ['a point only in a series for a server no load balancer has', [{ name: 'rr-a', values: [null] }, { name: 'ghost', values: [5] }]],
    ['a point only in one of two series for the same server', [{ name: 'rr-a', values: [null] }, { name: 'rr-a', values: [5] }]],
  ])('does not call the window empty when it holds %s', async (_what, series) => {
    const relay = relayOf(() => OBSERVE_RR);
    const report = checkedReport(await runCycle({ config: feedbackConfig, metrics: { render: async () => series }, relay, now: clock(), version: '0.0.0-test' }, { mode: 'plan' }));
    expect(report.problems.map((p) => p.code)).not.toContain('window-empty');
  });

  it('leaves a server DOWN on a load balancer out of the backend imbalance', async () => {
    const relay = relayOf(() => observeWith({ 'rr-a': { scur: 10, stot: 10 }, 'rr-b': { scur: 0, stot: 0, status: 'DOWN' } }));
    const report = checkedReport(await runCycle({ config: feedbackConfig, metrics: metrics({ 'rr-a': 300, 'rr-b': 0 }), relay, now: clock(), version: '0.0.0-test' }, { mode: 'plan' }));
    expect(report.backends[0]?.imbalance).toBe(1);
  });
});
