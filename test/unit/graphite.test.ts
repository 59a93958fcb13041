/**
 * The Graphite client against HTTP servers of this process on loopback: undici's Agent, retry
 * interceptor and response size limit as the client composes them, with the retry waits recorded
 * (and skipped) through the injected startWait, and the jitter's random source fixed where a test
 * needs exact values.
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import {
  MAX_RETRY_AFTER_MS,
  RETRY_BASE_MS,
  RETRY_CAP_MS,
  createGraphiteSource,
  parseRenderReply,
  renderLimitMs,
  retryAfterMs,
  retryDelayMs,
  type GraphiteSourceOptions,
} from '../../functions/adapters/graphite.js';
import { parseConfig } from '../../functions/core/config.js';
import { ConfigError, GraphiteError } from '../../functions/core/errors.js';
import { closeHttpServer, listenOnLoopback } from '../harness/loopback-server.js';
import { propertyRuns } from '../harness/property-runs.js';

type Handler = (req: IncomingMessage, res: ServerResponse, index: number) => void;

interface TestServer {
  readonly url: string;
  readonly requests: IncomingMessage[];
  /** Connections open right now. */
  readonly open: Set<Socket>;
  close(): Promise<void>;
}

const servers: TestServer[] = [];

/** An HTTP server on a free loopback port that answers request #i with `handlers[i]` (the last one repeats). */
async function serve(...handlers: Handler[]): Promise<TestServer> {
  const requests: IncomingMessage[] = [];
  const open = new Set<Socket>();
  const server = createServer((req, res) => {
    const index = requests.length;
    requests.push(req);
    const handler = handlers[Math.min(index, handlers.length - 1)];
    handler?.(req, res, index);
  });
  server.on('connection', (socket) => {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
  });
  const port = await listenOnLoopback(server, 'the test server');
  const handle: TestServer = {
    url: `http://127.0.0.1:${port}/`,
    requests,
    open,
    close: () => closeHttpServer(server),
  };
  servers.push(handle);
  return handle;
}

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

const json =
  (body: unknown, status = 200, headers: Record<string, string> = {}): Handler =>
  (_req, res) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(typeof body === 'string' ? body : JSON.stringify(body));
  };
const text =
  (status: number, body: string, headers: Record<string, string> = {}): Handler =>
  (_req, res) => {
    res.writeHead(status, { 'content-type': 'text/plain', ...headers }).end(body);
  };

function graphiteConfig(url: string, extra: Record<string, unknown> = {}) {
  return parseConfig({
    graphite: { url, retries: 2, timeoutMs: 2_000, ...extra },
    relay: { type: 'socket', loadBalancers: [{ name: 'lb1', endpoint: '/tmp/x.sock' }] },
    backends: [{ name: 'be', target: 't', weighting: { function: 'limited-proportions' } }],
  }).graphite;
}

/** A client whose retry waits are recorded and skipped; `random` fixes the jitter's draw. */
function client(url: string, extra: Record<string, unknown> = {}, options: Partial<GraphiteSourceOptions> = {}) {
  const waits: number[] = [];
  const source = createGraphiteSource(graphiteConfig(url, extra), {
    env: {},
    startWait: (ms, resume) => {
      waits.push(ms);
      setImmediate(resume);
      return undefined;
    },
    ...options,
  });
  return { source, waits };
}

async function failure(promise: Promise<unknown>): Promise<GraphiteError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(error instanceof GraphiteError)) throw new Error(`expected a GraphiteError, got ${String(error)}`);
  return error;
}

const SERIES = [{ target: 's1', datapoints: [[1, 1_700_000_000], [null, 1_700_000_010]] }];

