/**
 * Starts a real Graphite for tests: carbon-cache (Debian graphite-carbon) receiving the plaintext
 * protocol, and graphite-web (Debian graphite-web, Django) served by `django-admin runserver`,
 * both on free loopback ports, with every file in one temp directory and a 10 s retention.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import * as z from 'zod';
import { freePorts, makeTempDir, processListensOn, removeTempDir, runCommand, spawnService, waitFor, type ServiceProcess } from './processes.js';

export const CARBON_CACHE_BIN = '/usr/bin/carbon-cache';
export const DJANGO_ADMIN_BIN = '/usr/bin/django-admin';

/** Seconds per point of the retention schema (`10s:1d`). */
export const GRAPHITE_RESOLUTION_SECONDS = 10;

export interface GraphitePoint {
  readonly path: string;
  readonly value: number;
  /** Unix seconds; now by default. */
  readonly timestamp?: number;
}

const seriesSchema = z.object({
  target: z.string(),
  datapoints: z.array(z.tuple([z.number().nullable(), z.number()])),
  tags: z.record(z.string(), z.unknown()).optional(),
});
const renderSchema = z.array(seriesSchema);

export type GraphiteSeries = z.infer<typeof seriesSchema>;

export interface RenderWindow {
  /** Graphite `from` (e.g. `-1h`, or unix seconds); `-1h` by default. */
  readonly from?: string | number;
  /** Graphite `until`; `now` by default. */
  readonly until?: string | number;
}

/** What tests need to reach a Graphite: serialisable, so vitest can `provide` it. */
export interface GraphiteEndpoint {
  /** Base URL of graphite-web, e.g. `http://127.0.0.1:41781`. */
  readonly url: string;
  /** carbon-cache plaintext (line) receiver on 127.0.0.1. */
  readonly carbonPort: number;
}

export interface GraphiteClient extends GraphiteEndpoint {
  /** Sends points with the plaintext protocol over one TCP connection. */
  write(points: readonly GraphitePoint[]): Promise<void>;
  /** `/render?target=...&format=json`, validated. */
  render(target: string, window?: RenderWindow): Promise<GraphiteSeries[]>;
  /** Polls /render until `predicate` holds and returns the series that satisfied it. */
  waitForSeries(target: string, predicate: (series: GraphiteSeries[]) => boolean, timeoutMs?: number, window?: RenderWindow): Promise<GraphiteSeries[]>;
}

export interface GraphiteHandle extends GraphiteClient {
  readonly dir: string;
  readonly carbonPid: number;
  readonly webPid: number;
  /** Kills carbon-cache and graphite-web, waits for both to exit and removes the temp dir. */
  stop(): Promise<void>;
}

/** Metric paths end up in a line protocol: no whitespace, no control characters. */
const METRIC_PATH = /^[A-Za-z0-9_.:-]{1,512}$/;
const START_ATTEMPTS = 3;
const DEFAULT_WAIT_MS = 20_000;

function formatPoint(point: GraphitePoint, now: number): string {
  if (!METRIC_PATH.test(point.path)) throw new Error(`invalid metric path: ${JSON.stringify(point.path)}`);
  const timestamp = point.timestamp ?? now;
  if (!Number.isInteger(timestamp) || timestamp < 0) throw new Error(`timestamp must be whole unix seconds, got ${timestamp}`);
  return `${point.path} ${String(point.value)} ${timestamp}\n`;
}

async function sendLines(port: number, payload: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.setTimeout(10_000, () => socket.destroy(new Error(`carbon on port ${port} did not take the points in time`)));
    socket.once('error', (error) => reject(new Error(`could not write to carbon on port ${port}: ${error.message}`, { cause: error })));
    socket.once('close', (hadError) => {
      if (!hadError) resolve();
    });
    socket.end(payload);
  });
}

function renderUrl(base: string, target: string, window: RenderWindow): string {
  const url = new URL('/render', base);
  url.searchParams.set('target', target);
  url.searchParams.set('from', String(window.from ?? '-1h'));
  url.searchParams.set('until', String(window.until ?? 'now'));
  url.searchParams.set('format', 'json');
  return url.toString();
}

async function fetchRender(base: string, target: string, window: RenderWindow = {}): Promise<GraphiteSeries[]> {
  const url = renderUrl(base, target, window);
  const response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  const body = await response.text();
  if (!response.ok) throw new Error(`GET ${url} answered ${response.status}: ${body.slice(0, 300)}`);
  return renderSchema.parse(JSON.parse(body));
}

