import type { BackendConfig, Config } from './config.js';
import { selectBackends } from './cycle.js';
import type { CheckKind, Coverage, DoctorCheck, DoctorCode, DoctorReport } from './doctor-schema.js';
import { DOCTOR_SCHEMA_VERSION } from './doctor-version.js';
import { GraphiteError, HaproxyError, describeError } from './errors.js';
import { algorithmKind, observeCommands, parseCliLevel, showCliLevelCommand, splitReplies, type CliLevel } from './haproxy-protocol.js';
import { observationsFrom, type Observation } from './observe.js';
import { measure, type Measurement } from './measure.js';
import { planBackend } from './plan.js';
import type { MetricSource, ObservedBackend, RelayRunOptions, RuntimeRelay } from './types.js';

export type { CheckKind, Coverage, DoctorCheck, DoctorCode, DoctorReport } from './doctor-schema.js';

/**
 * `doctor`: every piece one cycle needs, checked without changing anything, each with what is
 * wrong and how to fix it. One round trip per load balancer reads the session's level (`show cli
 * level`, which needs no level and changes nothing) and observes every backend as a cycle does;
 * one render per backend measures its target as a cycle does. The verdicts are the cycle's own:
 * the same parsers, the same quorum (planBackend), the same algorithm rules. Pure but for the
 * injected relay, metric source and platform checks.
 */

/** A dependency that could not even be built (a secret missing from the environment, no instance to reach): the checks that need it say why. */
export interface Unavailable {
  readonly error: unknown;
}

export interface DoctorDeps {
  readonly config: Config;
  readonly metrics: MetricSource | Unavailable;
  readonly relay: RuntimeRelay | Unavailable;
  readonly now: () => number;
  readonly version: string;
  /** Checks of the platform the relay runs on (AWS: the Command document and the instances), run alongside. */
  readonly platformChecks?: () => Promise<readonly DoctorCheck[]>;
}

export interface DoctorOptions {
  /** Only these backends (names must exist in the config). */
  readonly backends?: readonly string[];
  /** The time the relay may take (the Lambda's budget), as for a cycle. */
  readonly budget?: RelayRunOptions;
}

interface Place {
  readonly loadBalancer?: string | null;
  readonly backend?: string | null;
}

const fields = (check: CheckKind, place: Place, message: string, coverage: Coverage | null) => ({
  check,
  loadBalancer: place.loadBalancer ?? null,
  backend: place.backend ?? null,
  message,
  coverage,
});

export const ok = (check: CheckKind, place: Place, message: string, coverage: Coverage | null = null): DoctorCheck => ({ status: 'ok', ...fields(check, place, message, coverage), code: null, fix: null });
export const failed = (check: CheckKind, place: Place, code: DoctorCode, message: string, fix: string, coverage: Coverage | null = null): DoctorCheck => ({
  status: 'failed',
  ...fields(check, place, message, coverage),
  code,
  fix,
});
export const warning = (check: CheckKind, place: Place, code: DoctorCode, message: string, fix: string, coverage: Coverage | null = null): DoctorCheck => ({
  status: 'warning',
  ...fields(check, place, message, coverage),
  code,
  fix,
});
export const skipped = (check: CheckKind, place: Place, message: string, coverage: Coverage | null = null): DoctorCheck => ({ status: 'skipped', ...fields(check, place, message, coverage), code: null, fix: null });

const isUnavailable = <T extends object>(value: T | Unavailable): value is Unavailable => 'error' in value;

/** What one load balancer answered: its level (or why not) and each backend's observation. */
type LoadBalancerReading =
  | { readonly ok: false; readonly error: unknown }
  | {
      readonly ok: true;
      readonly level: { readonly ok: true; readonly level: CliLevel } | { readonly ok: false; readonly error: unknown };
      readonly backends: ReadonlyMap<string, Observation>;
    };

type MeasureResult = { readonly ok: true; readonly measurement: Measurement; readonly series: number } | { readonly ok: false; readonly error: unknown };

