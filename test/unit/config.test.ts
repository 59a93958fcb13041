import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { parseConfig, parseConfigText, parseEndpoint, repeatedJsonKey } from '../../functions/core/config.js';
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

  it('reports YAML syntax errors as config errors', async () => {
    await expect(parseConfigText('graphite: [', 'x.yaml')).rejects.toThrow(ConfigError);
  });

  it('accepts the example configuration shipped in infra/', async () => {
    const config = await parseConfigText(readFileSync('infra/example-config.yaml', 'utf8'), 'infra/example-config.yaml');
    expect(config.backends.length).toBeGreaterThan(0);
  });
});

describe('parseConfigText: JSON through JSON.parse, YAML through the YAML parser', () => {
  const json = JSON.stringify(valid, null, 2);

  it('reads a JSON document to the same configuration as its YAML form', async () => {
    expect(await parseConfigText(json, 'c.json')).toEqual(await parseConfigText(stringify(valid), 'c.yaml'));
  });

  it('reads a YAML flow mapping, which starts with { as JSON does', async () => {
    const flow = `{graphite: {url: "http://g:8080"}, relay: {type: socket, loadBalancers: [{name: lb1, endpoint: /tmp/a.sock}]}, backends: [{name: be, target: t, weighting: {function: feedback}}]}`;
    expect((await parseConfigText(flow, 'c.yaml')).backends[0]?.name).toBe('be');
  });

  it.each([
    ['at the top', '{"graphite": {"url": "http://a:1"}, "graphite": {"url": "http://b:2"}}', 'graphite: the key "graphite" appears twice in one object'],
    ['in a list item', '{"backends": [{"name": "a"}, {"name": "b", "target": "t", "name": "c"}]}', 'backends.1.name: the key "name" appears twice in one object'],
    ['written with an escape', '{"relay": {"type": "socket", "typ\\u0065": "ssm"}}', 'relay.type: the key "type" appears twice in one object'],
  ])('refuses a JSON key given twice %s, naming its path, as YAML does', async (_where, text, message) => {
    await expect(parseConfigText(text, 'c.json')).rejects.toThrow(`Cannot parse c.json as JSON: ${message}`);
  });

  it.each([
    ['keys that repeat in different objects', '{"a": {"x": 1}, "b": {"x": 2}}'],
    ['a key inside a string value', '{"a": "{\\"a\\": 1}", "b": "\\"a\\""}'],
    ['the same string as key and value', '{"a": "a", "b": ["a", "a"]}'],
  ])('finds no repeated key in %s', (_what, text) => {
    expect(repeatedJsonKey(text)).toBeNull();
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