/** A client for a Graphite someone else started (e.g. the one from the vitest global setup). */
export function connectGraphite(endpoint: GraphiteEndpoint): GraphiteClient {
  const render = (target: string, window?: RenderWindow): Promise<GraphiteSeries[]> => fetchRender(endpoint.url, target, window);
  return {
    url: endpoint.url,
    carbonPort: endpoint.carbonPort,
    write: async (points) => {
      const now = Math.floor(Date.now() / 1000);
      const payload = points.map((p) => formatPoint(p, now)).join('');
      if (payload !== '') await sendLines(endpoint.carbonPort, payload);
    },
    render,
    waitForSeries: (target, predicate, timeoutMs = DEFAULT_WAIT_MS, window = {}) =>
      waitFor(
        `Graphite series for ${target}`,
        async () => {
          const series = await render(target, window);
          return predicate(series) ? series : undefined;
        },
        { timeoutMs, intervalMs: 200 },
      ),
  };
}

/** The start of the 10 s bucket a timestamp falls in, as Graphite reports it. */
export function bucketOf(timestamp: number): number {
  return Math.floor(timestamp / GRAPHITE_RESOLUTION_SECONDS) * GRAPHITE_RESOLUTION_SECONDS;
}

/** The value a series holds at a timestamp's bucket (`null` = no point, `undefined` = outside the window). */
export function valueAt(series: GraphiteSeries, timestamp: number): number | null | undefined {
  const bucket = bucketOf(timestamp);
  return series.datapoints.find(([, t]) => t === bucket)?.[0];
}

function seriesName(series: GraphiteSeries): string {
  const name = series.tags?.['name'];
  return typeof name === 'string' ? name : series.target;
}

/**
 * Writes points and waits until `target` renders every one of them: for each metric path and 10 s
 * bucket, the last value written is what a series named after that path (its `target` or its
 * `name` tag) holds. `target` defaults to the written paths joined in a `group()`; pass a wildcard
 * over a test's unique prefix to also see series written earlier.
 */
export async function writeAndWait(graphite: GraphiteClient, points: readonly GraphitePoint[], target?: string, timeoutMs = DEFAULT_WAIT_MS): Promise<GraphiteSeries[]> {
  const now = Math.floor(Date.now() / 1000);
  const stamped = points.map((p) => ({ path: p.path, value: p.value, timestamp: p.timestamp ?? now }));
  if (stamped.length === 0) throw new Error('writeAndWait needs at least one point');
  const expected = new Map<string, { path: string; timestamp: number; value: number }>();
  for (const p of stamped) expected.set(`${p.path} ${bucketOf(p.timestamp)}`, p);
  const paths = [...new Set(stamped.map((p) => p.path))];
  const buckets = stamped.map((p) => bucketOf(p.timestamp));
  const window = { from: Math.min(...buckets) - 1, until: Math.max(...buckets) + GRAPHITE_RESOLUTION_SECONDS };
  await graphite.write(stamped);
  return graphite.waitForSeries(
    target ?? (paths.length === 1 && paths[0] !== undefined ? paths[0] : `group(${paths.join(',')})`),
    (series) =>
      [...expected.values()].every((want) =>
        series.some((s) => {
          if (seriesName(s) !== want.path && s.target !== want.path) return false;
          const got = valueAt(s, want.timestamp);
          return got === want.value || (Number.isNaN(want.value) && got === null);
        }),
      ),
    timeoutMs,
    window,
  );
}

/**
 * Writes `<prefix>.<server>.<metric>` = load for the last three 10 s buckets of every server, so that
 * both the leading edge and the average over a window of a minute or more are exactly `load`, and
 * waits until Graphite renders them. Returns the `aliasByNode` target that names series by server.
 */
export async function feedLoads(graphite: GraphiteClient, prefix: string, loads: Readonly<Record<string, number>>, metric = 'load'): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const points = Object.entries(loads).flatMap(([server, value]) => [0, 10, 20].map((ago) => ({ path: `${prefix}.${server}.${metric}`, value, timestamp: now - ago })));
  await writeAndWait(graphite, points, `${prefix}.*.${metric}`);
  return `aliasByNode(${prefix}.*.${metric}, ${prefix.split('.').length})`;
}