async function readLoadBalancers(relay: RuntimeRelay, backends: readonly BackendConfig[], budget: RelayRunOptions = {}): Promise<Map<string, LoadBalancerReading>> {
  const names = backends.map((b) => b.name);
  const commands = [showCliLevelCommand(), ...names.flatMap((b) => observeCommands(b))];
  const out = new Map<string, LoadBalancerReading>();
  if (relay.loadBalancers.length === 0) return out;
  const results = await relay.run(
    relay.loadBalancers.map((loadBalancer) => ({ loadBalancer, commands })),
    budget,
  );
  for (const result of results) {
    if (!result.ok) {
      out.set(result.loadBalancer, { ok: false, error: result.error });
      continue;
    }
    let blocks: string[];
    try {
      blocks = splitReplies(commands, result.reply);
    } catch (error) {
      out.set(result.loadBalancer, { ok: false, error });
      continue;
    }
    let level: Extract<LoadBalancerReading, { ok: true }>['level'];
    try {
      level = { ok: true, level: parseCliLevel(blocks[0] ?? '', { loadBalancer: result.loadBalancer }) };
    } catch (error) {
      level = { ok: false, error };
    }
    // The level's reply leads; the backends' follow, as a cycle's observation reads them.
    out.set(result.loadBalancer, { ok: true, level, backends: observationsFrom(names, blocks.slice(1), result.loadBalancer) });
  }
  return out;
}

async function measureAll(metrics: MetricSource, backends: readonly BackendConfig[]): Promise<Map<string, MeasureResult>> {
  const entries = await Promise.all(
    backends.map(async (b): Promise<[string, MeasureResult]> => {
      try {
        const series = await metrics.render(b.target, b.from, b.until);
        return [b.name, { ok: true, measurement: measure(series, b), series: series.length }];
      } catch (error) {
        return [b.name, { ok: false, error }];
      }
    }),
  );
  return new Map(entries);
}

// ---------------------------------------------------------------------------------------------
// Graphite
// ---------------------------------------------------------------------------------------------

/** How Graphite's secret reaches the weighter, in words, for a fix. */
function secretWhere(config: Config): string {
  const auth = config.graphite.auth;
  switch (auth.type) {
    case 'none':
      return 'graphite.auth is none: Graphite asks for credentials, so set graphite.auth (url-key, basic or header) and put the secret in the environment variable it names';
    case 'url-key':
      return `check the API key in the environment variable ${auth.keyEnv} (graphite.auth.keyEnv; url-key puts it in the path, as Hosted Graphite does)`;
    case 'basic':
      return `check the user ${JSON.stringify(auth.username)} (graphite.auth.username) and the password in the environment variable ${auth.passwordEnv} (graphite.auth.passwordEnv)`;
    case 'header':
      return `check the value of the environment variable ${auth.valueEnv} (graphite.auth.valueEnv), sent as the ${auth.header} header${auth.prefix === '' ? '' : ` after ${JSON.stringify(auth.prefix)}`}`;
  }
}

const graphiteKind = (error: unknown): GraphiteError['kind'] | 'other' => (error instanceof GraphiteError ? error.kind : 'other');

function graphiteChecks(config: Config, metrics: MetricSource | Unavailable, measured: ReadonlyMap<string, MeasureResult>): DoctorCheck[] {
  const url = config.graphite.url;
  if (isUnavailable(metrics)) {
    return [
      skipped('graphite-reachable', {}, `not tried: ${describeError(metrics.error)}`),
      failed('graphite-authenticated', {}, 'graphite-secret-missing', describeError(metrics.error), `${secretWhere(config)}; in AWS the secret comes from the SecureString parameter GRAPHITE_KEY_PARAMETER names`),
    ];
  }
  const results = [...measured.values()];
  const failures = results.flatMap((r) => (r.ok ? [] : [r.error]));
  const answered = results.some((r) => r.ok) || failures.some((e) => graphiteKind(e) !== 'unreachable' && graphiteKind(e) !== 'other');
  const authFailure = failures.find((e) => graphiteKind(e) === 'auth');
  const anyOk = results.some((r) => r.ok);
  const checks: DoctorCheck[] = [];
  if (!answered) {
    const first = failures[0];
    checks.push(
      failed(
        'graphite-reachable',
        {},
        'graphite-unreachable',
        first === undefined ? 'no render was tried' : describeError(first),
        `check graphite.url (${url}): graphite-web must answer /render from here (is it running? DNS, firewall, proxy, VPC route; http or https as it serves); raise graphite.timeoutMs if it is slow`,
      ),
      skipped('graphite-authenticated', {}, 'Graphite did not answer'),
    );
    return checks;
  }
  checks.push(ok('graphite-reachable', {}, `answered at ${url}`));
  if (authFailure !== undefined && !anyOk) {
    checks.push(failed('graphite-authenticated', {}, 'graphite-auth', describeError(authFailure), secretWhere(config)));
  } else if (config.graphite.auth.type === 'none') {
    checks.push(ok('graphite-authenticated', {}, 'no credentials configured (graphite.auth.type none), and Graphite asked for none'));
  } else {
    checks.push(ok('graphite-authenticated', {}, `accepted the ${config.graphite.auth.type} credentials`));
  }
  return checks;
}

