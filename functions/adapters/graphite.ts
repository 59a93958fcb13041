import type { Dispatcher, RetryHandler } from 'undici';
import type { GraphiteConfig } from '../core/config.js';
import { displaySafe } from '../core/display.js';
import { GraphiteError, snippet } from '../core/errors.js';
import type { MetricSource, RenderOptions, Series } from '../core/types.js';
import { parseRenderReply } from './graphite-reply.js';
import { authHeaders, readSecret } from './http-auth.js';

export { MAX_PLAUSIBLE_LOAD, MAX_TIMESTAMP, MIN_TIMESTAMP, parseRenderReply } from './graphite-reply.js';

/** Why a render stopped (or never started) when the caller's signal aborted it. */
const BUDGET_SPENT = "the cycle's time budget ended";

/** The first retry waits 100 to 200 ms; each later one twice as long, up to RETRY_CAP_MS. */
export const RETRY_BASE_MS = 200;
export const RETRY_CAP_MS = 5_000;
/** The longest Retry-After honoured: a Graphite that asks for more fails this cycle, and the next one asks again. */
export const MAX_RETRY_AFTER_MS = 5_000;

export interface GraphiteSourceOptions {
  /** Where secrets named in the config (`keyEnv`, `passwordEnv`, `valueEnv`) are read from. */
  readonly env: Readonly<Record<string, string | undefined>>;
  /**
   * Where that environment variable's value comes from, for the message of a refused key: the
   * Lambda names its SecureString parameter; by default, the environment variable itself.
   */
  readonly secretOrigin?: string;
  /** The jitter's random source, in [0, 1): Math.random unless a test fixes it. */
  readonly random?: () => number;
  /** The clock that dates a Retry-After given as an HTTP date. */
  readonly now?: () => number;
  /** Starts the wait before a retry (setTimeout unless a test records the waits and skips them). */
  readonly startWait?: (ms: number, resume: () => void) => ReturnType<typeof setTimeout> | undefined;
}

/**
 * A Graphite client that owns its connections: close() ends them (and `await using` does), so a
 * one-shot process ends on its own and an invocation leaves nothing open.
 */
export interface GraphiteSource extends MetricSource, AsyncDisposable {
  close(): Promise<void>;
}

interface PreparedRequest {
  readonly base: URL;
  /** The base URL as it may be shown in messages: an API key in the path is masked. */
  readonly shownBase: string;
  readonly headers: Record<string, string>;
  /** What to check when Graphite refuses the credentials (401/403), in the words of the config. */
  readonly credentialsHint: string;
}

function prepare(config: GraphiteConfig, env: GraphiteSourceOptions['env'], secretOrigin: string | undefined): PreparedRequest {
  const base = new URL(config.url);
  if (!base.pathname.endsWith('/')) base.pathname += '/';
  const shown = base.toString();
  const headers: Record<string, string> = { accept: 'application/json' };
  const auth = config.auth;
  const from = (name: string): string => secretOrigin ?? `environment variable ${name}`;
  switch (auth.type) {
    case 'none':
      return {
        base,
        shownBase: shown,
        headers,
        credentialsHint: 'graphite.auth.type is none, so no key was sent: set graphite.auth (url-key, basic or header) and the key it names',
      };
    case 'url-key': {
      const key = readSecret(env, auth.keyEnv, 'graphite.auth.keyEnv');
      base.pathname += `${encodeURIComponent(key)}/`;
      return { base, shownBase: `${shown}***/`, headers, credentialsHint: `check the API key sent in the URL path (graphite.auth url-key), read from ${from(auth.keyEnv)}` };
    }
    case 'basic': {
      Object.assign(headers, authHeaders(auth, env, 'graphite.auth'));
      return { base, shownBase: shown, headers, credentialsHint: `check the user ${JSON.stringify(auth.username)} and its password, read from ${from(auth.passwordEnv)}` };
    }
    case 'header': {
      Object.assign(headers, authHeaders(auth, env, 'graphite.auth'));
      return { base, shownBase: shown, headers, credentialsHint: `check the key sent in the ${auth.header} header, read from ${from(auth.valueEnv)}` };
    }
  }
}

