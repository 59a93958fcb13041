/**
 * Fault injectors for the fault matrix (test/integration/fault-*.test.ts), the security tests and
 * the soak (research/soak/run.ts). Everything sits on the real parts: the Graphite proxy forwards to
 * the real graphite-web and the socket proxy to a real HAProxy admin socket, and each turns into a
 * specific failure on demand. All listen on 127.0.0.1 free ports or in per-run temp directories.
 *
 * The CLI helpers every fault test needs live in ./cli.ts and are re-exported here.
 */
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createConnection, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import * as z from 'zod';
import type { CycleReport } from '../../functions/core/cycle.js';
import { PROMPT, promptsExpected } from '../../functions/core/haproxy-protocol.js';
import { emfDocumentsFor } from './emf.js';
import { makeTempDir, removeTempDir } from './processes.js';

export { REPO_ROOT, cliArgv, cliRuntimeDir, parseCycleReport, parseReports, runCli, runMain, singleReport, startCli, weightsAfter, writeConfigFile, type CliProcess } from './cli.js';
export { checkedReport, problemsOf } from './report.js';

/** Orders events across every proxy of this process, so tests can compare who came first. */
let sequence = 0;
const nextSequence = (): number => ++sequence;

// ---------------------------------------------------------------------------------------------
// Graphite fault proxy
// ---------------------------------------------------------------------------------------------

/** What the Graphite proxy does with the requests that arrive while it is set. */
export type GraphiteFault =
  | { readonly kind: 'pass' }
  /** The port is closed: connection refused. */
  | { readonly kind: 'refuse' }
  /** The connection is reset (RST) as soon as the request arrives. */
  | { readonly kind: 'reset' }
  /** Holds each request for `ms`, then does `then` (pass by default). */
  | { readonly kind: 'delay'; readonly ms: number; readonly then?: GraphiteFault }
  /** Answers HTTP `status` (with a Retry-After header when `retryAfter` is given) to the next `count` requests, then passes again. */
  | { readonly kind: 'status'; readonly status: number; readonly count: number; readonly retryAfter?: string }
  /** Answers 200 with this body. */
  | { readonly kind: 'body'; readonly body: string; readonly contentType?: string }
  /** Fetches the real reply and answers 200 with `rewrite(realBody)`. */
  | { readonly kind: 'rewrite'; readonly rewrite: (body: string) => string }
  /** Streams a 200 body of `bytes` bytes (a JSON list that never ends), with or without a Content-Length. */
  | { readonly kind: 'huge'; readonly bytes: number; readonly declareLength: boolean };

export interface GraphiteRequestRecord {
  readonly seq: number;
  /** When it arrived (performance.now() of the test process, in ms). */
  readonly at: number;
  /** The `target` query parameter. */
  readonly target: string | null;
  readonly fault: GraphiteFault['kind'];
}

export interface HugeBodyRecord {
  /** Bytes handed to the socket before the client went away (or all of them). */
  sent: number;
  /** Whether the whole body was written: false means the client stopped reading. */
  completed: boolean;
}

export interface GraphiteFaultProxy {
  /** Base URL to put in `graphite.url`. */
  readonly url: string;
  readonly requests: readonly GraphiteRequestRecord[];
  readonly hugeBodies: readonly HugeBodyRecord[];
  /** The `seq` of each request whose client went away while the proxy held it (a `delay`): it stopped waiting. */
  readonly abandoned: readonly number[];
  /** Failures to reach the real Graphite (a proxy problem, not a fault under test). */
  readonly upstreamErrors: readonly string[];
  setFault(fault: GraphiteFault): Promise<void>;
  /** Called as each request arrives, before the fault applies; returns an unsubscribe function. */
  onRequest(listener: (record: GraphiteRequestRecord) => void): () => void;
  /** Forgets the recorded requests and bodies. */
  clear(): void;
  close(): Promise<void>;
}

const HUGE_CHUNK = Buffer.from('[1000,1700000000],'.repeat(3640));