// ---------------------------------------------------------------------------------------------
// Load balancers
// ---------------------------------------------------------------------------------------------

/** The errno behind an error (ENOENT, ECONNREFUSED ...), read from the error and its causes. */
function errnoOf(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && typeof current === 'object' && current !== null; depth++) {
    const code: unknown = Reflect.get(current, 'code');
    if (typeof code === 'string' && /^E[A-Z0-9]+$/.test(code)) return code;
    current = Reflect.get(current, 'cause');
  }
  return undefined;
}

/** Where a load balancer's runtime API is, in words; and the `stats socket` line that should serve it. */
function endpointOf(config: Config, loadBalancer: string): { shown: string; statsSocket: string; unix: boolean } {
  const relay = config.relay;
  if (relay.type === 'ssm') return { shown: `${relay.socketPath} on the instance`, statsSocket: `stats socket ${relay.socketPath} level admin`, unix: true };
  const endpoint = relay.loadBalancers.find((lb) => lb.name === loadBalancer)?.endpoint ?? '';
  const unix = endpoint.startsWith('/');
  return { shown: endpoint, statsSocket: unix ? `stats socket ${endpoint} level admin` : `stats socket ipv4@${endpoint} level admin`, unix };
}

function unreachableCheck(config: Config, loadBalancer: string, error: unknown): DoctorCheck {
  const place = { loadBalancer };
  const { shown, statsSocket, unix } = endpointOf(config, loadBalancer);
  const message = describeError(error);
  if (config.relay.type === 'ssm') {
    return failed('load-balancer-reachable', place, 'relay-failed', message, `the SSM command did not bring a reply: see the message; the instance needs socat and an HAProxy admin socket at ${shown} ("${statsSocket}" in haproxy.cfg)`);
  }
  switch (errnoOf(error)) {
    case 'ENOENT':
      return failed('load-balancer-reachable', place, 'socket-missing', `no socket at ${shown}`, `start HAProxy with "${statsSocket}" in its global section, or correct relay.loadBalancers[].endpoint`);
    case 'ECONNREFUSED':
      return failed(
        'load-balancer-reachable',
        place,
        'socket-refused',
        unix ? `${shown} exists but nothing accepts connections on it` : `nothing listens on ${shown}`,
        unix ? `HAProxy is not running, or now serves its runtime API elsewhere: start it with "${statsSocket}"` : `expose the runtime API with "${statsSocket}" and let this host reach it`,
      );
    case 'EACCES':
    case 'EPERM':
      return failed('load-balancer-reachable', place, 'socket-permission', `not allowed to open ${shown}`, `run as a user who may open the socket (HAProxy sets its owner and mode: "stats socket ... mode 660 group <group>", with this user in the group)`);
    default:
      return failed('load-balancer-reachable', place, 'runtime-unreachable', message, `check that HAProxy answers on ${shown} ("${statsSocket}"); raise relay.connectTimeoutMs or readTimeoutMs if it is slow`);
  }
}

function loadBalancerChecks(config: Config, relay: RuntimeRelay | Unavailable, readings: ReadonlyMap<string, LoadBalancerReading>): DoctorCheck[] {
  if (isUnavailable(relay)) {
    return [failed('load-balancer-reachable', {}, 'relay-failed', describeError(relay.error), 'no load balancer could be reached: see the message')];
  }
  return relay.loadBalancers.flatMap((loadBalancer): DoctorCheck[] => {
    const place = { loadBalancer };
    const reading = readings.get(loadBalancer) ?? { ok: false, error: new Error('no reply') };
    if (!reading.ok) return [unreachableCheck(config, loadBalancer, reading.error), skipped('admin-level', place, 'the load balancer could not be read')];
    const { shown, statsSocket } = endpointOf(config, loadBalancer);
    const reached = ok('load-balancer-reachable', place, `answered on ${shown}`);
    if (!reading.level.ok) {
      return [reached, failed('admin-level', place, 'level-unknown', describeError(reading.level.error), `use HAProxy 2.0 or later, whose "show cli level" tells the level, with "${statsSocket}"`)];
    }
    if (reading.level.level === 'admin') return [reached, ok('admin-level', place, 'the session is at level admin: HAProxy takes weight changes on it')];
    return [
      reached,
      failed(
        'admin-level',
        place,
        'level-not-admin',
        `the session is at level ${reading.level.level}: HAProxy refuses every weight change on it (Permission denied)`,
        `write "${statsSocket}" in the global section of haproxy.cfg and reload HAProxy (a stats socket without "level" is at operator; only admin may set weights)`,
      ),
    ];
  });
}

