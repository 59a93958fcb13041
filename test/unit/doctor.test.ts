/**
 * The doctor's verdicts, from the replies HAProxy 2.6.12 really printed (test/fixtures/haproxy)
 * and in-process stand-ins for its two adapters: how each failure of a runtime socket, of Graphite
 * and of a backend is named, and the human view. The real parts are in
 * test/integration/doctor.test.ts.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { formatDoctorReport } from '../../functions/cli/doctor-format.js';
import { parseConfig, type Config } from '../../functions/core/config.js';
import { ok, runDoctor, type DoctorCheck, type DoctorReport } from '../../functions/core/doctor.js';
import { GraphiteError, RelayError } from '../../functions/core/errors.js';
import type { MetricSource, RelayRequest, RelayResult, RuntimeRelay, Series } from '../../functions/core/types.js';
import { checkedDoctorReport, checksOf } from '../harness/report.js';

const fixture = (name: string): string => readFileSync(new URL(`../fixtures/haproxy/${name}.reply.txt`, import.meta.url), 'utf8');
/** The recorded observation of each backend: `show stat` and `show servers state`, two blocks. */
const OBSERVED: Readonly<Record<string, string>> = {
  rr: fixture('observe-roundrobin'),
  static: fixture('observe-static'),
  'src-map': fixture('observe-source-map-based'),
};
const NO_SUCH = 'No such proxy.\n\nCan\'t find backend.\n\n';

function config(backends: readonly string[] = ['rr'], extra: Record<string, unknown> = {}, endpoints: readonly string[] = ['/run/lb1.sock', '/run/lb2.sock']): Config {
  return parseConfig({
    graphite: { url: 'http://graphite.test', ...extra },
    relay: { type: 'socket', loadBalancers: endpoints.map((endpoint, i) => ({ name: `lb${i + 1}`, endpoint })) },
    backends: backends.map((name) => ({ name, target: `${name}.*`, weighting: { function: 'feedback' } })),
  });
}

type Answer = { level: string } | { error: Error };

/** A relay answering the doctor's batch as HAProxy did, with the level (or failure) each load balancer is given. */
function relay(answers: Readonly<Record<string, Answer>>): RuntimeRelay & { requests: RelayRequest[] } {
  const requests: RelayRequest[] = [];
  return {
    requests,
    loadBalancers: Object.keys(answers),
    run: async (batch) =>
      batch.map((req): RelayResult => {
        requests.push(req);
        const answer = answers[req.loadBalancer];
        if (answer === undefined || 'error' in answer) return { loadBalancer: req.loadBalancer, ok: false, error: answer?.error ?? new Error('no such load balancer') };
        const [levelCommand, ...observe] = req.commands;
        expect(levelCommand).toBe('show cli level');
        const backends = observe.filter((c) => c.startsWith('show stat ')).map((c) => c.split(' ')[2] ?? '');
        return { loadBalancer: req.loadBalancer, ok: true, reply: `${answer.level}\n\n${backends.map((b) => OBSERVED[b] ?? NO_SUCH).join('')}` };
      }),
  };
}

const series = (names: Readonly<Record<string, number>>): Series[] => Object.entries(names).map(([name, v]) => ({ name, values: [v, v] }));
const graphite = (byTarget: Readonly<Record<string, Series[] | Error>>): MetricSource => ({
  render: async (target) => {
    const answer = byTarget[target] ?? [];
    if (answer instanceof Error) throw answer;
    return answer;
  },
});
const RR_SERIES = { 'rr.*': series({ 'rr-a': 300, 'rr-b': 100 }) };

async function doctorOf(deps: { config?: Config; relay?: RuntimeRelay | { error: unknown }; metrics?: MetricSource | { error: unknown }; platformChecks?: () => Promise<readonly DoctorCheck[]> }): Promise<DoctorReport> {
  const report = await runDoctor({
    config: deps.config ?? config(),
    relay: deps.relay ?? relay({ lb1: { level: 'admin' }, lb2: { level: 'admin' } }),
    metrics: deps.metrics ?? graphite(RR_SERIES),
    now: () => 1_700_000_000_000,
    version: '0.0.0-test',
    ...(deps.platformChecks === undefined ? {} : { platformChecks: deps.platformChecks }),
  });
  return checkedDoctorReport(report);
}

