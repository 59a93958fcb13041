import { setTimeout as delay } from 'node:timers/promises';
import { request, errors as undiciErrors, type Dispatcher } from 'undici';
import type { GraphiteConfig } from '../core/config.js';
import { displaySafe } from '../core/display.js';
import { ConfigError, GraphiteError, snippet } from '../core/errors.js';
import type { MetricSource, Series } from '../core/types.js';

/** Loads beyond this are not a rate any ingestion server has: a unit or pipeline bug. */
export const MAX_PLAUSIBLE_LOAD = 1e12;

export interface GraphiteSourceOptions {
  /** Where secrets named in the config (`keyEnv`, `passwordEnv`, `valueEnv`) are read from. */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** For tests: a dispatcher (e.g. undici MockAgent); the global one otherwise. */
  readonly dispatcher?: Dispatcher;
  /** Injected so that unit tests do not wait for real backoff. */
  readonly sleep?: (ms: number) => Promise<void>;
}

interface PreparedRequest {
  readonly base: URL;
  /** The base URL as it may be shown in messages: an API key in the path is masked. */
  readonly shownBase: string;
  readonly headers: Record<string, string>;
}

function readSecret(env: GraphiteSourceOptions['env'], name: string, key: string): string {
  const value = env[name];
  if (value === undefined || value === '') {
    throw new ConfigError(`graphite.auth.${key}: environment variable ${name} is not set`);
  }
  return value;
}

function prepare(config: GraphiteConfig, env: GraphiteSourceOptions['env']): PreparedRequest {
  const base = new URL(config.url);
  if (!base.pathname.endsWith('/')) base.pathname += '/';
  const shown = base.toString();
  const headers: Record<string, string> = { accept: 'application/json' };
  const auth = config.auth;
  switch (auth.type) {
    case 'none':
      break;
    case 'url-key': {
      const key = readSecret(env, auth.keyEnv, 'keyEnv');
      base.pathname += `${encodeURIComponent(key)}/`;
      return { base, shownBase: `${shown}***/`, headers };
    }
    case 'basic': {
      const password = readSecret(env, auth.passwordEnv, 'passwordEnv');
      headers.authorization = `Basic ${Buffer.from(`${auth.username}:${password}`).toString('base64')}`;
      break;
    }
    case 'header': {
      const value = readSecret(env, auth.valueEnv, 'valueEnv');
      headers[auth.header.toLowerCase()] = `${auth.prefix}${value}`;
      break;
    }
  }
  return { base, shownBase: shown, headers };
}

/** A failure worth another attempt: the request is an idempotent GET. */
class RetryableFailure extends Error {
  /** The HTTP status (429, 5xx) when Graphite answered; undefined when it was not reached. */
  readonly status: number | undefined;
  constructor(message: string, options?: { cause?: unknown; status?: number }) {
    super(message, options);
    this.status = options?.status;
  }
}

/**
 * Graphite `/render` client on undici: bounded retries with exponential backoff on connection
 * errors, timeouts, 429 and 5xx; a hard cap on the body size; and strict validation of the JSON.
 */
export function createGraphiteSource(config: GraphiteConfig, options: GraphiteSourceOptions): MetricSource {
  const prepared = prepare(config, options.env);
  const sleep = options.sleep ?? ((ms: number) => delay(ms));

  return {
    async render(target: string, from: string, until?: string): Promise<readonly Series[]> {
      const url = new URL('render', prepared.base);
      url.searchParams.set('target', target);
      url.searchParams.set('from', from);
      if (until !== undefined) url.searchParams.set('until', until);
      url.searchParams.set('format', 'json');
      const shownUrl = `${prepared.shownBase}render?${url.searchParams.toString()}`;

      let lastError: RetryableFailure | undefined;
      for (let attempt = 0; attempt <= config.retries; attempt++) {
        if (attempt > 0) await sleep(Math.min(200 * 2 ** (attempt - 1), 5_000));
        try {
          const text = await fetchBody(url, prepared.headers, config, options.dispatcher, shownUrl);
          return parseRenderReply(text, shownUrl);
        } catch (error) {
          if (error instanceof RetryableFailure) {
            lastError = error;
            continue;
          }
          throw error;
        }
      }
      throw new GraphiteError(
        `Graphite at ${shownUrl} failed after ${config.retries + 1} attempt(s): ${lastError?.message ?? 'unknown error'}`,
        { url: shownUrl },
        { cause: lastError, kind: lastError?.status === undefined ? 'unreachable' : 'http-status' },
      );
    },
  };
}

