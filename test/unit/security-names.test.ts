/**
 * Injection attempts through every way a name enters the weighter: the configuration (backend,
 * load balancer and server-map template), the series names Graphite returns, the backends asked
 * for on the command line (`--backend`) and in a manual Lambda payload. Each is refused or set
 * aside before anything is built for the runtime API, and the refusal is one line that names
 * the key. The integration twin (test/integration/security-injection.test.ts) proves the same
 * on the wire, byte for byte.
 */
import { describe, expect, it } from 'vitest';
import { parseInvocation } from '../../functions/aws/payload.js';
import { parseConfig } from '../../functions/core/config.js';
import { SAFE_NAME } from '../../functions/core/runtime-grammar.js';
import { runCycle } from '../../functions/core/cycle.js';
import { ConfigError } from '../../functions/core/errors.js';
import { measure, seriesToServer } from '../../functions/core/measure.js';
import type { RelayRequest, RuntimeRelay } from '../../functions/core/types.js';
import { HOSTILE_NAMES } from '../harness/faults.js';

const VALID = {
  graphite: { url: 'http://127.0.0.1:8080' },
  relay: { type: 'socket', loadBalancers: [{ name: 'lb1', endpoint: '/run/haproxy/admin.sock' }] },
  backends: [{ name: 'be_ingest', target: 'aliasByNode(ingest.*.load, 1)', weighting: { function: 'limited-proportions' } }],
};

const labelled = HOSTILE_NAMES.map((name) => [JSON.stringify(name.length > 40 ? `${name.slice(0, 20)}…(${name.length} chars)` : name), name] as const);

function configError(input: unknown): ConfigError {
  try {
    parseConfig(input);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('the configuration was accepted');
}

/** Error text fit for one log line: no control character, bounded in size. */
function expectOneLine(text: string): void {
  // eslint-disable-next-line no-control-regex
  expect(text).not.toMatch(/[\u0000-\u001f\u007f]/);
  expect(text.length).toBeLessThan(400);
}

describe('hostile names in the configuration are refused, naming the key', () => {
  it('none of the hostile names is a safe name (the list tests what it claims to)', () => {
    for (const name of HOSTILE_NAMES) expect(SAFE_NAME.test(name)).toBe(false);
  });

  it.each(labelled)('refuses the backend name %s', (_label, name) => {
    const error = configError({ ...VALID, backends: [{ ...VALID.backends[0], name }] });
    expect(error.issues).toHaveLength(1);
    expect(error.issues[0]).toMatch(/^backends\.0\.name: must be 1-1024 characters of A-Z a-z 0-9 _ \. : - \(got /);
    for (const issue of error.issues) expectOneLine(issue);
  });

  it.each(labelled)('refuses the load balancer name %s', (_label, name) => {
    const error = configError({ ...VALID, relay: { ...VALID.relay, loadBalancers: [{ name, endpoint: '/run/haproxy/admin.sock' }] } });
    expect(error.issues[0]).toMatch(/^relay\.loadBalancers\.0\.name: /);
    for (const issue of error.issues) expectOneLine(issue);
  });

  // A long template of safe characters is legal: what it yields is checked when series arrive.
  it.each(labelled.filter(([, name]) => !/^[A-Za-z0-9_.:$-]{1,128}$/.test(name)))('refuses the server map template %s', (_label, template) => {
    const error = configError({ ...VALID, backends: [{ ...VALID.backends[0], serverMap: { pattern: '^(.*)$', template } }] });
    expect(error.issues[0]).toMatch(/serverMap\.template/);
    for (const issue of error.issues) expectOneLine(issue);
  });
});

describe('hostile Graphite series names never become server names', () => {
  it.each(labelled)('does not map the series %s to a server, with or without a server map', (_label, name) => {
    expect(seriesToServer(name, undefined)).toBeNull();
    expect(seriesToServer(name, { pattern: '^(.*)$', template: '$1' })).toBeNull();
    // (An empty capture is no injection: `srv` + '' is a plain name.)
    if (name !== '') expect(seriesToServer(`host-${name}`, { pattern: '^host-(.*)$', template: 'srv$1' })).toBeNull();
  });

  it('lists every hostile series as unmapped, escaped and bounded, and measures only the real servers', () => {
    const series = [{ name: 's1', values: [100] }, ...HOSTILE_NAMES.map((name) => ({ name, values: [1e9] }))];
    const m = measure(series, { aggregation: 'leading-edge', serverMap: undefined });
    expect([...m.loads.keys()]).toEqual(['s1']);
    expect(m.unmapped).toHaveLength(HOSTILE_NAMES.length);
    for (const shown of m.unmapped) {
      expectOneLine(shown);
      expect(shown.length).toBeLessThanOrEqual(101);
    }
    expect(m.unmapped).toContain('s1\\nshutdown sessions server be_ingest/s1');
  });
});

describe('hostile backend names asked for at run time are refused before any I/O', () => {
  const config = parseConfig(VALID);

  it.each(labelled)('refuses --backend %s without a single relay call', async (_label, name) => {
    const calls: RelayRequest[][] = [];
    const relay: RuntimeRelay = {
      loadBalancers: ['lb1'],
      run: async (requests) => {
        calls.push([...requests]);
        return [];
      },
    };
    const metrics = { render: async () => [] };
    const error = await runCycle({ config, metrics, relay, now: () => 0, version: '0.0.0-test' }, { mode: 'apply', backends: [name] }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ConfigError);
    expect(error instanceof ConfigError ? error.message : '').toContain('Unknown backend(s) ');
    expectOneLine(error instanceof ConfigError ? error.message.slice(0, 300) : '');
    expect(calls).toEqual([]);
  });

  it.each(labelled)('refuses a manual Lambda payload for backend %s, naming the field', (_label, name) => {
    let error: unknown;
    try {
      parseInvocation({ backends: [name] });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const issues = error instanceof ConfigError ? error.issues : [];
    expect(issues[0]).toMatch(/^backends\.0: /);
    for (const issue of issues) expectOneLine(issue);
  });
});