// ---------------------------------------------------------------------------------------------
// Backends on each load balancer
// ---------------------------------------------------------------------------------------------

const BALANCE_FIX = 'use "balance leastconn" (or roundrobin, random, first; for hashing "hash-type consistent") in the backend and reload HAProxy';

function backendChecks(backend: BackendConfig, loadBalancer: string, reading: LoadBalancerReading | undefined, measured: MeasureResult | undefined): DoctorCheck[] {
  const place = { loadBalancer, backend: backend.name };
  if (reading === undefined || !reading.ok) {
    return (['backend-present', 'backend-algorithm', 'servers'] as const).map((c) => skipped(c, place, 'the load balancer could not be read'));
  }
  const observation = reading.backends.get(backend.name);
  if (observation === undefined || !observation.ok) {
    const error = observation?.ok === false ? observation.error : new Error('no reply');
    const notFound = error instanceof HaproxyError && error.kind === 'no-such-backend';
    return [
      notFound
        ? failed('backend-present', place, 'backend-not-found', `HAProxy has no backend ${backend.name}`, `add "backend ${backend.name}" to haproxy.cfg and reload HAProxy, or correct backends[].name (a frontend's name is not a backend)`)
        : failed('backend-present', place, 'observe-failed', describeError(error), 'HAProxy answered something the weighter cannot read: see the message'),
      skipped('backend-algorithm', place, 'the backend could not be read'),
      skipped('servers', place, 'the backend could not be read'),
    ];
  }
  const observed = observation.backend;
  const checks: DoctorCheck[] = [ok('backend-present', place, `${observed.servers.length} server(s)`)];
  const algo = observed.algorithm;
  switch (algorithmKind(algo)) {
    case 'dynamic':
      checks.push(ok('backend-algorithm', place, `balance ${algo} takes runtime weights`));
      break;
    case 'static':
      checks.push(failed('backend-algorithm', place, 'static-algorithm', `balance ${algo} is static: HAProxy only takes weights 0% and 100%`, BALANCE_FIX));
      break;
    case 'hash':
      checks.push(
        warning(
          'backend-algorithm',
          place,
          'hash-type-unverified',
          `balance ${algo} takes weights only with "hash-type consistent", which HAProxy's statistics do not show (the default, map-based, refuses every weight)`,
          `make sure the backend has "hash-type consistent"; with map-based hashing every cycle reports static-refused`,
        ),
      );
      break;
    case 'unrecognised':
      checks.push(warning('backend-algorithm', place, 'algorithm-unrecognised', `balance ${algo} is not one the weighter knows`, `if HAProxy refuses weights, ${BALANCE_FIX}`));
      break;
  }
  const unaddressable = observed.servers.filter((s) => s.unaddressable !== undefined).map((s) => s.name);
  // The quorum verdict is the planner's own, on what Graphite measured.
  const plan = measured?.ok === true ? planBackend({ backend, loadBalancer, observed, measurement: measured.measurement }) : undefined;
  if (plan?.status === 'skipped' && plan.reason === 'no-servers') {
    checks.push(failed('servers', place, 'no-servers', `no server may be weighted: ${describeServers(observed)}`, 'a cycle changes nothing here until a server is in service (not MAINT, DRAIN or weight 0) with an addressable name'));
  } else if (unaddressable.length > 0 && unaddressable.length === observed.servers.length) {
    checks.push(failed('servers', place, 'unaddressable-servers', `no server name can be addressed: ${listOf(unaddressable)}`, 'name servers with 1-1024 characters of A-Z a-z 0-9 _ . : -'));
  } else if (unaddressable.length > 0) {
    checks.push(warning('servers', place, 'unaddressable-servers', `${unaddressable.length} server name(s) cannot be addressed and keep their weight: ${listOf(unaddressable)}`, 'name servers with 1-1024 characters of A-Z a-z 0-9 _ . : -'));
  } else if (observed.servers.length === 0) {
    checks.push(failed('servers', place, 'no-servers', 'the backend has no server', `add servers to the backend in haproxy.cfg`));
  } else {
    checks.push(ok('servers', place, `${observed.servers.length} server name(s), all addressable; ${describeServers(observed)}`));
  }
  return checks;
}

