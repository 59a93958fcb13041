/**
 * The human view of a report (`plan`/`apply` without --json): the sentences are made here, from
 * the report's data. Reports come from the real cycle with in-process fakes of its two adapters
 * and the HAProxy replies recorded in test/fixtures/haproxy.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { formatReport, NAMES_SHOWN } from '../../functions/cli/format.js';
import { parseConfig } from '../../functions/core/config.js';
import { runCycle } from '../../functions/core/cycle.js';
import { RelayError } from '../../functions/core/errors.js';
import { splitReplies } from '../../functions/core/haproxy-protocol.js';
import type { CycleReport } from '../../functions/core/report.js';
import type { RelayRequest, RelayResult, RuntimeRelay } from '../../functions/core/types.js';

const OBSERVE_RR = readFileSync('test/fixtures/haproxy/observe-roundrobin.reply.txt', 'utf8');
const STATE_RR = `${splitReplies(['show stat rr 6 -1', 'show servers state rr'], OBSERVE_RR)[1] ?? ''}\n`;
const NO_SUCH_BACKEND = 'No such proxy.\n\n';

const config = (backends: readonly string[] = ['rr']) =>
  parseConfig({
    graphite: { url: 'http://graphite.test' },
    relay: { type: 'socket', loadBalancers: [{ name: 'lb1', endpoint: '/x/1.sock' }, { name: 'lb2', endpoint: '/x/2.sock' }] },
    backends: backends.map((name) => ({ name, target: `${name}.*`, weighting: { function: 'limited-proportions' } })),
  });

/** Observes with the recorded replies (a backend other than rr does not exist); writes with `write`. */
function relay(write: (lb: string, req: RelayRequest) => RelayResult): RuntimeRelay {
  return {
    loadBalancers: ['lb1', 'lb2'],
    run: async (requests) =>
      requests.map((req) => {
        if (!req.commands[0]?.startsWith('show stat')) return write(req.loadBalancer, req);
        const reply = req.commands.map((c, i) => (i % 2 === 1 ? '' : c === 'show stat rr 6 -1' ? OBSERVE_RR : NO_SUCH_BACKEND + NO_SUCH_BACKEND)).join('');
        return { loadBalancer: req.loadBalancer, ok: true, reply };
      }),
  };
}

const writeReply = (req: RelayRequest, setReply: string): string => req.commands.map((c) => (c.startsWith('show servers state') ? STATE_RR : setReply)).join('');

async function reportWith(write: (lb: string, req: RelayRequest) => RelayResult, backends?: readonly string[]): Promise<CycleReport> {
  const metrics = { render: async () => [{ name: 'rr-a', values: [300] }, { name: 'rr-b', values: [100] }] };
  return runCycle({ config: config(backends), metrics, relay: relay(write), now: () => 0, version: '0.0.0-test' }, { mode: 'apply' });
}

const problemLines = (text: string): string[] => text.split('\n').filter((l) => l.startsWith('  problem: '));

