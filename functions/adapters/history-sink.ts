import { createConnection } from 'node:net';
import type { Dispatcher } from 'undici';
import type { HistoryConfig } from '../core/config.js';
import { displaySafe } from '../core/display.js';
import { HistoryError, snippet } from '../core/errors.js';
import type { HistoryPoint, HistorySink } from '../core/history.js';
import { authHeaders } from './http-auth.js';

/**
 * Where the weight history goes: carbon's plaintext protocol over TCP, or Grafana Cloud's
 * Graphite HTTP ingestion API. One attempt per cycle: the next cycle sends the state again, and
 * a history that cannot be sent must not hold the cycle (nor the run lock) for long.
 */

export interface HistorySinkOptions {
  /** Where the secret the HTTP auth names is read from. */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Seconds between cycles: the `interval` of each point sent over HTTP, unless the config sets one. */
  readonly intervalSeconds: number;
  /** For unit tests: a dispatcher (undici MockAgent); otherwise an Agent of its own per send, closed after it. */
  readonly dispatcher?: Dispatcher;
}

/** A metric path as carbon's line protocol takes it: no space, no control character, no empty node. */
const LINE_PATH = /^[A-Za-z0-9_:%-]+(\.[A-Za-z0-9_:%-]+)*$/;

function checkPoint(p: HistoryPoint): void {
  if (!LINE_PATH.test(p.path) || !Number.isFinite(p.value) || !Number.isInteger(p.timestamp) || p.timestamp < 0) {
    throw new HistoryError(`refusing history point ${JSON.stringify(snippet(p.path, 120))} = ${String(p.value)} at ${String(p.timestamp)}: not a plain metric line`);
  }
}

/** carbon's plaintext protocol: one `<path> <value> <timestamp>` line per point. */
export function carbonLines(points: readonly HistoryPoint[]): string {
  return points
    .map((p) => {
      checkPoint(p);
      return `${p.path} ${String(p.value)} ${p.timestamp}\n`;
    })
    .join('');
}

/**
 * carbon's line receiver answers nothing: the points are taken once the connection has carried
 * them and closed cleanly (carbon closes its side when ours ends). A refused or reset connection,
 * or one that does not close in time, is an error.
 */
export function createCarbonSink(config: NonNullable<HistoryConfig['carbon']>): HistorySink {
  const destination = `carbon at ${config.host}:${config.port}`;
  return {
    destination,
    send: (points) =>
      new Promise<void>((resolve, reject) => {
        let payload: string;
        try {
          payload = carbonLines(points);
        } catch (error) {
          reject(error instanceof Error ? error : new HistoryError(String(error)));
          return;
        }
        if (payload === '') {
          resolve();
          return;
        }
        const host = config.host.startsWith('[') ? config.host.slice(1, -1) : config.host;
        const socket = createConnection({ host, port: config.port });
        let settled = false;
        const fail = (message: string, cause?: unknown): void => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          socket.destroy();
          reject(new HistoryError(`${destination}: ${message}`, {}, { cause }));
        };
        const timer = setTimeout(() => fail(`the points were not taken within ${config.timeoutMs} ms`), config.timeoutMs);
        socket.on('error', (error: NodeJS.ErrnoException) => fail(error.code ?? displaySafe(error.message), error));
        socket.on('close', (hadError) => {
          if (hadError || settled) return;
          settled = true;
          clearTimeout(timer);
          resolve();
        });
        // Carbon sends nothing; reading keeps the socket flowing until it closes.
        socket.resume();
        socket.end(payload);
      }),
  };
}

/** The body Grafana Cloud's Graphite ingestion takes: a JSON list of points. */
export function grafanaBody(points: readonly HistoryPoint[], intervalSeconds: number): string {
  return JSON.stringify(
    points.map((p) => {
      checkPoint(p);
      return { name: p.path, interval: intervalSeconds, value: p.value, time: p.timestamp, mtype: 'gauge', tags: [] };
    }),
  );
}

const MAX_REPLY_BYTES = 64 * 1024;