describe('retryDelayMs: equal jitter over an exponential backoff, Retry-After honoured up to a limit', () => {
  it.each([
    // retry, Retry-After (ms), random draw, wait (ms)
    [1, undefined, 0, 100],
    [1, undefined, 0.5, 150],
    [1, undefined, 0.999, 200],
    [2, undefined, 0, 200],
    [3, undefined, 0.5, 600],
    [10, undefined, 0, RETRY_CAP_MS / 2],
    [10, undefined, 0.9999, RETRY_CAP_MS],
    [1, 0, 0, 0],
    [1, 2_000, 0, 2_000],
    [1, 2_000, 0.999, 2_100],
    [3, MAX_RETRY_AFTER_MS, 0.5, MAX_RETRY_AFTER_MS + 200],
  ])('waits before retry %i (Retry-After %s ms, draw %s) %i ms', (retry, after, draw, expected) => {
    expect(retryDelayMs(retry, after, () => draw)).toBe(expected);
  });

  it('does not retry when Retry-After asks for longer than the limit', () => {
    expect(retryDelayMs(1, MAX_RETRY_AFTER_MS + 1, () => 0)).toBeNull();
    expect(retryDelayMs(2, 3_600_000, () => 0.5)).toBeNull();
  });

  it('stays within [c/2, c] for c = min(cap, base * 2^(retry-1)), and at least Retry-After, for every draw', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 12 }), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), fc.option(fc.integer({ min: 0, max: MAX_RETRY_AFTER_MS })), (retry, draw, after) => {
        const ceiling = Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** (retry - 1));
        const wait = retryDelayMs(retry, after ?? undefined, () => draw);
        expect(wait).not.toBeNull();
        const low = after === null ? ceiling / 2 : after;
        const high = after === null ? ceiling : after + ceiling / 2;
        expect(wait).toBeGreaterThanOrEqual(Math.floor(low));
        expect(wait).toBeLessThanOrEqual(Math.ceil(high));
      }),
      propertyRuns(),
    );
  });
});

describe('retryAfterMs', () => {
  const now = Date.UTC(2026, 0, 1, 12, 0, 0);
  it.each([
    ['delta-seconds', '3', 3_000],
    ['zero, with spaces', ' 0 ', 0],
    ['an HTTP date 5 s ahead', new Date(now + 5_000).toUTCString(), 5_000],
    ['an HTTP date in the past', new Date(now - 60_000).toUTCString(), 0],
    ['the first of several headers', ['2', '9'], 2_000],
  ])('reads %s', (_what, value, expected) => {
    expect(retryAfterMs(value, now)).toBe(expected);
  });

  it.each([[undefined], [''], ['soon'], ['-1'], ['1.5']])('ignores %j', (value) => {
    expect(retryAfterMs(value, now)).toBeUndefined();
  });
});