export async function startGraphiteFaultProxy(upstreamUrl: string): Promise<GraphiteFaultProxy> {
  const upstream = new URL(upstreamUrl);
  let fault: GraphiteFault = { kind: 'pass' };
  let statusLeft = 0;
  let closed = false;
  const requests: GraphiteRequestRecord[] = [];
  const hugeBodies: HugeBodyRecord[] = [];
  const abandoned: number[] = [];
  const upstreamErrors: string[] = [];
  const listeners = new Set<(record: GraphiteRequestRecord) => void>();
  const timers = new Set<NodeJS.Timeout>();

  const fetchUpstream = async (req: IncomingMessage): Promise<{ status: number; type: string; body: string }> => {
    const response = await fetch(new URL(req.url ?? '/', upstream), { signal: AbortSignal.timeout(30_000) });
    return { status: response.status, type: response.headers.get('content-type') ?? 'application/json', body: await response.text() };
  };

  const streamHuge = async (res: ServerResponse, bytes: number, declareLength: boolean): Promise<void> => {
    const record: HugeBodyRecord = { sent: 0, completed: false };
    hugeBodies.push(record);
    res.writeHead(200, { 'content-type': 'application/json', ...(declareLength ? { 'content-length': String(bytes) } : {}) });
    let gone = false;
    res.once('close', () => (gone = true));
    while (!gone && record.sent < bytes) {
      const chunk = HUGE_CHUNK.subarray(0, Math.min(HUGE_CHUNK.length, bytes - record.sent));
      const flushed = res.write(chunk);
      record.sent += chunk.length;
      if (!flushed) {
        await new Promise<void>((resolve) => {
          const done = (): void => {
            res.off('drain', done);
            res.off('close', done);
            resolve();
          };
          res.once('drain', done);
          res.once('close', done);
        });
      }
    }
    if (!gone) {
      record.completed = true;
      res.end();
    }
  };

  const apply = async (current: GraphiteFault, req: IncomingMessage, res: ServerResponse, record: GraphiteRequestRecord): Promise<void> => {
    switch (current.kind) {
      case 'pass': {
        const real = await fetchUpstream(req);
        res.writeHead(real.status, { 'content-type': real.type });
        res.end(real.body);
        return;
      }
      case 'refuse':
      case 'reset':
        req.socket.resetAndDestroy();
        return;
      case 'delay': {
        let gone = false;
        res.once('close', () => {
          gone = true;
          if (!res.writableFinished && !closed) abandoned.push(record.seq);
        });
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            timers.delete(timer);
            resolve();
          }, current.ms);
          timers.add(timer);
        });
        if (gone || closed) return;
        await apply(current.then ?? { kind: 'pass' }, req, res, record);
        return;
      }
      case 'status':
        res.writeHead(current.status, { 'content-type': 'text/plain', ...(current.retryAfter === undefined ? {} : { 'retry-after': current.retryAfter }) });
        res.end(`fault proxy: HTTP ${current.status}`);
        return;
      case 'body':
        res.writeHead(200, { 'content-type': current.contentType ?? 'application/json' });
        res.end(current.body);
        return;
      case 'rewrite': {
        const real = await fetchUpstream(req);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(current.rewrite(real.body));
        return;
      }
      case 'huge':
        await streamHuge(res, current.bytes, current.declareLength);
        return;
    }
  };

  const server = createHttpServer((req, res) => {
    res.on('error', () => undefined);
    let current = fault;
    if (current.kind === 'status') {
      if (statusLeft > 0) statusLeft--;
      else current = { kind: 'pass' };
    }
    const record: GraphiteRequestRecord = {
      seq: nextSequence(),
      at: performance.now(),
      target: new URL(req.url ?? '/', 'http://proxy').searchParams.get('target'),
      fault: current.kind,
    };
    requests.push(record);
    for (const listener of listeners) listener(record);
    apply(current, req, res, record).catch((error: unknown) => {
      upstreamErrors.push(error instanceof Error ? error.message : String(error));
      if (!res.headersSent) res.writeHead(599, { 'content-type': 'text/plain' });
      res.end('fault proxy: could not reach the real Graphite');
    });
  });

  let port = 0;
  const listen = (): Promise<void> =>
    new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: '127.0.0.1', port, exclusive: true }, () => {
        server.off('error', reject);
        const address = server.address();
        if (address !== null && typeof address === 'object') port = address.port;
        resolve();
      });
    });
  const stopListening = (): Promise<void> =>
    new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  await listen();

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    hugeBodies,
    abandoned,
    upstreamErrors,
    async setFault(next) {
      const wasRefusing = fault.kind === 'refuse';
      fault = next;
      statusLeft = next.kind === 'status' ? next.count : 0;
      if (next.kind === 'refuse' && !wasRefusing) await stopListening();
      // The port is ours again at once: nothing else listened on it while it was closed, unless
      // another process raced for it, in which case listen() fails loudly.
      if (next.kind !== 'refuse' && wasRefusing) await listen();
    },
    onRequest(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    clear() {
      requests.length = 0;
      hugeBodies.length = 0;
      abandoned.length = 0;
      upstreamErrors.length = 0;
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      if (server.listening) await stopListening();
    },
  };
}