/** HTTP/1.1 only, as the Graphite client: the bundles leave undici's HTTP/2 client out. */
const newAgent = (timeoutMs: number): Promise<Dispatcher> => import('undici').then(({ default: { Agent } }) => new Agent({ allowH2: false, connect: { timeout: timeoutMs } }));

/**
 * Grafana Cloud's Graphite HTTP ingestion: `POST <url>` (https://<stack>.grafana.net/graphite/metrics)
 * with a JSON list of `{name, interval, value, time, mtype, tags}`, authenticated with Basic
 * `<instance id>:<token>` or `Authorization: Bearer <instance id>:<token>`. It answers 200 with
 * `{"Invalid": n, "Published": n, "ValidationErrors": {...}}`; a point it refused is an error.
 */
export function createHttpHistorySink(config: NonNullable<HistoryConfig['http']>, options: HistorySinkOptions): HistorySink {
  const url = new URL(config.url);
  const destination = `the Graphite HTTP API at ${url.origin}${url.pathname}`;
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json', ...authHeaders(config.auth, options.env, 'history.http.auth') };
  // The API takes whole seconds of at least 1; `run --interval 0.5` rounds up.
  const interval = config.intervalSeconds ?? Math.max(1, Math.round(options.intervalSeconds));
  return {
    destination,
    async send(points) {
      if (points.length === 0) return;
      const body = grafanaBody(points, interval);
      // One connection per cycle, closed after it: nothing stays open between cycles. undici is
      // loaded with the first send (CommonJS: its exports are the dynamic import's default).
      const dispatcher = options.dispatcher ?? (await newAgent(config.timeoutMs));
      let text: string;
      let statusCode: number;
      try {
        const response = await dispatcher.request({
          origin: url.origin,
          path: `${url.pathname}${url.search}`,
          method: 'POST',
          headers,
          body,
          headersTimeout: config.timeoutMs,
          bodyTimeout: config.timeoutMs,
          signal: AbortSignal.timeout(config.timeoutMs),
        });
        statusCode = response.statusCode;
        text = await readCapped(response.body);
      } catch (error) {
        const why = error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError') ? `no answer within ${config.timeoutMs} ms` : displaySafe(error instanceof Error ? error.message : String(error));
        throw new HistoryError(`${destination}: ${why}`, {}, { cause: error });
      } finally {
        if (options.dispatcher === undefined) await dispatcher.close();
      }
      if (statusCode === 401 || statusCode === 403) {
        throw new HistoryError(`${destination} answered HTTP ${statusCode}: check the token (history.http.auth) and that its access policy has the metrics:write scope`, { reply: text });
      }
      if (statusCode < 200 || statusCode >= 300) {
        throw new HistoryError(`${destination} answered HTTP ${statusCode}${text === '' ? '' : `: ${snippet(text, 160)}`}`, { reply: text });
      }
      const invalid = invalidCount(text);
      if (invalid > 0) throw new HistoryError(`${destination} refused ${invalid} of ${points.length} point(s): ${snippet(text, 200)}`, { reply: text });
    },
  };
}

async function readCapped(body: Dispatcher.ResponseData['body']): Promise<string> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body) {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
    total += buf.length;
    if (total > MAX_REPLY_BYTES) {
      body.destroy();
      break;
    }
    chunks.push(buf);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** `Invalid` of Grafana's answer; 0 when the answer says nothing of it. */
function invalidCount(text: string): number {
  try {
    const doc: unknown = JSON.parse(text);
    const invalid: unknown = typeof doc === 'object' && doc !== null ? Reflect.get(doc, 'Invalid') : undefined;
    return typeof invalid === 'number' && Number.isFinite(invalid) ? invalid : 0;
  } catch {
    return 0;
  }
}

/** The sink a configuration names, or undefined without `history`. Throws ConfigError for a secret missing from the environment. */
export function createHistorySink(config: HistoryConfig | undefined, options: HistorySinkOptions): HistorySink | undefined {
  if (config === undefined) return undefined;
  if (config.carbon !== undefined) return createCarbonSink(config.carbon);
  if (config.http !== undefined) return createHttpHistorySink(config.http, options);
  return undefined;
}
