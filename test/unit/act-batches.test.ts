/**
 * Writes cut into batches (a relay with a size limit, as one SSM command is) and the time budget,
 * with an in-process fake relay; the recorded HAProxy replies of test/fixtures/haproxy answer it.
 * The same paths on the real parts: test/integration/aws-time-budget.test.ts.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../functions/core/config.js';
import { runCycle } from '../../functions/core/cycle.js';
import { RelayError } from '../../functions/core/errors.js';
import { splitReplies } from '../../functions/core/haproxy-protocol.js';
import type { MetricSource, RelayRequest, RelayResult, RelayRunOptions, RuntimeRelay } from '../../functions/core/types.js';
import { checkedReport, problemsOf } from '../harness/report.js';

const OBSERVE_RR = readFileSync('test/fixtures/haproxy/observe-roundrobin.reply.txt', 'utf8');
const STATE_RR = `${splitReplies(['show stat rr 6 -1', 'show servers state rr'], OBSERVE_RR)[1] ?? ''}\n`;

/** The state block with one server's srv_admin_state set to `bits` (1: forced maintenance). */
function stateWith(server: string, bits: number): string {
  const lines = STATE_RR.split('\n');
  const header = (lines[1] ?? '').slice(2).split(' ');
  const column = header.indexOf('srv_admin_state');
  return lines.map((line) => (line.split(' ')[3] === server ? line.split(' ').map((f, i) => (i === column ? String(bits) : f)).join(' ') : line)).join('\n');
}

const config = parseConfig({
  graphite: { url: 'http://graphite.test' },
  relay: { type: 'socket', loadBalancers: [{ name: 'lb1', endpoint: '/x/1.sock' }, { name: 'lb2', endpoint: '/x/2.sock' }] },
  backends: [{ name: 'rr', target: 'rr.*', weighting: { function: 'limited-proportions' } }],
});
const metrics: MetricSource = { render: async () => [{ name: 'rr-a', values: [300] }, { name: 'rr-b', values: [100] }] };
const clock = (): (() => number) => {
  let t = 1_700_000_000_000;
  return () => (t += 5);
};

type Answer = (req: RelayRequest, index: number) => RelayResult;

/** A relay that carries at most `maxBatchChars` per request and answers every write with `answer`. */
function limitedRelay(maxBatchChars: number, answer: Answer): RuntimeRelay & { writes: RelayRequest[]; reads: RelayRequest[]; budgets: RelayRunOptions[] } {
  const writes: RelayRequest[] = [];
  const reads: RelayRequest[] = [];
  const budgets: RelayRunOptions[] = [];
  return {
    loadBalancers: ['lb1', 'lb2'],
    maxBatchChars,
    writes,
    reads,
    budgets,
    run: async (requests, options = {}) => {
      budgets.push(options);
      return requests.map((req) => {
        if (req.commands[0]?.startsWith('show stat')) {
          reads.push(req);
          return { loadBalancer: req.loadBalancer, ok: true, reply: OBSERVE_RR };
        }
        writes.push(req);
        if (req.commands.every((c) => c.startsWith('set server'))) return { loadBalancer: req.loadBalancer, ok: true, reply: '\n'.repeat(req.commands.length) };
        return answer(req, writes.length - 1);
      });
    },
  };
}

const written = (req: RelayRequest, state = STATE_RR): RelayResult => ({ loadBalancer: req.loadBalancer, ok: true, reply: req.commands.map((c) => (c.startsWith('show servers state') ? state : '\n')).join('') });

describe('writes cut to what the relay carries', () => {
  it('sends each load balancer its writes in several batches, each led by its own operator-state read', async () => {
    const relay = limitedRelay(60, (req) => written(req));
    const report = checkedReport(await runCycle({ config, metrics, relay, now: clock(), version: 't' }, { mode: 'apply' }));

    expect(report.outcome).toBe('ok');
    expect(report.serversChanged).toBe(4);
    expect(relay.writes.map((w) => [w.loadBalancer, w.commands])).toEqual([
      ['lb1', ['show servers state rr', 'set server rr/rr-a weight 85']],
      ['lb1', ['show servers state rr', 'set server rr/rr-b weight 256']],
      ['lb2', ['show servers state rr', 'set server rr/rr-a weight 85']],
      ['lb2', ['show servers state rr', 'set server rr/rr-b weight 256']],
    ]);
    for (const w of relay.writes) expect(w.commands.join('; ').length).toBeLessThanOrEqual(60);
  });

  it('catches a server an operator took out in the state read of the batch that writes it, and puts its weight back', async () => {
    // The second batch for lb1 finds rr-b in maintenance at the instant of its write.
    const relay = limitedRelay(60, (req, i) => written(req, i === 1 ? stateWith('rr-b', 1) : STATE_RR));
    const report = checkedReport(await runCycle({ config, metrics, relay, now: clock(), version: 't' }, { mode: 'apply' }));

    expect(problemsOf(report)).toEqual([['operator-conflict-restored', 'lb1', 'rr', 'rr-b']]);
    const putBack = relay.writes.filter((w) => w.commands.every((c) => c.startsWith('set server')));
    expect(putBack.map((w) => [w.loadBalancer, w.commands])).toEqual([['lb1', ['set server rr/rr-b weight 5']]]);
    expect(report.serversChanged).toBe(3);
  });
});

describe('writes within the time budget', () => {
  const notSent = (req: RelayRequest): RelayResult => ({
    loadBalancer: req.loadBalancer,
    ok: false,
    error: new RelayError(`${req.loadBalancer}: not sent: 2000 ms of the cycle's time budget left and a command takes about 3000 ms`, { loadBalancer: req.loadBalancer }, { notStarted: true }),
  });

  it('reports the batches the relay did not send as not sent, keeps what was written, and reads nothing back', async () => {
    const relay = limitedRelay(60, (req, i) => (i === 0 ? written(req) : notSent(req)));
    const controller = new AbortController();
    const budget = { signal: controller.signal, deadline: 1_700_000_009_000 };
    const report = checkedReport(await runCycle({ config, metrics, relay, now: clock(), version: 't' }, { mode: 'apply', budget }));

    expect(report.outcome).toBe('partial');
    expect(report.serversChanged).toBe(1);
    expect(relay.budgets.every((b) => b === budget)).toBe(true);
    const [lb1, lb2] = report.backends[0]?.loadBalancers ?? [];
    expect(lb1?.apply).toEqual({
      status: 'failed',
      changed: 1,
      failed: [{ server: 'rr-b', weight: 256, code: 'not-sent', kind: null, error: "lb1: not sent: 2000 ms of the cycle's time budget left and a command takes about 3000 ms", heldWeight: null }],
      error: "not sent: 2000 ms of the cycle's time budget left and a command takes about 3000 ms",
      readBack: false,
    });
    expect(lb2?.apply).toMatchObject({ status: 'failed', changed: 0, readBack: false });
    expect(lb2?.apply.failed.map((f) => [f.server, f.code])).toEqual([
      ['rr-a', 'not-sent'],
      ['rr-b', 'not-sent'],
    ]);
    expect(problemsOf(report)).toEqual([
      ['write-not-sent', 'lb1', 'rr', null],
      ['write-not-sent', 'lb2', 'rr', null],
    ]);
    expect(report.problems[1]?.message).toBe("2 weight(s) not sent: 2000 ms of the cycle's time budget left and a command takes about 3000 ms; HAProxy keeps the weights it had");
    // Only the observation was read: nothing that was not sent is read back.
    expect(relay.reads).toHaveLength(2);
    expect(report.failedLoadBalancers).toEqual(['lb1', 'lb2']);
  });
});
