import { describe, expect, it } from 'vitest';
import { parseConfig, parseConfigText, parseEndpoint } from '../../functions/core/config.js';
import { ConfigError } from '../../functions/core/errors.js';
import { readFileSync } from 'node:fs';

const valid = {
  graphite: { url: 'http://127.0.0.1:8080' },
  relay: { type: 'socket', loadBalancers: [{ name: 'lb1', endpoint: '/run/haproxy/admin.sock' }] },
  backends: [{ name: 'be_ingest', target: 'aliasByNode(ingest.*.points, 1)', weighting: { function: 'limited-proportions' } }],
};

function withChange(path: (string | number)[], value: unknown): unknown {
  const copy: unknown = structuredClone(valid);
  let cur = copy as Record<string | number, unknown>;
  for (const key of path.slice(0, -1)) cur = cur[key] as Record<string | number, unknown>;
  const last = path[path.length - 1];
  if (last === undefined) return copy;
  if (value === undefined) delete cur[last];
  else cur[last] = value;
  return copy;
}

function errorOf(input: unknown): string {
  try {
    parseConfig(input);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).message;
  }
  throw new Error('expected a ConfigError');
}

describe('parseConfig', () => {
  it('fills defaults and freezes the result', () => {
    const config = parseConfig(valid);
    expect(config.graphite.timeoutMs).toBe(10_000);
    expect(config.backends[0]?.aggregation).toBe('leading-edge');
    expect(config.backends[0]?.weighting).toEqual({ function: 'limited-proportions', limitingFactor: 4, aggressiveness: 1 });
    expect(Object.isFrozen(config.backends[0])).toBe(true);
  });

  it.each([
    ['a missing graphite url', ['graphite', 'url'], undefined, 'graphite.url'],
    ['a non-http graphite url', ['graphite', 'url'], 'ftp://x', 'graphite.url'],
    ['credentials in the graphite url', ['graphite', 'url'], 'http://u:p@x', 'graphite.url'],
    ['a string timeout', ['graphite', 'timeoutMs'], '5s', 'graphite.timeoutMs'],
    ['an unknown top-level key', ['colour'], 'blue', 'colour'],
    ['a misspelt weighting factor', ['backends', 0, 'weighting', 'agressiveness'], 2, 'agressiveness'],
    ['an unknown weighting function', ['backends', 0, 'weighting', 'function'], 'magic', 'backends.0.weighting.function'],
    ['a zero limiting factor', ['backends', 0, 'weighting', 'limitingFactor'], 0, 'backends.0.weighting.limitingFactor'],
    ['a negative aggressiveness', ['backends', 0, 'weighting', 'aggressiveness'], -1, 'backends.0.weighting.aggressiveness'],
    ['a backend name with a semicolon', ['backends', 0, 'name'], 'be;shutdown', 'backends.0.name'],
    ['a target with a newline', ['backends', 0, 'target'], 'a\nb', 'backends.0.target'],
    ['a quorum above 1', ['backends', 0, 'quorum'], 1.5, 'backends.0.quorum'],
    ['a bad window', ['backends', 0, 'from'], 'yesterday', 'backends.0.from'],
    ['a fractional max change', ['backends', 0, 'maxChangePerCycle'], 2.5, 'backends.0.maxChangePerCycle'],
    ['a relative socket path', ['relay', 'loadBalancers', 0, 'endpoint'], 'admin.sock', 'relay.loadBalancers.0.endpoint'],
    ['a port out of range', ['relay', 'loadBalancers', 0, 'endpoint'], '127.0.0.1:70000', 'relay.loadBalancers.0.endpoint'],
    ['no load balancers', ['relay', 'loadBalancers'], [], 'relay.loadBalancers'],
    ['no backends', ['backends'], [], 'backends'],
    ['an unknown relay type', ['relay', 'type'], 'carrier-pigeon', 'relay.type'],
    ['a secret env name in lower case', ['graphite', 'auth'], { type: 'url-key', keyEnv: 'my key' }, 'graphite.auth.keyEnv'],
  ])('rejects %s and names the key', (_what, path, value, key) => {
    expect(errorOf(withChange(path, value))).toContain(key);
  });

  it('names the offending value', () => {
    expect(errorOf(withChange(['backends', 0, 'name'], 'be;shutdown'))).toContain('"be;shutdown"');
  });

  it('rejects duplicate backend names', () => {
    const b = valid.backends[0];
    expect(errorOf({ ...valid, backends: [b, b] })).toContain('unique');
  });

  it('rejects a server map template with shell characters', () => {
    expect(errorOf(withChange(['backends', 0, 'serverMap'], { pattern: '(.*)', template: '$1;reboot' }))).toContain('serverMap.template');
  });

  it('reports YAML syntax errors as config errors', () => {
    expect(() => parseConfigText('graphite: [', 'x.yaml')).toThrow(ConfigError);
  });

  it('accepts the example configuration shipped in infra/', () => {
    const config = parseConfigText(readFileSync('infra/example-config.yaml', 'utf8'), 'infra/example-config.yaml');
    expect(config.backends.length).toBeGreaterThan(0);
  });
});

describe('parseEndpoint', () => {
  it.each([
    ['/run/haproxy/admin.sock', { kind: 'unix', path: '/run/haproxy/admin.sock' }],
    ['127.0.0.1:9999', { kind: 'tcp', host: '127.0.0.1', port: 9999 }],
    ['[::1]:9999', { kind: 'tcp', host: '::1', port: 9999 }],
    ['lb1.internal:9999', { kind: 'tcp', host: 'lb1.internal', port: 9999 }],
    ['relative.sock', null],
    ['host:0', null],
    ['host', null],
  ])('parses %j', (endpoint, expected) => {
    expect(parseEndpoint(endpoint)).toEqual(expected);
  });
});