/** A metric prefix no other test uses, for tests that share one Graphite. */
export function uniquePrefix(label: string): string {
  const clean = label.replace(/[^A-Za-z0-9_]/g, '_').slice(0, 40);
  return `hwtest.${clean}.p${process.pid}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
}

interface GraphitePorts {
  readonly line: number;
  readonly pickle: number;
  readonly cacheQuery: number;
  readonly web: number;
}

function carbonConf(dir: string, ports: GraphitePorts): string {
  return `[cache]
STORAGE_DIR = ${join(dir, 'storage')}/
LOCAL_DATA_DIR = ${join(dir, 'storage', 'whisper')}/
CONF_DIR = ${join(dir, 'conf')}/
LOG_DIR = ${join(dir, 'log', 'carbon')}/
PID_DIR = ${join(dir, 'run')}/
USER =
ENABLE_LOGROTATION = False
MAX_CACHE_SIZE = inf
MAX_UPDATES_PER_SECOND = 100000
MAX_CREATES_PER_MINUTE = 100000
MIN_TIMESTAMP_RESOLUTION = 1
LINE_RECEIVER_INTERFACE = 127.0.0.1
LINE_RECEIVER_PORT = ${ports.line}
ENABLE_UDP_LISTENER = False
PICKLE_RECEIVER_INTERFACE = 127.0.0.1
PICKLE_RECEIVER_PORT = ${ports.pickle}
CACHE_QUERY_INTERFACE = 127.0.0.1
CACHE_QUERY_PORT = ${ports.cacheQuery}
USE_FLOW_CONTROL = True
LOG_UPDATES = False
LOG_CREATES = False
LOG_CACHE_HITS = False
LOG_LISTENER_CONN_SUCCESS = False
CACHE_WRITE_STRATEGY = sorted
WHISPER_AUTOFLUSH = False
# Carbon's own metrics would only add noise to a shared test instance.
CARBON_METRIC_INTERVAL = 0
`;
}

const STORAGE_SCHEMAS = `[default]
pattern = .*
retentions = ${GRAPHITE_RESOLUTION_SECONDS}s:1d
`;

const STORAGE_AGGREGATION = `[default]
pattern = .*
xFilesFactor = 0
aggregationMethod = average
`;

/** A `local_settings` for graphite.settings, which imports it by the GRAPHITE_SETTINGS_MODULE name. */
function webSettings(dir: string, ports: GraphitePorts): string {
  const py = (value: string): string => JSON.stringify(value);
  const whisper = join(dir, 'storage', 'whisper');
  return `# Generated by test/harness/graphite.ts: every path inside ${dir}.
SECRET_KEY = 'haproxy-weighter-tests-only'
ALLOWED_HOSTS = ['127.0.0.1', 'localhost']
GRAPHITE_ROOT = '/usr/share/graphite-web'
STATIC_ROOT = '/usr/share/graphite-web/static'
CONF_DIR = ${py(join(dir, 'conf'))}
STORAGE_DIR = ${py(join(dir, 'storage'))}
WHISPER_DIR = ${py(whisper)}
STANDARD_DIRS = [${py(whisper)}]
CERES_DIR = ${py(join(dir, 'storage', 'ceres'))}
RRD_DIR = ${py(join(dir, 'storage', 'rrd'))}
LOG_DIR = ${py(join(dir, 'log', 'webapp'))}
INDEX_FILE = ${py(join(dir, 'storage', 'index'))}
WHITELIST_FILE = ${py(join(dir, 'storage', 'whitelist'))}
DATABASES = {'default': {'NAME': ${py(join(dir, 'storage', 'graphite.db'))}, 'ENGINE': 'django.db.backends.sqlite3', 'USER': '', 'PASSWORD': '', 'HOST': '', 'PORT': ''}}
# Points still in carbon's cache are served through CARBONLINK before they reach the disk.
CARBONLINK_HOSTS = ['127.0.0.1:${ports.cacheQuery}']
CARBONLINK_TIMEOUT = 2.0
CARBONLINK_RETRY_DELAY = 1
LOG_ROTATION = False
DEFAULT_XFILES_FACTOR = 0
DEFAULT_CACHE_DURATION = 0
FUNCTION_PLUGINS = []
`;
}

const SETTINGS_MODULE = 'hw_graphite_local_settings';

function pythonEnv(dir: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env['PYTHONHOME'];
  return {
    ...env,
    // Our module first: Debian's /etc/graphite/local_settings.py is never imported.
    PYTHONPATH: join(dir, 'web'),
    GRAPHITE_SETTINGS_MODULE: SETTINGS_MODULE,
    DJANGO_SETTINGS_MODULE: 'graphite.settings',
    PYTHONDONTWRITEBYTECODE: '1',
    PYTHONUNBUFFERED: '1',
    PYTHONWARNINGS: 'ignore',
  };
}

function writeConfig(dir: string, ports: GraphitePorts): void {
  for (const sub of ['conf', 'storage/whisper', 'log/carbon', 'log/webapp', 'run', 'web']) mkdirSync(join(dir, sub), { recursive: true });
  writeFileSync(join(dir, 'conf', 'carbon.conf'), carbonConf(dir, ports));
  writeFileSync(join(dir, 'conf', 'storage-schemas.conf'), STORAGE_SCHEMAS);
  writeFileSync(join(dir, 'conf', 'storage-aggregation.conf'), STORAGE_AGGREGATION);
  writeFileSync(join(dir, 'web', `${SETTINGS_MODULE}.py`), webSettings(dir, ports));
}

async function stopBoth(services: readonly (ServiceProcess | undefined)[]): Promise<void> {
  await Promise.all(services.map((s) => s?.stop()));
}

const exitedDuringStart = (service: ServiceProcess) => (): string | undefined =>
  service.hasExited() ? `${service.name} exited during start:\n${service.output()}` : undefined;

async function launch(dir: string, ports: GraphitePorts): Promise<{ carbon: ServiceProcess; web: ServiceProcess }> {
  writeConfig(dir, ports);
  const env = pythonEnv(dir);
  const carbon = spawnService(
    'carbon-cache',
    CARBON_CACHE_BIN,
    ['--config', join(dir, 'conf', 'carbon.conf'), '--pidfile', join(dir, 'run', 'carbon-cache.pid'), '--debug', 'start'],
    { cwd: dir, env },
  );
  let web: ServiceProcess | undefined;
  try {
    // The database is created while carbon starts: both take about a second.
    const migrate = await runCommand(DJANGO_ADMIN_BIN, ['migrate', '--noinput'], { cwd: dir, env, timeoutMs: 120_000 });
    if (migrate.code !== 0) throw new Error(`django-admin migrate failed (exit ${String(migrate.code ?? migrate.signal)}):\n${migrate.stderr.slice(-3_000)}`);
    for (const port of [ports.line, ports.pickle, ports.cacheQuery]) {
      await waitFor(`carbon-cache listening on port ${port}`, async () => (processListensOn(carbon.pid, port) ? true : undefined), {
        timeoutMs: 30_000,
        abortIf: exitedDuringStart(carbon),
      });
    }
    const started = spawnService('graphite-web', DJANGO_ADMIN_BIN, ['runserver', '--noreload', `127.0.0.1:${ports.web}`], { cwd: dir, env });
    web = started;
    await waitFor(`graphite-web listening on port ${ports.web}`, async () => (processListensOn(started.pid, ports.web) ? true : undefined), {
      timeoutMs: 60_000,
      abortIf: exitedDuringStart(started),
    });
    await waitFor(`graphite-web render on port ${ports.web}`, () => fetchRender(`http://127.0.0.1:${ports.web}`, 'hwtest.startup.probe').then(() => true), {
      timeoutMs: 30_000,
      abortIf: exitedDuringStart(started),
    });
    return { carbon, web: started };
  } catch (error) {
    await stopBoth([carbon, web]);
    throw error;
  }
}

export async function startGraphite(): Promise<GraphiteHandle> {
  const dir = makeTempDir('hw-graphite');
  let lastError: unknown;
  // A port taken by another process between choosing and binding it fails one attempt, not the run.
  for (let attempt = 0; attempt < START_ATTEMPTS; attempt++) {
    const [line, pickle, cacheQuery, web] = await freePorts(4);
    if (line === undefined || pickle === undefined || cacheQuery === undefined || web === undefined) throw new Error('could not find free ports');
    let running: { carbon: ServiceProcess; web: ServiceProcess };
    try {
      running = await launch(dir, { line, pickle, cacheQuery, web });
    } catch (error) {
      lastError = error;
      if (error instanceof Error && error.message.includes('already in use')) continue;
      break;
    }
    let stopped = false;
    return {
      ...connectGraphite({ url: `http://127.0.0.1:${web}`, carbonPort: line }),
      dir,
      carbonPid: running.carbon.pid,
      webPid: running.web.pid,
      stop: async () => {
        if (stopped) return;
        stopped = true;
        await stopBoth([running.web, running.carbon]);
        removeTempDir(dir);
      },
    };
  }
  removeTempDir(dir);
  throw lastError;
}