/** HTTP statuses worth another attempt of an idempotent GET: rate limited, or failing on the server's side. */
function retryableStatus(status: number): boolean {
  return status === 429 || status >= 500;
}

/** Network failures worth another attempt: undici's defaults, a DNS hiccup, and undici's connect and header timeouts. */
const RETRYABLE_CODES: ReadonlySet<string> = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ENETDOWN',
  'ENETUNREACH',
  'EHOSTDOWN',
  'EHOSTUNREACH',
  'EPIPE',
  'ETIMEDOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
]);

/**
 * The wait before retry number `retry` (1 for the first), or null for no retry. Without
 * Retry-After: "equal jitter" over an exponential backoff, a uniform draw in [c/2, c] where
 * c = min(RETRY_CAP_MS, RETRY_BASE_MS * 2^(retry-1)), so that weighters started by the same
 * schedule do not come back to a struggling Graphite together. With Retry-After: that wait, plus
 * a draw in [0, c/2] for the same reason; a Retry-After beyond MAX_RETRY_AFTER_MS means no retry.
 * `random` returns a number in [0, 1).
 */
export function retryDelayMs(retry: number, retryAfterMs: number | undefined, random: () => number): number | null {
  const ceiling = Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** Math.max(0, retry - 1));
  const draw = Math.min(Math.max(random(), 0), 1);
  if (retryAfterMs === undefined) return Math.round(ceiling / 2 + draw * (ceiling / 2));
  if (retryAfterMs > MAX_RETRY_AFTER_MS) return null;
  return Math.round(retryAfterMs + draw * (ceiling / 2));
}