async function fetchBody(
  url: URL,
  headers: Record<string, string>,
  config: GraphiteConfig,
  dispatcher: Dispatcher | undefined,
  shownUrl: string,
): Promise<string> {
  let response: Dispatcher.ResponseData;
  try {
    response = await request(url, {
      method: 'GET',
      headers,
      headersTimeout: config.timeoutMs,
      bodyTimeout: config.timeoutMs,
      signal: AbortSignal.timeout(config.timeoutMs),
      ...(dispatcher === undefined ? {} : { dispatcher }),
    });
  } catch (error) {
    throw new RetryableFailure(describeNetworkError(error, config.timeoutMs), { cause: error });
  }

  const { statusCode, body } = response;
  if (statusCode === 429 || statusCode >= 500) {
    const text = await readCapped(body, 4096, shownUrl).catch(() => '');
    throw new RetryableFailure(`HTTP ${statusCode}${text === '' ? '' : `: ${snippet(text, 120)}`}`, { status: statusCode });
  }
  if (statusCode !== 200) {
    const text = await readCapped(body, 4096, shownUrl).catch(() => '');
    throw new GraphiteError(
      `Graphite at ${shownUrl} answered HTTP ${statusCode}`,
      { url: shownUrl, status: statusCode, reply: text },
      { kind: statusCode === 401 || statusCode === 403 ? 'auth' : 'http-status' },
    );
  }
  const declared = Number(response.headers['content-length']);
  if (Number.isFinite(declared) && declared > config.maxResponseBytes) {
    body.destroy();
    throw new GraphiteError(
      `Graphite at ${shownUrl} sent ${declared} bytes, more than maxResponseBytes ${config.maxResponseBytes}`,
      { url: shownUrl },
    );
  }
  try {
    return await readCapped(body, config.maxResponseBytes, shownUrl);
  } catch (error) {
    if (error instanceof GraphiteError) throw error;
    throw new RetryableFailure(describeNetworkError(error, config.timeoutMs), { cause: error });
  }
}