/** The series of a graphite-web JSON reply, enough to rewrite it. */
const renderedSchema = z.array(z.looseObject({ target: z.string(), datapoints: z.array(z.tuple([z.number().nullable(), z.number()])) }));
export type RenderedSeries = z.infer<typeof renderedSchema>[number];

/** Parses a real graphite-web reply, rewrites its series and serialises it again. */
export function rewriteSeries(body: string, edit: (series: RenderedSeries[]) => unknown[]): string {
  return JSON.stringify(edit(renderedSchema.parse(JSON.parse(body))));
}

/**
 * Puts a raw JSON token (e.g. `NaN`, `-5`, `1e309`, `"NaN"`) in place of every non-null value of
 * one series: tokens JSON.stringify cannot write, such as NaN, get through this way.
 */
export function withRawValue(body: string, target: string, token: string): string {
  const marker = '"__fault_proxy_value__"';
  const text = rewriteSeries(body, (series) =>
    series.map((s) => (s.target === target ? { ...s, datapoints: s.datapoints.map(([v, t]) => [v === null ? null : '__fault_proxy_value__', t]) } : s)),
  );
  if (!text.includes(marker)) throw new Error(`series ${target} has no non-null value to replace in ${body.slice(0, 200)}`);
  return text.replaceAll(marker, token);
}

/** Puts a raw JSON token (e.g. `"1700000000"`, `null`, `{}`) in place of every timestamp of one series. */
export function withRawTimestamp(body: string, target: string, token: string): string {
  const marker = '"__fault_proxy_timestamp__"';
  const text = rewriteSeries(body, (series) => series.map((s) => (s.target === target ? { ...s, datapoints: s.datapoints.map(([v]) => [v, '__fault_proxy_timestamp__']) } : s)));
  if (!text.includes(marker)) throw new Error(`series ${target} has no datapoint in ${body.slice(0, 200)}`);
  return text.replaceAll(marker, token);
}

// ---------------------------------------------------------------------------------------------
// Runtime socket faults
// ---------------------------------------------------------------------------------------------

export interface SilentSocket {
  readonly path: string;
  /** Connections accepted so far. */
  readonly accepted: () => number;
  close(): Promise<void>;
}