/** A Retry-After header (delta-seconds or an HTTP date) as milliseconds from `now`; undefined when absent or unreadable. */
export function retryAfterMs(value: string | string[] | undefined, now: number): number | undefined {
  const text = (Array.isArray(value) ? value[0] : value)?.trim();
  if (text === undefined || text === '') return undefined;
  if (/^\d{1,9}$/.test(text)) return Number(text) * 1000;
  // An HTTP date names its day or month; Date.parse alone would also read "-1" or "1.5" as dates.
  if (!/[A-Za-z]{3}/.test(text)) return undefined;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/**
 * The longest a render may take, all attempts and waits included: each attempt is bounded by the
 * per-phase timeouts (connect, headers, a pause in the body), but a body that keeps trickling is
 * not, and the cycle (and the run lock) must not wait on it.
 */
export function renderLimitMs(config: Pick<GraphiteConfig, 'timeoutMs' | 'retries'>): number {
  return (config.retries + 1) * config.timeoutMs + config.retries * (MAX_RETRY_AFTER_MS + RETRY_CAP_MS / 2);
}

function codeOf(error: unknown): string | undefined {
  return error instanceof Error && 'code' in error && typeof error.code === 'string' ? error.code : undefined;
}

/** The status of a response the retry interceptor turned into an error (undici's RequestRetryError). */
function statusOf(error: Error): { status: number; headers: Record<string, string | string[] | undefined> } | undefined {
  if (codeOf(error) !== 'UND_ERR_REQ_RETRY') return undefined;
  const status: unknown = Reflect.get(error, 'statusCode');
  const headers: unknown = Reflect.get(error, 'headers');
  if (typeof status !== 'number') return undefined;
  return { status, headers: typeof headers === 'object' && headers !== null ? (headers as Record<string, string | string[] | undefined>) : {} };
}

/** What one render learns while undici's retry interceptor runs its attempts. */
interface RenderAttempts {
  /** Attempts made so far. */
  count: number;
  /** Set once the response headers are in: a failure while reading the body is not retried. */
  bodyStarted: boolean;
  /** Why the last failure was not retried when the reason is ours to tell (Retry-After too long, TLS mismatch). */
  note: string | undefined;
}

/**
 * Graphite `/render` client. undici does the HTTP: an Agent owned by the client (close() ends its
 * connections) with one timeout per phase (connect, headers, a pause in the body; the config's
 * timeoutMs) and the response size limit (maxResponseBytes), composed with undici's retry
 * interceptor, whose retry decision is ours (retryDelayMs: jitter, Retry-After; which failures
 * are worth another attempt). One deadline bounds the whole render (renderLimitMs). What comes back
 * is validated strictly (parseRenderReply).
 */
export function createGraphiteSource(config: GraphiteConfig, options: GraphiteSourceOptions): GraphiteSource {
  const prepared = prepare(config, options.env, options.secretOrigin);
  const random = options.random ?? Math.random;
  const now = options.now ?? Date.now;
  const startWait = options.startWait ?? ((ms: number, resume: () => void) => setTimeout(resume, ms));
  // undici is loaded with the first render, not with this module: a cycle starts reading its
  // load balancers first, and loading undici (with node:http, a good part of a CLI's start-up,
  // docs/performance.md) overlaps their answer.
  let client: Promise<{ readonly agent: Dispatcher; readonly dispatcher: Dispatcher }> | undefined;
  const connect = (): Promise<{ readonly agent: Dispatcher; readonly dispatcher: Dispatcher }> =>
    // undici is CommonJS: its exports are the default export of the dynamic import, in Node.js and
    // in the bundles' chunk alike.
    (client ??= import('undici').then(({ default: { Agent, interceptors } }) => {
      const agent = new Agent({
        // HTTP/1.1 only (undici 8 offers HTTP/2 to TLS servers by default): one request per
        // backend and cycle gains nothing from it, and the bundles leave undici's HTTP/2 client out.
        allowH2: false,
        connect: { timeout: config.timeoutMs },
        headersTimeout: config.timeoutMs,
        bodyTimeout: config.timeoutMs,
        maxResponseSize: config.maxResponseBytes,
      });
      // The retry decision (and the attempt limit, config.retries) is each render's own `retry`
      // below. throwOnError false: the last failing response comes back as a response, its
      // status and body readable, rather than as undici's generic RequestRetryError.
      return { agent, dispatcher: agent.compose(interceptors.retry({ throwOnError: false, methods: ['GET'] })) };
    }));
  const limitMs = renderLimitMs(config);
  let closing: Promise<void> | undefined;

  const render = async (target: string, from: string, until?: string, options: RenderOptions = {}): Promise<Series[]> => {
    const url = new URL('render', prepared.base);
    url.searchParams.set('target', target);
    url.searchParams.set('from', from);
    if (until !== undefined) url.searchParams.set('until', until);
    url.searchParams.set('format', 'json');
    const shownUrl = `${prepared.shownBase}render?${url.searchParams.toString()}`;
    const attempts: RenderAttempts = { count: 1, bodyStarted: false, note: undefined };

    const retry: RetryHandler.RetryCallback = (error, { state }, decide) => {
      attempts.count = state.counter;
      const stop = (note?: string): void => {
        attempts.note = note;
        decide(error);
      };
      const answered = statusOf(error);
      if (attempts.bodyStarted || state.counter > config.retries) return stop();
      if (answered !== undefined ? !retryableStatus(answered.status) : !RETRYABLE_CODES.has(codeOf(error) ?? '')) return stop();
      const go = (): ReturnType<typeof setTimeout> | undefined => {
        const after = answered === undefined ? undefined : retryAfterMs(answered.headers['retry-after'], now());
        const wait = retryDelayMs(state.counter, after, random);
        if (wait === null) {
          stop(`it asked to retry after ${Math.round((after ?? 0) / 1000)} s (Retry-After), longer than the ${MAX_RETRY_AFTER_MS / 1000} s this client waits; the next cycle asks again`);
          return undefined;
        }
        return startWait(wait, () => {
          attempts.count = state.counter + 1;
          decide(null);
        });
      };
      // A closed connection from an http:// URL may be a TLS port that did not understand the request.
      if (url.protocol === 'http:' && answered === undefined && looksLikeTlsRefusal(error)) {
        void speaksTls(url, config.timeoutMs).then((tls) => (tls ? stop(tlsMismatch(url, 'http')) : go()));
        return undefined;
      }
      return go();
    };

    const request: Dispatcher.RequestOptions & { retryOptions: RetryHandler.RetryOptions } = {
      origin: url.origin,
      path: `${url.pathname}${url.search}`,
      method: 'GET',
      headers: prepared.headers,
      signal: options.signal === undefined ? AbortSignal.timeout(limitMs) : AbortSignal.any([AbortSignal.timeout(limitMs), options.signal]),
      retryOptions: { retry },
    };
    const failed = (why: string, kind: 'unreachable' | 'http-status', cause?: unknown): GraphiteError =>
      new GraphiteError(`Graphite at ${shownUrl} failed after ${attempts.count} attempt(s): ${why}`, { url: shownUrl }, { cause, kind });

    if (closing !== undefined) throw new GraphiteError(`Graphite at ${shownUrl}: not asked, the client is closed`, { url: shownUrl }, { kind: 'unreachable' });
    if (options.signal?.aborted === true) throw new GraphiteError(`Graphite at ${shownUrl}: not asked, ${BUDGET_SPENT}`, { url: shownUrl }, { kind: 'unreachable' });
    const started = now();
    // Why waiting stopped, when the caller's signal stopped it: no network error explains that.
    const stopped = (): string | undefined => (options.signal?.aborted === true ? `stopped waiting after ${Math.max(0, Math.round(now() - started))} ms: ${BUDGET_SPENT}` : undefined);
    const { dispatcher } = await connect();
    let response: Dispatcher.ResponseData;
    try {
      response = await dispatcher.request(request);
    } catch (error) {
      throw failed(stopped() ?? attempts.note ?? describeNetworkError(error, url, config.timeoutMs, limitMs), 'unreachable', error);
    }
    attempts.bodyStarted = true;
    const { statusCode, body, headers } = response;
    if (statusCode !== 200) {
      const text = await readPrefix(body, 4096);
      const said = text === '' ? '' : `: ${snippet(text, 120)}`;
      if (retryableStatus(statusCode)) throw failed(`HTTP ${statusCode}${said}${attempts.note === undefined ? '' : `; ${attempts.note}`}`, 'http-status');
      if (statusCode === 401 || statusCode === 403) {
        const refused = statusCode === 401 ? 'did not accept the credentials (HTTP 401)' : 'refused this request with these credentials (HTTP 403)';
        throw new GraphiteError(`Graphite at ${shownUrl} ${refused}: ${prepared.credentialsHint}`, { url: shownUrl, status: statusCode, reply: text }, { kind: 'auth' });
      }
      throw new GraphiteError(`Graphite at ${shownUrl} answered HTTP ${statusCode}${said}`, { url: shownUrl, status: statusCode, reply: text }, { kind: 'http-status' });
    }
    const declared = Number(headers['content-length']);
    if (Number.isFinite(declared) && declared > config.maxResponseBytes) {
      body.destroy();
      throw new GraphiteError(`Graphite at ${shownUrl} sent ${declared} bytes, more than maxResponseBytes ${config.maxResponseBytes}`, { url: shownUrl });
    }
    let text: string;
    try {
      text = await body.text();
    } catch (error) {
      if (codeOf(error) === 'UND_ERR_RES_EXCEEDED_MAX_SIZE') {
        throw new GraphiteError(`Graphite at ${shownUrl} sent more than maxResponseBytes ${config.maxResponseBytes}`, { url: shownUrl }, { cause: error });
      }
      throw failed(`the reply was cut short: ${stopped() ?? describeNetworkError(error, url, config.timeoutMs, limitMs)}`, 'unreachable', error);
    }
    return parseRenderReply(text, shownUrl);
  };

  // Nothing to close when undici was never loaded, or failed to load (the render said so).
  const close = (): Promise<void> =>
    (closing ??=
      client === undefined
        ? Promise.resolve()
        : client.then(
            ({ agent }) => agent.close(),
            () => undefined,
          ));
  return { render, close, [Symbol.asyncDispose]: close };
}

/** The start of an error reply, enough for a message; the rest is not read. */
async function readPrefix(body: Dispatcher.ResponseData['body'], maxBytes: number): Promise<string> {
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of body) {
      const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
      chunks.push(buf);
      total += buf.length;
      if (total >= maxBytes) break;
    }
  } catch {
    // An error page we cannot read adds nothing to the status.
  } finally {
    body.destroy();
  }
  return Buffer.concat(chunks).subarray(0, maxBytes).toString('utf8');
}