describe('formatReport', () => {
  it('gives the weights one load balancer refused for the same reason one line, naming every server', async () => {
    const report = await reportWith((lb, req) => ({ loadBalancer: lb, ok: true, reply: writeReply(req, lb === 'lb2' ? 'Permission denied\n\n' : '\n') }));
    expect(report.problems.map((p) => [p.code, p.loadBalancer, p.server])).toEqual([
      ['weight-refused', 'lb2', 'rr-a'],
      ['weight-refused', 'lb2', 'rr-b'],
    ]);
    expect(problemLines(formatReport(report))).toEqual(['  problem: lb2: backend rr: 2 weight(s) refused (rr-a, rr-b): changing weights needs a runtime socket at "level admin" (Permission denied)']);
  });

  it('says what a batch that failed as a whole left unconfirmed, and what the read-back found', async () => {
    const report = await reportWith((lb, req) => (lb === 'lb2' ? { loadBalancer: lb, ok: true, reply: '\n' } : { loadBalancer: lb, ok: true, reply: writeReply(req, '\n') }));
    expect(problemLines(formatReport(report))).toEqual([
      '  problem: lb2: backend rr: 2 weight(s) not confirmed (rr-a, rr-b): HAProxy replied with 1 block(s) for 3 command(s): nothing for command 2 (set server rr/rr-a weight 85); the batch may have been partly applied; read back: rr-a=1, rr-b=5',
    ]);
  });

  it('names a load balancer that could not be reached once, with its cause', async () => {
    const down: RuntimeRelay = {
      loadBalancers: ['lb1', 'lb2'],
      run: async (requests) => requests.map((r) => ({ loadBalancer: r.loadBalancer, ok: false, error: new RelayError(`${r.loadBalancer} (/x): cannot connect: ENOENT`, { loadBalancer: r.loadBalancer }) })),
    };
    const metrics = { render: async () => [] };
    const report = await runCycle({ config: config(['rr', 'other']), metrics, relay: down, now: () => 0, version: '0.0.0-test' }, { mode: 'apply' });
    expect(problemLines(formatReport(report))).toEqual([
      '  problem: lb1: cannot read the load balancer: lb1 (/x): cannot connect: ENOENT',
      '  problem: lb2: cannot read the load balancer: lb2 (/x): cannot connect: ENOENT',
    ]);
  });

  it('shares one table between load balancers that decided the same, even when their messages name each of them', async () => {
    const report = await reportWith((lb, req) => ({ loadBalancer: lb, ok: true, reply: writeReply(req, '\n') }), ['rr', 'be_missing']);
    const text = formatReport(report);
    expect(text).toContain('  on lb1, lb2 (roundrobin): 2 weight(s) written each');
    expect(text).toContain('  on lb1, lb2: SKIPPED (backend-not-found) (see the problems below)');
    expect(problemLines(text)).toEqual([
      '  problem: lb1: backend be_missing: the load balancer has no such backend: HAProxy has no backend be_missing on load balancer lb1',
      '  problem: lb2: backend be_missing: the load balancer has no such backend: HAProxy has no backend be_missing on load balancer lb2',
    ]);
    expect(text).toMatch(/^outcome: partial \(4 weight\(s\) written; 0 ms\)$/m);
  });

  it('shows for each server its sessions, the target and the rule that decided its weight', async () => {
    const text = formatReport(await reportWith((lb, req) => ({ loadBalancer: lb, ok: true, reply: writeReply(req, '\n') })));
    const lines = text.split('\n');
    expect(lines.find((l) => l.includes('server') && l.includes('sessions'))).toMatch(/server +load +load now +sessions +weight +target +new +rule +action/);
    // limited-proportions decided both: 300 → 85, 100 → 256.
    expect(lines.find((l) => l.trim().startsWith('rr-a'))).toMatch(/rr-a +300 +- +0 +1 +85\.0 +85 +function +set-weight/);
  });

  it.each([
    [NAMES_SHOWN, 'ghost-0, ghost-1, ghost-2'],
    [NAMES_SHOWN + 1, `ghost-${NAMES_SHOWN - 1} and 1 more (${NAMES_SHOWN + 1} in all; --json lists every one)`],
    [150_000, `ghost-${NAMES_SHOWN - 1} and ${150_000 - NAMES_SHOWN} more (150000 in all; --json lists every one)`],
  ])('names at most the first few of %i servers no load balancer has, and counts them all', async (count, expected) => {
    const ghosts = Array.from({ length: count }, (_, i) => ({ name: `ghost-${i}`, values: [1] }));
    const metrics = { render: async () => [{ name: 'rr-a', values: [300] }, { name: 'rr-b', values: [100] }, ...ghosts] };
    const report = await runCycle({ config: config(), metrics, relay: relay(() => ({ loadBalancer: 'lb1', ok: false, error: new RelayError('not asked') })), now: () => 0, version: '0.0.0-test' }, { mode: 'plan' });
    expect(report.backends[0]?.graphite.unknownServers).toHaveLength(count);
    const line = formatReport(report)
      .split('\n')
      .find((l) => l.startsWith('  series for servers no load balancer has: '));
    expect(line).toContain(expected);
    expect(line?.split(', ')).toHaveLength(Math.min(count, NAMES_SHOWN));
  });
});

