import { MockAgent } from 'undici';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createGraphiteSource, parseRenderReply } from '../../functions/adapters/graphite.js';
import { parseConfig } from '../../functions/core/config.js';
import { ConfigError, GraphiteError } from '../../functions/core/errors.js';

const ORIGIN = 'http://graphite.test';

function graphiteConfig(extra: Record<string, unknown> = {}) {
  return parseConfig({
    graphite: { url: `${ORIGIN}/`, retries: 2, timeoutMs: 500, ...extra },
    relay: { type: 'socket', loadBalancers: [{ name: 'lb1', endpoint: '/tmp/x.sock' }] },
    backends: [{ name: 'be', target: 't', weighting: { function: 'limited-proportions' } }],
  }).graphite;
}

let agent: MockAgent;
const noSleep = async (): Promise<void> => {};

beforeEach(() => {
  agent = new MockAgent();
  agent.disableNetConnect();
});
afterEach(async () => {
  await agent.close();
});

describe('createGraphiteSource', () => {
  it('renders the target as JSON and keeps null points and their timestamps', async () => {
    agent
      .get(ORIGIN)
      .intercept({ path: (p) => p.startsWith('/render?') && p.includes('target=aliasByNode') && p.includes('format=json') })
      .reply(200, [{ target: 's1', datapoints: [[1, 1_700_000_000], [null, 1_700_000_010]] }]);
    const source = createGraphiteSource(graphiteConfig(), { env: {}, dispatcher: agent, sleep: noSleep });
    await expect(source.render('aliasByNode(a.*.b, 1)', '-5min')).resolves.toEqual([{ name: 's1', values: [1, null], timestamps: [1_700_000_000, 1_700_000_010] }]);
  });

  it('retries HTTP 502 and then succeeds', async () => {
    const pool = agent.get(ORIGIN);
    pool.intercept({ path: /render/ }).reply(502, 'bad gateway');
    pool.intercept({ path: /render/ }).reply(200, []);
    const source = createGraphiteSource(graphiteConfig(), { env: {}, dispatcher: agent, sleep: noSleep });
    await expect(source.render('t', '-1min')).resolves.toEqual([]);
  });

  it('gives up after the configured retries on HTTP 429 and names the URL and status', async () => {
    agent.get(ORIGIN).intercept({ path: /render/ }).reply(429, 'slow down').times(3);
    const source = createGraphiteSource(graphiteConfig(), { env: {}, dispatcher: agent, sleep: noSleep });
    const error = await source.render('t', '-1min').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GraphiteError);
    expect(String((error as Error).message)).toMatch(/graphite\.test.*3 attempt.*HTTP 429/);
  });

  it('does not retry a 404', async () => {
    agent.get(ORIGIN).intercept({ path: /render/ }).reply(404, 'nope');
    const source = createGraphiteSource(graphiteConfig(), { env: {}, dispatcher: agent, sleep: noSleep });
    await expect(source.render('t', '-1min')).rejects.toThrow(/HTTP 404/);
  });

  it('refuses a body larger than maxResponseBytes', async () => {
    agent.get(ORIGIN).intercept({ path: /render/ }).reply(200, `[${' '.repeat(5000)}]`);
    const source = createGraphiteSource(graphiteConfig({ maxResponseBytes: 1024 }), { env: {}, dispatcher: agent, sleep: noSleep });
    await expect(source.render('t', '-1min')).rejects.toThrow(/maxResponseBytes 1024/);
  });

  it('puts a url-key secret in the path but never in error messages', async () => {
    agent.get(ORIGIN).intercept({ path: (p) => p.startsWith('/s3cr3t/render?') }).reply(500, 'boom').times(3);
    const source = createGraphiteSource(graphiteConfig({ auth: { type: 'url-key', keyEnv: 'GRAPHITE_API_KEY' } }), {
      env: { GRAPHITE_API_KEY: 's3cr3t' },
      dispatcher: agent,
      sleep: noSleep,
    });
    const error = await source.render('t', '-1min').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GraphiteError);
    expect(JSON.stringify((error as GraphiteError).toJSON())).not.toContain('s3cr3t');
    expect((error as Error).message).toContain('***');
  });

  it('sends basic auth from the environment', async () => {
    const expected = `Basic ${Buffer.from('weighter:pw').toString('base64')}`;
    agent
      .get(ORIGIN)
      .intercept({ path: /render/, headers: { authorization: expected } })
      .reply(200, []);
    const source = createGraphiteSource(graphiteConfig({ auth: { type: 'basic', username: 'weighter', passwordEnv: 'GRAPHITE_PASSWORD' } }), {
      env: { GRAPHITE_PASSWORD: 'pw' },
      dispatcher: agent,
      sleep: noSleep,
    });
    await expect(source.render('t', '-1min')).resolves.toEqual([]);
  });

  it('fails with a ConfigError naming the variable when a secret is not set', () => {
    expect(() => createGraphiteSource(graphiteConfig({ auth: { type: 'header', header: 'X-Token', valueEnv: 'TOKEN' } }), { env: {} })).toThrow(
      ConfigError,
    );
    expect(() => createGraphiteSource(graphiteConfig({ auth: { type: 'header', header: 'X-Token', valueEnv: 'TOKEN' } }), { env: {} })).toThrow(/TOKEN/);
  });
});