const failures = (report: DoctorReport) => checksOf(report).filter(([, status]) => status !== 'ok');
const errno = (code: string, message: string): Error => new RelayError(`lb1: cannot connect: ${code}`, { loadBalancer: 'lb1' }, { cause: Object.assign(new Error(message), { code }) });

describe('runDoctor', () => {
  it('asks each load balancer for its level and every backend in one batch, and finds all good', async () => {
    const fake = relay({ lb1: { level: 'admin' }, lb2: { level: 'admin' } });
    const report = await doctorOf({ relay: fake });
    expect(report).toMatchObject({ outcome: 'ok', counts: { ok: 13, warning: 0, failed: 0, skipped: 0 } });
    expect(fake.requests.map((r) => r.commands)).toEqual([
      ['show cli level', 'show stat rr 6 -1', 'show servers state rr'],
      ['show cli level', 'show stat rr 6 -1', 'show servers state rr'],
    ]);
  });

  it.each([
    ['a missing socket', errno('ENOENT', 'no such file'), '/run/lb1.sock', 'socket-missing', 'stats socket /run/lb1.sock level admin'],
    ['a socket nothing listens on', errno('ECONNREFUSED', 'refused'), '/run/lb1.sock', 'socket-refused', 'HAProxy is not running'],
    ['a TCP endpoint nothing listens on', errno('ECONNREFUSED', 'refused'), '10.0.0.1:9999', 'socket-refused', 'stats socket ipv4@10.0.0.1:9999 level admin'],
    ['a socket this user may not open', errno('EACCES', 'permission denied'), '/run/lb1.sock', 'socket-permission', 'mode 660 group'],
    ['a runtime API that does not answer in time', new RelayError('lb1 (/run/lb1.sock): no complete reply within 5000 ms (received 0 bytes)', { loadBalancer: 'lb1' }), '/run/lb1.sock', 'runtime-unreachable', 'readTimeoutMs'],
  ])('names %s, and skips what needs it', async (_what, error, endpoint, code, fix) => {
    const report = await doctorOf({ config: config(['rr'], {}, [endpoint, '/run/lb2.sock']), relay: relay({ lb1: { error }, lb2: { level: 'admin' } }) });
    expect(failures(report)).toEqual([
      ['load-balancer-reachable', 'failed', code, 'lb1', null],
      ['admin-level', 'skipped', null, 'lb1', null],
      ['backend-present', 'skipped', null, 'lb1', 'rr'],
      ['backend-algorithm', 'skipped', null, 'lb1', 'rr'],
      ['servers', 'skipped', null, 'lb1', 'rr'],
    ]);
    expect(report.checks.find((c) => c.check === 'load-balancer-reachable' && c.status === 'failed')?.fix).toContain(fix);
  });

  it.each([
    ['operator', 'level-not-admin', 'the session is at level operator'],
    ['user', 'level-not-admin', 'the session is at level user'],
    ['Unknown command, but maybe one of the following ones is a better match:\n  show cli sockets', 'level-unknown', 'HAProxy older than 2.0?'],
  ])('judges a session that answers %j to show cli level', async (answer, code, message) => {
    const report = await doctorOf({ relay: relay({ lb1: { level: answer }, lb2: { level: 'admin' } }) });
    expect(failures(report)).toEqual([['admin-level', 'failed', code, 'lb1', null]]);
    expect(report.checks.find((c) => c.status === 'failed')?.message).toContain(message);
  });

  it('names a static algorithm as failed and map-or-consistent hashing as a warning, per load balancer', async () => {
    const report = await doctorOf({
      config: config(['static', 'src-map']),
      metrics: graphite({ 'static.*': series({ 'st-a': 1, 'st-b': 2 }), 'src-map.*': series({ 'sm-a': 1, 'sm-b': 2 }) }),
    });
    expect(failures(report)).toEqual([
      ['backend-algorithm', 'failed', 'static-algorithm', 'lb1', 'static'],
      ['backend-algorithm', 'failed', 'static-algorithm', 'lb2', 'static'],
      ['backend-algorithm', 'warning', 'hash-type-unverified', 'lb1', 'src-map'],
      ['backend-algorithm', 'warning', 'hash-type-unverified', 'lb2', 'src-map'],
    ]);
  });

  it('names a backend a load balancer does not have', async () => {
    const report = await doctorOf({ config: config(['rr', 'be_gone']) });
    expect(failures(report).filter(([, status]) => status === 'failed')).toEqual([
      ['target-coverage', 'failed', 'target-no-series', null, 'be_gone'],
      ['backend-present', 'failed', 'backend-not-found', 'lb1', 'be_gone'],
      ['backend-present', 'failed', 'backend-not-found', 'lb2', 'be_gone'],
    ]);
  });

  it('warns about series the target returns beyond the servers, when every server has data', async () => {
    const report = await doctorOf({ metrics: graphite({ 'rr.*': series({ 'rr-a': 3, 'rr-b': 1, 'rr-z': 2, 'bad name!': 1 }) }) });
    expect(failures(report)).toEqual([['target-coverage', 'warning', 'series-unmatched', null, 'rr']]);
    expect(report.checks.find((c) => c.check === 'target-coverage')?.coverage).toEqual({
      servers: 2,
      withData: 2,
      withoutData: [],
      series: 4,
      unmappedSeries: ['bad name!'],
      unknownServers: ['rr-z'],
    });
  });

  it('tells Graphite down from one target Graphite refused', async () => {
    const down = await doctorOf({ metrics: graphite({ 'rr.*': new GraphiteError('Graphite at http://graphite.test/ failed after 3 attempt(s): connect ECONNREFUSED', {}, { kind: 'unreachable' }) }) });
    expect(failures(down)).toEqual([
      ['graphite-reachable', 'failed', 'graphite-unreachable', null, null],
      ['graphite-authenticated', 'skipped', null, null, null],
      ['target-coverage', 'skipped', null, null, 'rr'],
    ]);
    const refused = await doctorOf({
      config: config(['rr', 'static']),
      metrics: graphite({ ...RR_SERIES, 'static.*': new GraphiteError('Graphite at http://graphite.test/ answered HTTP 400', {}, { kind: 'http-status' }) }),
    });
    expect(failures(refused).filter(([check]) => check !== 'backend-algorithm')).toEqual([['target-coverage', 'failed', 'graphite-http-status', null, 'static']]);
  });

  it('says to configure credentials when Graphite asks for some and none are configured', async () => {
    const report = await doctorOf({ metrics: graphite({ 'rr.*': new GraphiteError('Graphite at http://graphite.test/ answered HTTP 401', {}, { kind: 'auth' }) }) });
    const check = report.checks.find((c) => c.check === 'graphite-authenticated');
    expect(check).toMatchObject({ status: 'failed', code: 'graphite-auth' });
    expect(check?.fix).toContain('set graphite.auth (url-key, basic or header)');
  });

  it('reports a relay that could not be built as one failed check, and still checks Graphite', async () => {
    const report = await doctorOf({ relay: { error: new RelayError('No online Linux managed instance carries the tag haproxy-weighter=prod') } });
    expect(failures(report)).toEqual([
      ['load-balancer-reachable', 'failed', 'relay-failed', null, null],
      ['target-coverage', 'skipped', null, null, 'rr'],
    ]);
  });

  it('puts the platform checks first and counts them', async () => {
    const report = await doctorOf({ platformChecks: async () => [ok('ssm-document', {}, 'the stack document')] });
    expect(report.checks[0]).toMatchObject({ check: 'ssm-document', status: 'ok' });
    expect(report.counts.ok).toBe(14);
  });
});

describe('formatDoctorReport', () => {
  it('shows one line per check, load balancers that agree on one line, and the fix under what failed', async () => {
    const report = await doctorOf({ relay: relay({ lb1: { level: 'operator' }, lb2: { level: 'admin' } }) });
    const text = formatDoctorReport(report);
    expect(text.split('\n')).toEqual(
      expect.arrayContaining([
        'doctor: 1 failed, 0 warning(s), 12 ok (haproxy-weighter 0.0.0-test, 0 ms)',
        '  ok       lb1: runtime API reachable: answered on /run/lb1.sock',
        '  FAILED   lb1: level admin: the session is at level operator: HAProxy refuses every weight change on it (Permission denied)',
        '           fix: write "stats socket /run/lb1.sock level admin" in the global section of haproxy.cfg and reload HAProxy (a stats socket without "level" is at operator; only admin may set weights)',
        '  ok       lb2: level admin: the session is at level admin: HAProxy takes weight changes on it',
        'Backend rr',
        '  ok       lb1, lb2: algorithm: balance roundrobin takes runtime weights',
        'outcome: failed (exit 1)',
      ]),
    );
  });
});