describe('createGraphiteSource', () => {
  it('renders the target as JSON and keeps null points and their timestamps', async () => {
    const server = await serve(json(SERIES));
    const { source } = client(server.url);
    await expect(source.render('aliasByNode(a.*.b, 1)', '-5min')).resolves.toEqual([{ name: 's1', values: [1, null], timestamps: [1_700_000_000, 1_700_000_010] }]);
    const query = new URL(server.requests[0]?.url ?? '', server.url).searchParams;
    expect(Object.fromEntries(query)).toEqual({ target: 'aliasByNode(a.*.b, 1)', from: '-5min', format: 'json' });
    await source.close();
  });

  it('retries HTTP 502 after a jittered wait within [100, 200] ms and then succeeds', async () => {
    const server = await serve(text(502, 'bad gateway'), json([]));
    const { source, waits } = client(server.url);
    await expect(source.render('t', '-1min')).resolves.toEqual([]);
    expect(server.requests).toHaveLength(2);
    expect(waits).toHaveLength(1);
    expect(waits[0]).toBeGreaterThanOrEqual(RETRY_BASE_MS / 2);
    expect(waits[0]).toBeLessThanOrEqual(RETRY_BASE_MS);
    await source.close();
  });

  it('draws each wait from the injected random source', async () => {
    const server = await serve(text(503, 'busy'), text(503, 'busy'), json([]));
    const draws = [0, 0.5];
    const { source, waits } = client(server.url, {}, { random: () => draws.shift() ?? 0 });
    await source.render('t', '-1min');
    expect(waits).toEqual([100, 300]);
    await source.close();
  });

  it('gives up after the configured retries on HTTP 429 and names the URL, the attempts and the status', async () => {
    const server = await serve(text(429, 'slow down'));
    const { source, waits } = client(server.url);
    const error = await failure(source.render('t', '-1min'));
    expect(error.kind).toBe('http-status');
    expect(error.message).toMatch(/^Graphite at http:\/\/127\.0\.0\.1:\d+\/render\?target=t.* failed after 3 attempt\(s\): HTTP 429: slow down$/);
    expect(server.requests).toHaveLength(3);
    expect(waits).toHaveLength(2);
    await source.close();
  });

  it('waits what Retry-After asks (2 s) before the next attempt', async () => {
    const server = await serve(text(503, 'maintenance', { 'retry-after': '2' }), json([]));
    const { source, waits } = client(server.url, {}, { random: () => 0 });
    await expect(source.render('t', '-1min')).resolves.toEqual([]);
    expect(waits).toEqual([2_000]);
    await source.close();
  });

  it('reads a Retry-After date against its clock', async () => {
    const now = Date.UTC(2026, 0, 1);
    const server = await serve(text(429, 'later', { 'retry-after': new Date(now + 3_000).toUTCString() }), json([]));
    const { source, waits } = client(server.url, {}, { random: () => 0, now: () => now });
    await source.render('t', '-1min');
    expect(waits).toEqual([3_000]);
    await source.close();
  });

  it('does not retry when Retry-After asks for longer than it waits, and says so', async () => {
    const server = await serve(text(429, 'rate limited', { 'retry-after': '3600' }));
    const { source, waits } = client(server.url);
    const error = await failure(source.render('t', '-1min'));
    expect(server.requests).toHaveLength(1);
    expect(waits).toEqual([]);
    expect(error.kind).toBe('http-status');
    expect(error.message).toContain('failed after 1 attempt(s): HTTP 429: rate limited; it asked to retry after 3600 s (Retry-After), longer than the 5 s this client waits');
    await source.close();
  });

  it('does not retry a 404', async () => {
    const server = await serve(text(404, 'nope'));
    const { source } = client(server.url);
    const error = await failure(source.render('t', '-1min'));
    expect(error.kind).toBe('http-status');
    expect(error.message).toMatch(/answered HTTP 404: nope$/);
    expect(server.requests).toHaveLength(1);
    await source.close();
  });

  it('retries a refused connection and names the error after the last attempt', async () => {
    const server = await serve(json([]));
    await server.close();
    const { source, waits } = client(server.url);
    const error = await failure(source.render('t', '-1min'));
    expect(error.kind).toBe('unreachable');
    expect(error.message).toMatch(/failed after 3 attempt\(s\): .*ECONNREFUSED/);
    expect(waits).toHaveLength(2);
    await source.close();
  });

  it('retries an attempt that gets no answer within timeoutMs', async () => {
    const server = await serve(() => undefined);
    // Long enough that a loaded machine still connects within it: the headers are what never come.
    const { source } = client(server.url, { timeoutMs: 500, retries: 1 });
    const error = await failure(source.render('t', '-1min'));
    expect(error.kind).toBe('unreachable');
    expect(error.message).toMatch(/failed after 2 attempt\(s\): no answer within 500 ms$/);
    expect(server.requests).toHaveLength(2);
    await source.close();
  });

  it('does not retry once the body has started: a reply cut short fails at once', async () => {
    const server = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' });
      res.write('[{"target": "s1", ');
      setImmediate(() => res.socket?.destroy());
    });
    const { source, waits } = client(server.url);
    const error = await failure(source.render('t', '-1min'));
    expect(error.kind).toBe('unreachable');
    expect(error.message).toMatch(/failed after 1 attempt\(s\): the reply was cut short/);
    expect(server.requests).toHaveLength(1);
    expect(waits).toEqual([]);
    await source.close();
  });

  it('bounds the whole render: a body that keeps trickling is cut at renderLimitMs', async () => {
    // The body never pauses for timeoutMs (it trickles every 20 ms), so only the render's deadline can end it.
    const config = { timeoutMs: 1_000, retries: 0 };
    const server = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('[');
      const timer = setInterval(() => res.write(' '), 20);
      res.once('close', () => clearInterval(timer));
    });
    const { source } = client(server.url, config);
    const error = await failure(source.render('t', '-1min'));
    expect(renderLimitMs(config)).toBe(1_000);
    expect(error.message).toContain(`no complete reply within ${renderLimitMs(config)} ms, every attempt and wait included`);
    await source.close();
  });

  describe("stops waiting when the cycle's signal aborts (its time budget ended)", () => {
    const BUDGET = /failed after 1 attempt\(s\): stopped waiting after \d+ ms: the cycle's time budget ended$/;

    it('while waiting for the answer, and closes the connection', async () => {
      const stop = new AbortController();
      const server = await serve(() => stop.abort());
      const { source } = client(server.url, { timeoutMs: 60_000 });
      const error = await failure(source.render('t', '-1min', undefined, { signal: stop.signal }));
      expect(error.kind).toBe('unreachable');
      expect(error.message).toMatch(BUDGET);
      expect(server.requests).toHaveLength(1);
      await source.close();
      await expect.poll(() => server.open.size).toBe(0);
    });

    it('while reading a body that stalls', async () => {
      const stop = new AbortController();
      const server = await serve((_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('[{"target": "s1", ');
      });
      // Once the client has the headers (undici says so on its diagnostics channel), and has
      // started on the body (a turn of the event loop later), the budget ends.
      const onHeaders = (): void => void setImmediate(() => stop.abort());
      subscribe('undici:request:headers', onHeaders);
      try {
        const { source } = client(server.url, { timeoutMs: 60_000 });
        const error = await failure(source.render('t', '-1min', undefined, { signal: stop.signal }));
        expect(error.message).toMatch(/failed after 1 attempt\(s\): the reply was cut short: stopped waiting after \d+ ms: the cycle's time budget ended$/);
        await source.close();
      } finally {
        unsubscribe('undici:request:headers', onHeaders);
      }
    });

    it('while waiting to retry, without another attempt', async () => {
      const stop = new AbortController();
      const server = await serve(text(503, 'busy'));
      let pending: ReturnType<typeof setTimeout> | undefined;
      const source = createGraphiteSource(graphiteConfig(server.url, { timeoutMs: 60_000 }), {
        env: {},
        // The wait before the retry is where the budget ends; resuming it (long after) must change nothing.
        startWait: (_ms, resume) => {
          stop.abort();
          pending = setTimeout(resume, 30_000);
          return pending;
        },
      });
      const error = await failure(source.render('t', '-1min', undefined, { signal: stop.signal }));
      clearTimeout(pending);
      expect(error.message).toMatch(BUDGET);
      expect(server.requests).toHaveLength(1);
      await source.close();
    });

    it('and does not ask at all once it has aborted', async () => {
      const server = await serve(json(SERIES));
      const { source } = client(server.url);
      const error = await failure(source.render('t', '-1min', undefined, { signal: AbortSignal.abort() }));
      expect(error.message).toMatch(/: not asked, the cycle's time budget ended$/);
      expect(server.requests).toHaveLength(0);
      await source.close();
    });
  });

  it('refuses a streamed body larger than maxResponseBytes (undici stops reading it) and does not retry', async () => {
    const server = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(`[${' '.repeat(5000)}]`);
    });
    const { source } = client(server.url, { maxResponseBytes: 1024 });
    const error = await failure(source.render('t', '-1min'));
    expect(error.kind).toBe('bad-reply');
    expect(error.message).toMatch(/sent more than maxResponseBytes 1024$/);
    expect(server.requests).toHaveLength(1);
    await source.close();
  });

  it('refuses a declared Content-Length larger than maxResponseBytes before reading the body', async () => {
    const body = `[${' '.repeat(5000)}]`;
    const server = await serve(json(body, 200, { 'content-length': String(body.length) }));
    const { source } = client(server.url, { maxResponseBytes: 1024 });
    const error = await failure(source.render('t', '-1min'));
    expect(error.kind).toBe('bad-reply');
    expect(error.message).toMatch(/sent 5002 bytes, more than maxResponseBytes 1024$/);
    await source.close();
  });

  it('closes its connections on close(), and `await using` does the same', async () => {
    const server = await serve(json([]));
    const { source } = client(server.url);
    await source.render('t', '-1min');
    expect(server.open.size).toBe(1);
    await source.close();
    await expect.poll(() => server.open.size).toBe(0);
    await expect(source.render('t', '-1min')).rejects.toThrow();

    {
      await using scoped = client(server.url).source;
      await scoped.render('t', '-1min');
      expect(server.open.size).toBe(1);
    }
    await expect.poll(() => server.open.size).toBe(0);
  });

  it('puts a url-key secret in the path but never in error messages', async () => {
    const server = await serve(text(500, 'boom'));
    const { source } = client(server.url, { auth: { type: 'url-key', keyEnv: 'GRAPHITE_API_KEY' } }, { env: { GRAPHITE_API_KEY: 's3cr3t' } });
    const error = await failure(source.render('t', '-1min'));
    expect(server.requests[0]?.url).toMatch(/^\/s3cr3t\/render\?/);
    expect(JSON.stringify(error.toJSON())).not.toContain('s3cr3t');
    expect(error.message).toContain('/***/render?');
    await source.close();
  });

  it('sends basic auth and header auth from the environment', async () => {
    const server = await serve(json([]));
    const basic = client(server.url, { auth: { type: 'basic', username: 'weighter', passwordEnv: 'GRAPHITE_PASSWORD' } }, { env: { GRAPHITE_PASSWORD: 'pw' } }).source;
    await basic.render('t', '-1min');
    const header = client(server.url, { auth: { type: 'header', header: 'X-Api-Key', prefix: 'Bearer ', valueEnv: 'TOKEN' } }, { env: { TOKEN: 'tok' } }).source;
    await header.render('t', '-1min');
    expect(server.requests[0]?.headers.authorization).toBe(`Basic ${Buffer.from('weighter:pw').toString('base64')}`);
    expect(server.requests[1]?.headers['x-api-key']).toBe('Bearer tok');
    await Promise.all([basic.close(), header.close()]);
  });

  it('fails with a ConfigError naming the variable when a secret is not set', () => {
    const config = graphiteConfig('http://127.0.0.1:9/', { auth: { type: 'header', header: 'X-Token', valueEnv: 'TOKEN' } });
    expect(() => createGraphiteSource(config, { env: {} })).toThrow(ConfigError);
    expect(() => createGraphiteSource(config, { env: {} })).toThrow(/TOKEN/);
  });
});