/** A Unix socket that accepts every connection, reads everything and never answers. */
export async function startSilentSocket(): Promise<SilentSocket> {
  const dir = makeTempDir('hw-silent');
  const path = join(dir, 'silent.sock');
  const open = new Set<Socket>();
  let accepted = 0;
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    accepted++;
    open.add(socket);
    socket.on('data', () => undefined);
    socket.on('error', () => undefined);
    socket.on('close', () => open.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  return {
    path,
    accepted: () => accepted,
    async close() {
      for (const socket of open) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      removeTempDir(dir);
    },
  };
}

/** What the socket proxy does with one connection, decided once the client's request is complete. */
export type ConnectionFault =
  | { readonly kind: 'pass' }
  /** Closes the connection without forwarding anything. */
  | { readonly kind: 'drop' }
  /** Forwards nothing and never answers; the connection stays open. */
  | { readonly kind: 'hang' }
  /** Forwards the request, waits for HAProxy's whole reply, then closes without passing any of it. */
  | { readonly kind: 'close-before-reply' }
  /** Forwards the request and passes only the first `bytes` bytes of the reply before closing. */
  | { readonly kind: 'close-after-reply-bytes'; readonly bytes: number }
  /** Forwards only the first `commands` commands of the batch, then closes without a reply. */
  | { readonly kind: 'cut-request'; readonly commands: number }
  /** Forwards the request and passes `rewrite(reply)` instead of HAProxy's reply (a compromised or fake runtime API). */
  | { readonly kind: 'rewrite-reply'; readonly rewrite: (reply: string) => string }
  /**
   * Passes everything, but holds HAProxy's reply for `ms` first; with `untilAnotherConnection`
   * the hold ends as soon as another client is connected at the same time (a barrier that shows
   * overlap, whichever of the two connected first).
   */
  | { readonly kind: 'delay-reply'; readonly ms: number; readonly untilAnotherConnection?: boolean };

export type ConnectionPolicy = (request: string, index: number) => ConnectionFault;

export interface ConnectionRecord {
  readonly index: number;
  /** Global sequence number of the accept. */
  readonly openedAt: number;
  /** Global sequence number of the close towards the client. */
  closedAt: number | undefined;
  fault: ConnectionFault['kind'] | undefined;
  /** Every byte the client sent. */
  request: string;
  /** What reached HAProxy (empty when nothing was forwarded). */
  forwarded: string;
  /** Bytes of HAProxy's reply passed back to the client. */
  replyBytes: number;
  upstreamError: string | undefined;
}

export interface SocketProxy {
  /** The endpoint to configure instead of the real admin socket. */
  readonly path: string;
  readonly upstream: string;
  readonly connections: readonly ConnectionRecord[];
  /** One fault for every connection, or a policy that decides per connection. */
  setFault(fault: ConnectionFault | ConnectionPolicy): void;
  /** Runs before a connection's request is forwarded (e.g. to change HAProxy in between). */
  setBeforeForward(hook: ((request: string, index: number) => Promise<void>) | undefined): void;
  clear(): void;
  close(): Promise<void>;
}

/** How the weighter's socket relay opens a batch: `prompt` makes the session interactive. */
const INTERACTIVE_PREFIX = 'prompt\n';

/** The commands of a recorded request, without the `prompt` line and the final newline. */
export function commandsOf(request: string): string[] {
  const line = (request.startsWith(INTERACTIVE_PREFIX) ? request.slice(INTERACTIVE_PREFIX.length) : request).replace(/\n$/, '');
  return line === '' ? [] : line.split('; ');
}

/** A batch is complete once its command line has ended (after the `prompt` line, if any). */
function requestComplete(request: string): boolean {
  const from = request.startsWith(INTERACTIVE_PREFIX) ? INTERACTIVE_PREFIX.length : 0;
  return request.indexOf('\n', from) >= 0;
}

function countPrompts(text: string): number {
  let count = 0;
  for (let at = text.indexOf(PROMPT); at >= 0; at = text.indexOf(PROMPT, at + PROMPT.length)) count++;
  return count;
}

/**
 * Sends `request` to the real socket and resolves with the whole reply: an interactive batch is
 * complete once one prompt per command (and one for `prompt`) has arrived, and only then is the
 * connection closed; a non-interactive one is complete when HAProxy closes after it.
 */
function roundTrip(path: string, request: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const interactive = request.startsWith(INTERACTIVE_PREFIX);
    const expected = promptsExpected(commandsOf(request));
    let text = '';
    let done = false;
    const upstream = createConnection({ path });
    upstream.on('data', (chunk: Buffer) => {
      if (done) return;
      chunks.push(chunk);
      if (!interactive) return;
      text += chunk.toString('utf8');
      if (countPrompts(text) >= expected) {
        done = true;
        upstream.end();
        resolve(Buffer.concat(chunks));
      }
    });
    upstream.once('error', (error) => {
      if (!done) reject(error);
    });
    upstream.once('close', (hadError) => {
      if (!hadError && !done) resolve(Buffer.concat(chunks));
    });
    if (interactive) upstream.write(request);
    else upstream.end(request);
  });
}