function describeServers(observed: ObservedBackend): string {
  const count = (pred: (s: ObservedBackend['servers'][number]) => boolean): number => observed.servers.filter(pred).length;
  const maint = count((s) => s.admin === 'maint');
  const drain = count((s) => s.admin === 'drain');
  const zero = count((s) => s.admin === 'ready' && s.weight === 0);
  const parts = [`${observed.servers.length - maint - drain - zero} in service`];
  if (maint > 0) parts.push(`${maint} in MAINT`);
  if (drain > 0) parts.push(`${drain} in DRAIN`);
  if (zero > 0) parts.push(`${zero} at weight 0`);
  return parts.join(', ');
}

/** A list for a one-line message: the first few names and how many more. */
export function listOf(names: readonly string[], max = 10): string {
  return names.length <= max ? names.join(', ') : `${names.slice(0, max).join(', ')} and ${names.length - max} more`;
}

// ---------------------------------------------------------------------------------------------
// Coverage: each backend's target against the servers the load balancers have
// ---------------------------------------------------------------------------------------------

function coverageCheck(backend: BackendConfig, metrics: MetricSource | Unavailable, graphiteDown: boolean, measured: MeasureResult | undefined, readings: ReadonlyMap<string, LoadBalancerReading>): DoctorCheck {
  const place = { backend: backend.name };
  if (isUnavailable(metrics) || graphiteDown) return skipped('target-coverage', place, 'Graphite could not be used');
  if (measured === undefined || !measured.ok) {
    const error = measured?.ok === false ? measured.error : new Error('no reply');
    const kind = graphiteKind(error);
    const message = describeError(error);
    if (kind === 'http-status') return failed('target-coverage', place, 'graphite-http-status', message, `graphite-web refused the render: check backends[].target (${backend.target}) in graphite-web, and that graphite.url points at graphite-web`);
    if (kind === 'bad-reply') return failed('target-coverage', place, 'graphite-bad-reply', message, 'Graphite answered something the weighter cannot trust: see the message; graphite.url must point at graphite-web (format=json)');
    if (kind === 'auth') return failed('target-coverage', place, 'graphite-auth', message, 'the credentials were refused for this target only: check the key\'s permissions');
    return failed('target-coverage', place, 'graphite-unreachable', message, 'the render of this target failed where others worked: a slow or heavy target? raise graphite.timeoutMs or narrow the target');
  }
  const m = measured.measurement;
  // The servers of the backend, over every load balancer that could read it.
  const servers = new Map<string, { weightable: boolean }>();
  for (const reading of readings.values()) {
    if (!reading.ok) continue;
    const obs = reading.backends.get(backend.name);
    if (obs?.ok !== true) continue;
    for (const s of obs.backend.servers) {
      const weightable = s.unaddressable === undefined && s.admin === 'ready' && s.weight > 0;
      servers.set(s.name, { weightable: weightable || servers.get(s.name)?.weightable === true });
    }
  }
  const mapped = [...m.loads.keys(), ...m.empty, ...m.ambiguous];
  const unknownServers = servers.size === 0 ? [] : mapped.filter((s) => !servers.has(s));
  const withoutData = [...servers.keys()].filter((s) => !m.loads.has(s));
  const coverage: Coverage = {
    servers: servers.size,
    withData: servers.size - withoutData.length,
    withoutData,
    series: measured.series,
    unmappedSeries: [...m.unmapped],
    unknownServers,
  };
  const window = `from ${backend.from}${backend.until === undefined ? '' : ` until ${backend.until}`}`;
  if (measured.series === 0) {
    return failed('target-coverage', place, 'target-no-series', `the target returned no series (${window})`, `check backends[].target (${backend.target}) in graphite-web: the metric path, and that points are newer than ${backend.from}`, coverage);
  }
  if (servers.size === 0) return skipped('target-coverage', place, `${measured.series} series, ${m.loads.size} with data; no load balancer could be read to compare them with`, coverage);
  const fixNames = `name each series like its HAProxy server, e.g. aliasByNode(<path>, <node of the server>) in backends[].target, or map names with backends[].serverMap`;
  if (coverage.withData === 0) {
    const seen = [...m.unmapped, ...unknownServers, ...m.empty, ...m.ambiguous];
    if (m.empty.length > 0 && m.empty.some((s) => servers.has(s)) && m.loads.size === 0) {
      return failed('target-coverage', place, 'target-no-series', `the series for ${listOf(m.empty.filter((s) => servers.has(s)))} hold only null points (${window})`, `check that the servers report load, and that points are newer than ${backend.from}`, coverage);
    }
    return failed('target-coverage', place, 'target-matches-no-server', `${measured.series} series, none for a server of the backend (series seen: ${listOf(seen, 5)})`, fixNames, coverage);
  }
  // The cycle's own quorum, on each load balancer that could read the backend.
  for (const [loadBalancer, reading] of readings) {
    const obs = reading.ok ? reading.backends.get(backend.name) : undefined;
    if (obs?.ok !== true) continue;
    const plan = planBackend({ backend, loadBalancer, observed: obs.backend, measurement: m });
    if (plan.status === 'skipped' && plan.reason === 'no-quorum') {
      return failed('target-coverage', place, 'coverage-below-quorum', `${plan.message} (on ${loadBalancer}); without data: ${listOf(withoutData)}`, `make the target return load for those servers (${fixNames}), or lower backends[].quorum (${backend.quorum})`, coverage);
    }
  }
  const summary = `${coverage.withData} of ${coverage.servers} server(s) have data (${measured.series} series)`;
  if (withoutData.length > 0) {
    return warning('target-coverage', place, 'coverage-partial', `${summary}; without data, keeping their weight: ${listOf(withoutData)}`, `make the target return load for those servers: ${fixNames}`, coverage);
  }
  if (coverage.unmappedSeries.length > 0 || unknownServers.length > 0) {
    const parts: string[] = [];
    if (coverage.unmappedSeries.length > 0) parts.push(`series not named like a server: ${listOf(coverage.unmappedSeries, 5)}`);
    if (unknownServers.length > 0) parts.push(`series for servers no load balancer has: ${listOf(unknownServers, 5)}`);
    return warning('target-coverage', place, 'series-unmatched', `${summary}; ${parts.join('; ')}`, 'narrow backends[].target to this backend\'s servers, or add the servers to the backend', coverage);
  }
  return ok('target-coverage', place, summary, coverage);
}