async function readCapped(body: Dispatcher.ResponseData['body'], maxBytes: number, shownUrl: string): Promise<string> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body) {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
    total += buf.length;
    if (total > maxBytes) {
      body.destroy();
      throw new GraphiteError(`Graphite at ${shownUrl} sent more than maxResponseBytes ${maxBytes}`, { url: shownUrl });
    }
    chunks.push(buf);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function describeNetworkError(error: unknown, timeoutMs: number): string {
  if (error instanceof undiciErrors.HeadersTimeoutError || error instanceof undiciErrors.BodyTimeoutError) {
    return `no answer within ${timeoutMs} ms`;
  }
  if (error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError')) {
    return `no answer within ${timeoutMs} ms`;
  }
  if (error instanceof Error) {
    const code = 'code' in error && typeof error.code === 'string' ? ` (${error.code})` : '';
    const cause = error.cause instanceof Error ? `: ${error.cause.message}` : '';
    // Other libraries' words: made visible text before they reach a report or a log.
    return displaySafe(`${error.message}${code}${cause}`);
  }
  return snippet(String(error));
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/**
 * Timestamps are epoch seconds in this window: before it, or after it (epoch milliseconds land
 * there), they are not the time of a measurement.
 */
export const MIN_TIMESTAMP = 946_684_800; // 2000-01-01T00:00:00Z
export const MAX_TIMESTAMP = 4_102_444_800; // 2100-01-01T00:00:00Z

// snippet already shows every character visibly; JSON.stringify on top would double its backslashes.
const seriesLabel = (name: string): string => `"${snippet(name, 80)}"`;

const shown = (value: unknown, max: number): string => (typeof value === 'number' ? String(value) : snippet(JSON.stringify(value) ?? String(value), max));

/**
 * Validates a `/render?format=json` body: `[{"target": string, "datapoints": [[value|null, ts], ...]}]`
 * with every timestamp epoch seconds, each later than the one before. Anything else is rejected
 * whole: a reply we cannot fully trust must not move a weight.
 */
export function parseRenderReply(text: string, shownUrl: string): Series[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (cause) {
    throw new GraphiteError(`Graphite at ${shownUrl} did not answer JSON`, { url: shownUrl, reply: text }, { cause });
  }
  if (!Array.isArray(doc)) {
    throw new GraphiteError(`Graphite at ${shownUrl} answered JSON that is not a list of series`, { url: shownUrl, reply: text });
  }
  const out: Series[] = [];
  for (let i = 0; i < doc.length; i++) {
    const item: unknown = doc[i];
    if (!isRecord(item) || typeof item.target !== 'string' || !Array.isArray(item.datapoints)) {
      throw new GraphiteError(`Graphite at ${shownUrl}: series #${i} lacks a string "target" and a "datapoints" list`, {
        url: shownUrl,
        reply: JSON.stringify(item) ?? '',
      });
    }
    const name = item.target;
    const points: unknown[] = item.datapoints;
    const values: (number | null)[] = new Array<number | null>(points.length);
    const timestamps: number[] = new Array<number>(points.length);
    let previous = -Infinity;
    for (let j = 0; j < points.length; j++) {
      const point = points[j];
      if (!Array.isArray(point) || point.length !== 2) {
        throw new GraphiteError(`Graphite at ${shownUrl}: series ${seriesLabel(name)} has a datapoint that is not [value, timestamp]`, {
          url: shownUrl,
          reply: JSON.stringify(point) ?? '',
        });
      }
      const value: unknown = point[0];
      const timestamp: unknown = point[1];
      if (typeof timestamp !== 'number' || !Number.isFinite(timestamp) || timestamp < MIN_TIMESTAMP || timestamp >= MAX_TIMESTAMP) {
        const hint = typeof timestamp === 'number' && timestamp >= MIN_TIMESTAMP * 1000 && timestamp < MAX_TIMESTAMP * 1000 ? ' (epoch milliseconds?)' : '';
        throw new GraphiteError(
          `Graphite at ${shownUrl}: series ${seriesLabel(name)} has timestamp ${shown(timestamp, 40)}${hint} at point #${j}; timestamps must be epoch seconds from ${MIN_TIMESTAMP} (2000) to ${MAX_TIMESTAMP} (2100)`,
          { url: shownUrl },
        );
      }
      if (timestamp <= previous) {
        throw new GraphiteError(
          `Graphite at ${shownUrl}: series ${seriesLabel(name)} has timestamp ${timestamp} at point #${j}, not later than ${previous} at point #${j - 1}; timestamps must increase`,
          { url: shownUrl },
        );
      }
      previous = timestamp;
      timestamps[j] = timestamp;
      if (value === null) {
        values[j] = null;
        continue;
      }
      if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > MAX_PLAUSIBLE_LOAD) {
        throw new GraphiteError(
          `Graphite at ${shownUrl}: series ${seriesLabel(name)} has value ${shown(value, 40)}; loads must be finite numbers in 0..${MAX_PLAUSIBLE_LOAD}`,
          { url: shownUrl },
        );
      }
      values[j] = value;
    }
    out.push({ name, values, timestamps });
  }
  return out;
}
