/**
 * Injection attempts against the real CLI, with a recording proxy in front of a real HAProxy's
 * admin socket: every byte that would reach HAProxy is kept and checked. The rejections run the
 * CLI's `main` in-process (nothing of a process start is under test there); the cycles spawn it.
 * - hostile names in the configuration: exit 2 naming the key, no connection at all;
 * - hostile series names served by Graphite (through the fault proxy, next to the real series):
 *   the real servers are balanced, every byte sent is a whitelisted command on the configured
 *   names only, and the report lists the hostile series as unmapped, escaped;
 * - hostile `--backend` arguments: exit 2, no connection at all.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseCommand } from '../../functions/core/haproxy-protocol.js';
import { HOSTILE_NAMES, commandsOf, rewriteSeries, runCli, runMain, singleReport } from '../harness/faults.js';
import { INGEST_BACKEND as BACKEND, INGEST_SERVERS as SERVERS, startRecordedIngest, type RecordedIngest } from '../harness/recorded-ingest.js';

let rig: RecordedIngest;

beforeAll(async () => {
  rig = await startRecordedIngest('security');
});

afterAll(async () => {
  await rig.close();
});

afterEach(async () => {
  await rig.reset();
});

const label = (name: string): string => JSON.stringify(name.length > 40 ? `${name.slice(0, 20)}…(${name.length} chars)` : name);
const labelled = HOSTILE_NAMES.map((name) => [label(name), name] as const);

const config = (overrides: { backendName?: string; lbName?: string; serverMap?: { pattern: string; template: string } } = {}): string =>
  rig.config({
    ...(overrides.lbName === undefined ? {} : { lbName: overrides.lbName }),
    backend: { name: overrides.backendName ?? BACKEND, ...(overrides.serverMap === undefined ? {} : { serverMap: overrides.serverMap }) },
  });

/** Every batch that reached HAProxy holds only whitelisted commands on configured names. */
function expectOnlyWhitelistedBytes(): void {
  for (const c of rig.socketProxy.connections) {
    // `prompt` (the interactive session), then one line of commands.
    const commands = commandsOf(c.forwarded);
    expect(c.forwarded).toBe(`prompt\n${commands.join('; ')}\n`);
    for (const command of commands) {
      const parsed = parseCommand(command);
      expect('backend' in parsed ? parsed.backend : null).toBe(BACKEND);
      if ('server' in parsed) expect(SERVERS).toContain(parsed.server);
    }
  }
}

describe('hostile names in the configuration', () => {
  it.each(labelled)('refuses the backend name %s with exit 2, naming the key, and connects to nothing', async (_label, name) => {
    const run = await runMain(['apply', '--config', config({ backendName: name })]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('backends.0.name: must be 1-1024 characters');
    expect(rig.socketProxy.connections).toHaveLength(0);
    expect(rig.graphiteProxy.requests).toHaveLength(0);
  });

  it.each(labelled)('refuses the load balancer name %s with exit 2, naming the key, and connects to nothing', async (_label, name) => {
    const run = await runMain(['apply', '--config', config({ lbName: name })]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('relay.loadBalancers.0.name: ');
    expect(rig.socketProxy.connections).toHaveLength(0);
  });
});

describe('hostile series names from Graphite', () => {
  const withHostileSeries = (body: string): string =>
    // The hostile series claim a tiny load: a weighter that believed them would favour them.
    rewriteSeries(body, (series) => [...series, ...HOSTILE_NAMES.map((target) => ({ target, datapoints: [[1, 1_700_000_000]] }))]);

  it.each([
    ['without a server map', undefined],
    ['through a server map that copies the whole name', { pattern: '^(.*)$', template: '$1' }],
  ])('balances the real servers and sends not one byte of a hostile name to HAProxy, %s', async (_what, serverMap) => {
    await rig.graphiteProxy.setFault({ kind: 'rewrite', rewrite: withHostileSeries });
    const run = await runCli(['apply', '--json', '--config', config(serverMap === undefined ? {} : { serverMap })]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const report = singleReport(run.stdout);

    expect(rig.socketProxy.connections.length).toBeGreaterThanOrEqual(2);
    expectOnlyWhitelistedBytes();
    const wire = rig.socketProxy.connections.map((c) => c.request).join('');
    for (const fragment of ['shutdown', 'reboot', '`', '$', '|', '..', 'ѕ1', 's１', '\u200b', '\r', 'OR', 'IFS', 'x'.repeat(1025)]) expect(wire).not.toContain(fragment);

    const graphite = report.backends[0]?.graphite;
    expect(graphite?.ok).toBe(true);
    const unmapped = graphite?.unmapped ?? [];
    expect(unmapped).toHaveLength(HOSTILE_NAMES.length);
    expect(unmapped).toContain('s1;shutdown sessions');
    expect(unmapped).toContain('s1\\nshutdown sessions server be_ingest/s1');
    expect(Object.keys(report.backends[0]?.loads ?? {}).sort()).toEqual(SERVERS);

    const s1 = (await rig.haproxy.getWeight(BACKEND, 's1')).current;
    expect(s1).toBeLessThan((await rig.haproxy.getWeight(BACKEND, 's2')).current);
  });

  it('prints the hostile series names escaped in the human report: no forged line', async () => {
    await rig.graphiteProxy.setFault({ kind: 'rewrite', rewrite: withHostileSeries });
    const run = await runCli(['plan', '--config', config()]);
    expect(run.code).toBe(0);
    const lines = run.stdout.split('\n');
    expect(lines.some((l) => l.startsWith('  series not mapped to a server: '))).toBe(true);
    for (const forged of ['shutdown sessions server be_ingest/s1', 'show info']) expect(lines.some((l) => l.startsWith(forged))).toBe(false);
    expect(run.stdout).not.toContain('\r');
  });
});

describe('hostile --backend arguments', () => {
  // argv cannot carry a NUL byte at all: the operating system ends the string there.
  it.each(labelled.filter(([, name]) => !name.includes('\u0000')))('refuses --backend %s with exit 2 and connects to nothing', async (_label, name) => {
    const run = await runMain(['apply', '--backend', name, '--config', config()]);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain('Unknown backend(s) ');
    expect(run.stderr).toContain(`configured: ${BACKEND}`);
    expect(rig.socketProxy.connections).toHaveLength(0);
    expect(rig.graphiteProxy.requests).toHaveLength(0);
  });
});