// ---------------------------------------------------------------------------------------------

export function doctorOutcome(checks: readonly DoctorCheck[]): DoctorReport['outcome'] {
  return checks.some((c) => c.status === 'failed') ? 'failed' : 'ok';
}

/** CLI exit code of a doctor report: 0 nothing failed (warnings allowed), 1 something failed. */
export function doctorExitCode(report: Pick<DoctorReport, 'outcome'>): 0 | 1 {
  return report.outcome === 'ok' ? 0 : 1;
}

/** Runs every check. Never throws for a failing piece (that is a failed check); throws ConfigError only for an unknown --backend. */
export async function runDoctor(deps: DoctorDeps, options: DoctorOptions = {}): Promise<DoctorReport> {
  const started = deps.now();
  const backends = selectBackends(deps.config, options.backends);
  const relay = deps.relay;
  const metrics = deps.metrics;
  const [readings, measured, platform] = await Promise.all([
    isUnavailable(relay) ? new Map<string, LoadBalancerReading>() : readLoadBalancers(relay, backends, options.budget),
    isUnavailable(metrics) ? new Map<string, MeasureResult>() : measureAll(metrics, backends),
    deps.platformChecks?.() ?? Promise.resolve([]),
  ]);

  const checks: DoctorCheck[] = [...platform];
  const graphite = graphiteChecks(deps.config, metrics, measured);
  checks.push(...graphite);
  const graphiteDown = graphite.some((c) => c.status === 'failed');
  checks.push(...loadBalancerChecks(deps.config, relay, readings));
  for (const b of backends) {
    checks.push(coverageCheck(b, metrics, graphiteDown, measured.get(b.name), readings));
    if (!isUnavailable(relay)) for (const lb of relay.loadBalancers) checks.push(...backendChecks(b, lb, readings.get(lb), measured.get(b.name)));
  }
  const counts = { ok: 0, warning: 0, failed: 0, skipped: 0 };
  for (const c of checks) counts[c.status]++;
  return {
    schemaVersion: DOCTOR_SCHEMA_VERSION,
    mode: 'doctor',
    version: deps.version,
    startedAt: new Date(started).toISOString(),
    durationMs: Math.max(0, Math.round(deps.now() - started)),
    outcome: doctorOutcome(checks),
    counts,
    checks,
  };
}