describe('a refused key: the message says what to check and where the key comes from', () => {
  const env = { GRAPHITE_API_KEY: 'k', GRAPHITE_PASSWORD: 'p', GRAPHITE_TOKEN: 't' };
  it.each([
    [401, { type: 'none' }, undefined, 'did not accept the credentials (HTTP 401): graphite.auth.type is none, so no key was sent: set graphite.auth (url-key, basic or header) and the key it names'],
    [401, { type: 'url-key', keyEnv: 'GRAPHITE_API_KEY' }, undefined, 'did not accept the credentials (HTTP 401): check the API key sent in the URL path (graphite.auth url-key), read from environment variable GRAPHITE_API_KEY'],
    [403, { type: 'basic', username: 'weighter', passwordEnv: 'GRAPHITE_PASSWORD' }, undefined, 'refused this request with these credentials (HTTP 403): check the user "weighter" and its password, read from environment variable GRAPHITE_PASSWORD'],
    [401, { type: 'header', header: 'X-Api-Key', valueEnv: 'GRAPHITE_TOKEN' }, undefined, 'did not accept the credentials (HTTP 401): check the key sent in the X-Api-Key header, read from environment variable GRAPHITE_TOKEN'],
    [
      401,
      { type: 'url-key', keyEnv: 'GRAPHITE_API_KEY' },
      'the SecureString parameter /hw/prod/graphite-key (named by GRAPHITE_KEY_PARAMETER)',
      'check the API key sent in the URL path (graphite.auth url-key), read from the SecureString parameter /hw/prod/graphite-key (named by GRAPHITE_KEY_PARAMETER)',
    ],
  ])('HTTP %i with auth %j (secret from %s)', async (status, auth, secretOrigin, expected) => {
    const server = await serve(text(status, 'no'));
    const { source } = client(server.url, { auth }, { env, ...(secretOrigin === undefined ? {} : { secretOrigin }) });
    const error = await failure(source.render('t', '-1min'));
    expect(error.kind).toBe('auth');
    expect(error.message).toMatch(/^Graphite at http:\/\/127\.0\.0\.1:\d+\/.*render\?target=t&from=-1min&format=json /);
    expect(error.message.endsWith(expected)).toBe(true);
    expect(error.message).not.toContain('\n');
    expect(server.requests).toHaveLength(1);
    await source.close();
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