describe('parseRenderReply', () => {
  it.each([
    ['HTML', '<html>error</html>', /did not answer JSON/],
    ['truncated JSON', '[{"target": "s1", "datap', /did not answer JSON/],
    ['an object', '{"error": "x"}', /not a list of series/],
    ['a series without datapoints', '[{"target": "s1"}]', /series #0/],
    ['a datapoint that is not a pair', '[{"target": "s1", "datapoints": [[1]]}]', /not \[value, timestamp\]/],
    ['a negative value', '[{"target": "s1", "datapoints": [[-1, 1700000000]]}]', /value -1/],
    ['a string value', '[{"target": "s1", "datapoints": [["NaN", 1700000000]]}]', /value "NaN"/],
    ['a huge value', '[{"target": "s1", "datapoints": [[1e300, 1700000000]]}]', /value 1e\+300/],
  ])('rejects %s with a GraphiteError that names it', (_what, body, message) => {
    expect(() => parseRenderReply(body, 'http://g/render')).toThrow(message);
    expect(() => parseRenderReply(body, 'http://g/render')).toThrow(GraphiteError);
  });

  it('accepts an empty list and all-null series', () => {
    expect(parseRenderReply('[]', 'u')).toEqual([]);
    expect(parseRenderReply('[{"target":"s1","datapoints":[[null,1700000000],[null,1700000010]]}]', 'u')).toEqual([{ name: 's1', values: [null, null], timestamps: [1700000000, 1700000010] }]);
  });

  it.each([
    ['a string', '"1700000000"', 'timestamp "1700000000" at point #1'],
    ['an object', '{"t":1700000000}', 'timestamp {"t":1700000000} at point #1'],
    ['null', 'null', 'timestamp null at point #1'],
    ['a boolean', 'true', 'timestamp true at point #1'],
    ['a list', '[1700000000]', 'timestamp [1700000000] at point #1'],
    ['infinity (1e309 in JSON)', '1e309', 'timestamp Infinity at point #1'],
    ['a negative number', '-1700000000', 'timestamp -1700000000 at point #1'],
    ['zero', '0', 'timestamp 0 at point #1'],
    ['epoch milliseconds', '1700000010000', 'timestamp 1700000010000 (epoch milliseconds?) at point #1'],
    ['a time after 2100', '4102444800', 'timestamp 4102444800 at point #1'],
  ])('rejects a timestamp that is %s, naming the series, the value and the point', (_what, token, named) => {
    const body = `[{"target": "s1", "datapoints": [[1, 1700000000], [2, ${token}]]}]`;
    expect(() => parseRenderReply(body, 'http://g/render')).toThrow(GraphiteError);
    expect(() => parseRenderReply(body, 'http://g/render')).toThrow(`Graphite at http://g/render: series "s1" has ${named}; timestamps must be epoch seconds from 946684800 (2000) to 4102444800 (2100)`);
  });

  it.each([
    ['the same', 1_700_000_000],
    ['an earlier', 1_699_999_990],
  ])('rejects %s timestamp as the point before, naming both', (_what, second) => {
    const body = JSON.stringify([{ target: 's1', datapoints: [[1, 1_700_000_000], [null, second]] }]);
    expect(() => parseRenderReply(body, 'u')).toThrow(`series "s1" has timestamp ${second} at point #1, not later than 1700000000 at point #0; timestamps must increase`);
  });

  it('checks the timestamps of null points too, so that no weight follows a reply with a bad clock', () => {
    expect(() => parseRenderReply('[{"target":"s1","datapoints":[[5,1700000000],[null,"soon"]]}]', 'u')).toThrow(/timestamp "soon"/);
  });
});