/** How a plain-HTTP server answers a TLS handshake, as OpenSSL reads it. */
function isPlainHttpAnswer(error: unknown): boolean {
  const code = codeOf(error) ?? '';
  return code === 'ERR_SSL_WRONG_VERSION_NUMBER' || code === 'ERR_SSL_PACKET_LENGTH_TOO_LONG' || code === 'ERR_SSL_HTTP_REQUEST';
}

/**
 * How a TLS port answers a plain HTTP request: it closes without a reply (or resets, when the
 * request was not all read), or sends a TLS alert that is no HTTP.
 */
function looksLikeTlsRefusal(error: unknown): boolean {
  const code = codeOf(error) ?? '';
  return code === 'UND_ERR_SOCKET' || code === 'ECONNRESET' || code.startsWith('HPE_');
}

/**
 * Whether host:port completes a TLS handshake. Only a diagnosis after a failed plain request:
 * nothing is sent over the connection, so the certificate is not checked here (the client does
 * check it when graphite.url says https://).
 */
async function speaksTls(url: URL, timeoutMs: number): Promise<boolean> {
  // Loaded only for this diagnosis: node:tls is a large part of a start-up that never needs it.
  const { connect: tlsConnect } = await import('node:tls');
  return new Promise((resolve) => {
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    const socket = tlsConnect({ host, port: Number(url.port || 80), rejectUnauthorized: false, ...(/^[\d.:]+$/.test(host) ? {} : { servername: host }) });
    const done = (tls: boolean): void => {
      socket.destroy();
      resolve(tls);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('secureConnect', () => done(true));
    socket.once('error', () => done(false));
  });
}

function tlsMismatch(url: URL, said: 'http' | 'https'): string {
  return said === 'http'
    ? `${url.host} speaks TLS, but graphite.url says http://: use https://`
    : `${url.host} answered the TLS handshake in plain HTTP, but graphite.url says https://: use http://, or the port that serves HTTPS`;
}

function describeNetworkError(error: unknown, url: URL, timeoutMs: number, limitMs: number): string {
  if (url.protocol === 'https:' && isPlainHttpAnswer(error)) return tlsMismatch(url, 'https');
  const code = codeOf(error);
  if (code === 'UND_ERR_CONNECT_TIMEOUT') return `could not connect within ${timeoutMs} ms`;
  if (code === 'UND_ERR_HEADERS_TIMEOUT') return `no answer within ${timeoutMs} ms`;
  if (code === 'UND_ERR_BODY_TIMEOUT') return `the reply stalled for ${timeoutMs} ms`;
  if (error instanceof Error && error.name === 'TimeoutError') return `no complete reply within ${limitMs} ms, every attempt and wait included`;
  if (error instanceof Error) {
    const cause = error.cause instanceof Error ? `: ${error.cause.message}` : '';
    // Other libraries' words: made visible text before they reach a report or a log.
    return displaySafe(`${error.message}${code === undefined ? '' : ` (${code})`}${cause}`);
  }
  return snippet(String(error));
}
