/**
 * A local stand-in for Grafana Cloud's Graphite HTTP ingestion (`POST /graphite/metrics`) in front of
 * the real carbon: it checks the request as that API documents it (Basic `<user>:<token>` or
 * `Bearer <user>:<token>`, a JSON list of `{name, interval, value, time}`), answers 401 to a wrong
 * token and `{"Invalid": n, "Published": n, "ValidationErrors": {...}}` otherwise, and writes every
 * valid point into carbon with the plaintext protocol, where graphite-web reads it back.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { closeHttpServer, listenOnLoopback } from './loopback-server.js';

export interface GraphiteIngest {
  /** The ingestion URL to configure as `history.http.url`. */
  readonly url: string;
  /** Requests answered, by status. */
  statuses(): readonly number[];
  stop(): Promise<void>;
}

const METRIC = /^[A-Za-z0-9_:%-]+(\.[A-Za-z0-9_:%-]+)*$/;

/** One point as the API documents it, or why not. */
function validate(item: unknown): { name: string; value: number; time: number } | string {
  if (typeof item !== 'object' || item === null) return 'not an object';
  const get = (key: string): unknown => Reflect.get(item, key);
  const name = get('name');
  if (typeof name !== 'string' || !METRIC.test(name)) return `bad name ${JSON.stringify(name)}`;
  const value = get('value');
  if (typeof value !== 'number' || !Number.isFinite(value)) return 'value is not a number';
  const time = get('time');
  if (typeof time !== 'number' || !Number.isInteger(time) || time < 1_000_000_000) return 'time is not epoch seconds';
  const interval = get('interval');
  if (typeof interval !== 'number' || !Number.isInteger(interval) || interval < 1) return 'interval is not a positive integer';
  return { name, value, time };
}

function toCarbon(port: number, lines: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('error', reject);
    socket.once('close', (hadError) => {
      if (!hadError) resolve();
    });
    socket.resume();
    socket.end(lines);
  });
}

export async function startGraphiteIngest(carbonPort: number, user: string, token: string): Promise<GraphiteIngest> {
  const statuses: number[] = [];
  const accepted = new Set([`Basic ${Buffer.from(`${user}:${token}`).toString('base64')}`, `Bearer ${user}:${token}`]);
  const answer = (res: ServerResponse, status: number, body: unknown): void => {
    statuses.push(status);
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  };
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
    if (req.method !== 'POST' || new URL(req.url ?? '/', 'http://x').pathname !== '/graphite/metrics') return answer(res, 404, { error: 'not found' });
    if (!accepted.has(req.headers.authorization ?? '')) return answer(res, 401, { error: 'authentication error: invalid authentication credentials' });
    if (!(req.headers['content-type'] ?? '').startsWith('application/json')) return answer(res, 400, { error: 'unsupported content-type' });
    let doc: unknown;
    try {
      doc = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      return answer(res, 400, { error: 'invalid json' });
    }
    if (!Array.isArray(doc)) return answer(res, 400, { error: 'expected a list of points' });
    const errors: Record<string, string> = {};
    let lines = '';
    doc.forEach((item: unknown, i) => {
      const point = validate(item);
      if (typeof point === 'string') errors[String(i)] = point;
      else lines += `${point.name} ${String(point.value)} ${point.time}\n`;
    });
    if (lines !== '') await toCarbon(carbonPort, lines);
    return answer(res, 200, { Invalid: Object.keys(errors).length, Published: doc.length - Object.keys(errors).length, ValidationErrors: errors });
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => answer(res, 500, { error: String(error) }));
  });
  const port = await listenOnLoopback(server, 'the ingestion stand-in');
  return {
    url: `http://127.0.0.1:${port}/graphite/metrics`,
    statuses: () => statuses,
    stop: () => closeHttpServer(server),
  };
}