/** A Unix socket in front of a real HAProxy runtime socket that records every connection and can fail it. */
export async function startSocketProxy(upstream: string): Promise<SocketProxy> {
  const dir = makeTempDir('hw-sockproxy');
  const path = join(dir, 'proxy.sock');
  let policy: ConnectionPolicy = () => ({ kind: 'pass' });
  let beforeForward: ((request: string, index: number) => Promise<void>) | undefined;
  const connections: ConnectionRecord[] = [];
  const open = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const onConnect = new Set<() => void>();
  let closed = false;

  const hold = (ms: number, untilAnotherConnection: boolean, self: ConnectionRecord): Promise<void> =>
    new Promise((resolve) => {
      // Another client connected already and is still here: the overlap exists, nothing to wait for.
      if (untilAnotherConnection && connections.some((r) => r !== self && r.closedAt === undefined)) {
        resolve();
        return;
      }
      const done = (): void => {
        clearTimeout(timer);
        timers.delete(timer);
        onConnect.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      timers.add(timer);
      if (untilAnotherConnection) onConnect.add(done);
    });

  const finish = (client: Socket, record: ConnectionRecord, reply?: Buffer): void => {
    record.closedAt = nextSequence();
    if (reply === undefined) {
      client.end();
      return;
    }
    record.replyBytes = reply.length;
    client.end(reply);
  };

  const serve = async (client: Socket, record: ConnectionRecord): Promise<void> => {
    const fault = policy(record.request, record.index);
    record.fault = fault.kind;
    if (fault.kind === 'hang') return;
    if (fault.kind === 'drop') {
      finish(client, record);
      return;
    }
    if (beforeForward !== undefined) await beforeForward(record.request, record.index);
    let forwarded = record.request;
    if (fault.kind === 'cut-request') {
      const prefix = record.request.startsWith(INTERACTIVE_PREFIX) ? INTERACTIVE_PREFIX : '';
      forwarded = `${prefix}${commandsOf(record.request).slice(0, fault.commands).join('; ')}\n`;
    }
    record.forwarded = forwarded;
    let reply: Buffer;
    try {
      reply = await roundTrip(upstream, forwarded);
    } catch (error) {
      // The real socket is gone (e.g. HAProxy reloading): the client sees the connection close.
      record.upstreamError = error instanceof Error ? error.message : String(error);
      finish(client, record);
      return;
    }
    switch (fault.kind) {
      case 'pass':
        finish(client, record, reply);
        return;
      case 'delay-reply':
        await hold(fault.ms, fault.untilAnotherConnection === true, record);
        if (!closed) finish(client, record, reply);
        return;
      case 'close-before-reply':
      case 'cut-request':
        finish(client, record);
        return;
      case 'close-after-reply-bytes':
        finish(client, record, reply.subarray(0, fault.bytes));
        return;
      case 'rewrite-reply':
        finish(client, record, Buffer.from(fault.rewrite(reply.toString('utf8'))));
        return;
    }
  };

  const server = createServer({ allowHalfOpen: true }, (client) => {
    const record: ConnectionRecord = {
      index: connections.length,
      openedAt: nextSequence(),
      closedAt: undefined,
      fault: undefined,
      request: '',
      forwarded: '',
      replyBytes: 0,
      upstreamError: undefined,
    };
    connections.push(record);
    for (const wake of [...onConnect]) wake();
    open.add(client);
    client.on('error', () => undefined);
    client.on('close', () => {
      open.delete(client);
      record.closedAt ??= nextSequence();
    });
    // The relay keeps its side open until every reply is in: a request is served once its
    // command line is complete (or the client half-closes, as socat does).
    let served = false;
    const serveOnce = (): void => {
      if (served) return;
      served = true;
      serve(client, record).catch((error: unknown) => {
        record.upstreamError = error instanceof Error ? error.message : String(error);
        client.destroy();
      });
    };
    client.on('data', (chunk: Buffer) => {
      record.request += chunk.toString('utf8');
      if (requestComplete(record.request)) serveOnce();
    });
    client.once('end', serveOnce);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });

  return {
    path,
    upstream,
    connections,
    setFault(fault) {
      policy = typeof fault === 'function' ? fault : () => fault;
    },
    setBeforeForward(hook) {
      beforeForward = hook;
    },
    clear() {
      connections.length = 0;
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      for (const socket of open) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      removeTempDir(dir);
    },
  };
}

/** Whether a recorded request is a write batch (as opposed to an observation or a read-back). */
export const isWriteBatch = (request: string): boolean => commandsOf(request).some((c) => c.startsWith('set server '));

/** How many commands of a batch come up to and including its first `set server`. */
export const commandsThroughFirstWrite = (request: string): number => commandsOf(request).findIndex((c) => c.startsWith('set server ')) + 1;

// ---------------------------------------------------------------------------------------------
// The Lambda's metrics for a report
// ---------------------------------------------------------------------------------------------

export interface EmittedMetrics {
  /** The totals document (service dimension): CycleDuration, ServersChanged, LoadBalancersFailed, GraphiteFailures ... */
  readonly totals: Record<string, unknown>;
  /** The load balancers named by a LoadBalancerFailed metric. */
  readonly failedLoadBalancers: readonly unknown[];
}

/**
 * The CloudWatch metrics the Lambda would emit for this very report (the CLI has none): runs the
 * Lambda's own emitCycleMetrics, flushes them as the handler's middleware does, and captures the EMF
 * documents Powertools prints.
 */
export function lambdaMetricsFor(report: CycleReport): EmittedMetrics {
  const docs = emfDocumentsFor(report, { namespace: 'HaproxyWeighterFaults', serviceName: 'haproxy-weighter' });
  const totals = docs.find((d) => 'ServersChanged' in d);
  if (totals === undefined) throw new Error(`no totals document among ${docs.length} EMF document(s)`);
  return { totals, failedLoadBalancers: docs.filter((d) => 'LoadBalancerFailed' in d).map((d) => d['LoadBalancer']) };
}

// ---------------------------------------------------------------------------------------------
// Hostile input
// ---------------------------------------------------------------------------------------------

/** Names an attacker (or a broken pipeline) could put where a backend or server name belongs. */
export const HOSTILE_NAMES: readonly string[] = [
  's1;shutdown sessions',
  's1; set server be_ingest/s2 weight 0',
  '$(reboot)',
  '`id`',
  's1\nshutdown sessions server be_ingest/s1',
  's1\r\nshow info',
  's1\u0000',
  '../../etc/passwd',
  '..%2f..%2fetc',
  's1 ',
  ' s1',
  'ѕ1',
  's１',
  's1\u200b',
  'be_ingest/s1',
  's1|nc 127.0.0.1 9',
  "s1' OR '1'='1",
  '${IFS}',
  'x'.repeat(1025),
  'a'.repeat(10_000),
  '',
];

/**
 * Characters no output may show raw, each with the visible escape the outputs use instead: bidi
 * controls (display spoofing: `s1<U+202E>xam` shows as `s1max`), zero-width and other invisible
 * characters, C0 and C1 controls (line forging, terminal escapes), separators, a lone surrogate.
 */
export const HOSTILE_CHARACTERS: readonly (readonly [label: string, raw: string, escaped: string])[] = [
  ['right-to-left override U+202E', '\u202e', '\\u{202E}'],
  ['left-to-right override U+202D', '\u202d', '\\u{202D}'],
  ['right-to-left isolate U+2067', '\u2067', '\\u{2067}'],
  ['pop directional isolate U+2069', '\u2069', '\\u{2069}'],
  ['right-to-left mark U+200F', '\u200f', '\\u{200F}'],
  ['arabic letter mark U+061C', '\u061c', '\\u{061C}'],
  ['zero-width space U+200B', '\u200b', '\\u{200B}'],
  ['zero-width joiner U+200D', '\u200d', '\\u{200D}'],
  ['word joiner U+2060', '\u2060', '\\u{2060}'],
  ['byte order mark U+FEFF', '\ufeff', '\\u{FEFF}'],
  ['soft hyphen U+00AD', '\u00ad', '\\xad'],
  ['Hangul filler U+3164', '\u3164', '\\u{3164}'],
  ['tag letter U+E0041', '\u{E0041}', '\\u{E0041}'],
  ['line separator U+2028', '\u2028', '\\u{2028}'],
  ['paragraph separator U+2029', '\u2029', '\\u{2029}'],
  ['escape (ANSI clear screen)', '\u001b', '\\x1b'],
  ['C1 control sequence introducer U+009B', '\u009b', '\\x9b'],
  ['NUL', '\u0000', '\\x00'],
  ['DEL', '\u007f', '\\x7f'],
  ['backspace', '\b', '\\x08'],
  ['carriage return', '\r', '\\r'],
  ['newline', '\n', '\\n'],
  ['lone surrogate half U+D800', '\ud800', '\\u{D800}'],
];

/** The hostile characters `text` shows raw, by label (a newline counts unless `lines` allows line breaks). */
export function rawHostileCharacters(text: string, options: { readonly lines?: boolean } = {}): string[] {
  // Half of a surrogate pair is a lone surrogate only when its other half is missing.
  const lone = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
  const shows = (raw: string): boolean => (raw === '\ud800' ? lone.test(text) : text.includes(raw));
  const found = HOSTILE_CHARACTERS.filter(([, raw]) => !(options.lines === true && raw === '\n') && shows(raw)).map(([label]) => label);
  // A lone surrogate written out as UTF-8 becomes U+FFFD.
  if (text.includes('\ufffd')) found.push('replacement character U+FFFD (a lone surrogate written raw)');
  return found;
}