describe('the changes-only view and the summary line', () => {
  // The recorded `ingest` backend: servers UP, DOWN, in MAINT (by hand and by tracking), DRAIN, at weight 0, and one without a series.
  const OBSERVE_INGEST = readFileSync('test/fixtures/haproxy/observe-ingest.reply.txt', 'utf8');
  const ingestReport = (mode: 'plan' | 'apply') =>
    runCycle(
      {
        config: parseConfig({
          graphite: { url: 'http://graphite.test' },
          relay: { type: 'socket', loadBalancers: [{ name: 'lb1', endpoint: '/x/1.sock' }] },
          backends: [{ name: 'ingest', target: 'ingest.*', weighting: { function: 'feedback' } }],
        }),
        metrics: { render: async () => ['ing-a', 'ing-b', 'ing-c', 'ing-x', 'ing-m'].map((name) => ({ name, values: [name === 'ing-a' ? 500 : 100] })) },
        relay: {
          loadBalancers: ['lb1'],
          run: async (requests) =>
            requests.map((req) => ({
              loadBalancer: req.loadBalancer,
              ok: true,
              // Writes: the state read that leads the batch, then an empty reply per weight.
              reply: req.commands[0]?.startsWith('show stat') === true ? OBSERVE_INGEST : req.commands.map((c) => (c.startsWith('show servers state') ? `${splitReplies(['show stat ingest 6 -1', 'show servers state ingest'], OBSERVE_INGEST)[1] ?? ''}\n` : '\n')).join(''),
            })),
        },
        now: () => 0,
        version: '0.0.0-test',
      },
      { mode },
    );
  const rows = (text: string): string[] => text.split('\n').filter((l) => /^ {4}\S/.test(l)).map((l) => l.trim().split(/\s+/)[0] ?? '');

  it('lists every server in the full view', async () => {
    expect(rows(formatReport(await ingestReport('plan')))).toEqual(['server', 'ing-a', 'ing-b', 'ing-m', 'ing-t', 'ing-d', 'ing-z', 'ing-x', 'ing-c', 'node.eu-1:7000']);
  });

  it('lists only the weights that change, not the servers an operator took out', async () => {
    expect(rows(formatReport(await ingestReport('plan'), { changesOnly: true }))).toEqual(['server', 'ing-a', 'ing-b', 'ing-x', 'ing-c', 'node.eu-1:7000']);
  });

  it('keeps a server left alone for a reason nobody chose (no data, a name it cannot address), counted by its reason', async () => {
    const report = structuredClone(await ingestReport('plan'));
    const actions = report.backends[0]?.loadBalancers[0]?.plan.actions ?? [];
    for (const a of actions) {
      if (a.server === 'ing-b') Object.assign(a, { kind: 'skip', weight: null, reason: 'no-data', detail: 'no Graphite series for this server: keeps its weight' });
      if (a.server === 'ing-c') Object.assign(a, { kind: 'skip', weight: null, reason: 'unaddressable', detail: 'its name is 2000 characters long' });
    }
    const text = formatReport(report, { changesOnly: true });
    expect(rows(text)).toEqual(['server', 'ing-a', 'ing-b', 'ing-x', 'ing-c', 'node.eu-1:7000']);
    expect(text).toContain('3 to change, 0 unchanged, 6 skipped (no-data 1, maint 2, drain 1, weight-zero 1, unaddressable 1)');
  });

  it('sums each backend up in one line: servers, changes, skips by reason, imbalance', async () => {
    const line = (text: string): string | undefined => text.split('\n').find((l) => l.startsWith('  summary: '));
    expect(line(formatReport(await ingestReport('plan'), { changesOnly: true }))).toBe(
      '  summary: 9 server(s); 5 to change, 0 unchanged, 4 skipped (maint 2, drain 1, weight-zero 1); imbalance 2.14 (max/mean load)',
    );
    expect(line(formatReport(await ingestReport('apply')))).toBe('  summary: 9 server(s); 5 changed, 0 unchanged, 4 skipped (maint 2, drain 1, weight-zero 1); imbalance 2.14 (max/mean load)');
  });

  it('says where a backend was skipped as a whole, and lists none of its servers in the changes-only view', async () => {
    const report = await reportWith((lb, req) => ({ loadBalancer: lb, ok: true, reply: writeReply(req, '\n') }), ['rr', 'be_missing']);
    const text = formatReport(report, { changesOnly: true });
    expect(text).toContain('backend be_missing\n  summary: 0 server(s); backend skipped on lb1, lb2 (backend-not-found); imbalance 1.50 (max/mean load)\n  on lb1, lb2: SKIPPED (backend-not-found) (see the problems below)\n\n');
    expect(text).toContain('backend rr\n  summary: 2 server(s); 4 changed, 0 unchanged, 0 skipped over 2 load balancers; imbalance 1.50 (max/mean load)\n');
  });
});
