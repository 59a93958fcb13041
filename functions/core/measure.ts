import { aggregate } from './aggregate.js';
import type { BackendConfig } from './config.js';
import { SAFE_SERVER_NAME } from './runtime-grammar.js';
import { snippet } from './errors.js';
import type { Series } from './types.js';

/** The time a load covers: a point dated T covers [T, T + step). */
export interface MeasuredSpan {
  readonly start: number;
  readonly end: number;
}

/** What Graphite told us about one backend, per HAProxy server name. */
export interface Measurement {
  /** Aggregated load per server that had at least one non-null point. */
  readonly loads: ReadonlyMap<string, number>;
  /** Servers whose series were all null in the window. */
  readonly empty: readonly string[];
  /** Servers that more than one series mapped to: we cannot tell which is right, so none is used. */
  readonly ambiguous: readonly string[];
  /** Series whose names do not map to a valid server name (shown in the report, never sent). */
  readonly unmapped: readonly string[];
  /**
   * Servers no load balancer has (measure's `known`) with a load: one series with a non-null
   * point. They are in none of the fields above, which only hold servers the load balancers have.
   */
  readonly unknownServers: readonly string[];
  /**
   * The time each server's load covers, in epoch seconds: [start, end) of the bucket(s) it was
   * aggregated from. Absent for servers whose series carried no timestamps.
   */
  readonly spans: ReadonlyMap<string, MeasuredSpan>;
  /** End (epoch seconds) of the newest bucket with a point in any mapped series; null when none has one or no timestamps came. */
  readonly newestPoint: number | null;
  /** Series that mapped to a server, whatever their points: 0 with points nowhere means an empty window, not missing metrics. */
  readonly mappedSeries: number;
  /** Series that mapped to a server and hold at least one non-null point. */
  readonly seriesWithPoints: number;
}

/**
 * Maps a Graphite series name to an HAProxy server name: the name itself, or the configured
 * pattern's match expanded into the template. Returns null when the result is not a safe name,
 * so a hostile or malformed series name can never reach the runtime API.
 */
export function seriesToServer(name: string, serverMap: BackendConfig['serverMap']): string | null {
  return serverMapper(serverMap)(name);
}

/** seriesToServer with the pattern compiled once, for a whole reply. */
function serverMapper(serverMap: BackendConfig['serverMap']): (name: string) => string | null {
  if (serverMap === undefined) return (name) => (SAFE_SERVER_NAME.test(name) ? name : null);
  const pattern = new RegExp(serverMap.pattern);
  return (name) => {
    const match = pattern.exec(name);
    if (match === null) return null;
    const mapped = serverMap.template.replace(/\$(\d)/g, (_, digit: string) => match[Number(digit)] ?? '');
    return SAFE_SERVER_NAME.test(mapped) ? mapped : null;
  };
}

/**
 * Turns validated series into one load per server. Pure, and linear in the number of series.
 *
 * `known`, when given, holds the servers the load balancers have: a series for any other server
 * costs a name check and a set entry, no more (a reply may hold 150,000 of them, from a target
 * broader than the backend or from a hostile Graphite); it is only named in unknownServers.
 * Without it every server counts as known.
 */
export function measure(series: readonly Series[], backend: Pick<BackendConfig, 'serverMap' | 'aggregation'>, known?: ReadonlySet<string>): Measurement {
  const toServer = serverMapper(backend.serverMap);
  // One map from server to its aggregate (null: only null points), in order of first appearance.
  const aggregated = new Map<string, number | null>();
  const spanOf = new Map<string, MeasuredSpan | null>();
  const several = new Set<string>();
  const unmapped: string[] = [];
  // Servers no load balancer has, in order of first appearance; the two sets are the rare ones
  // that cannot be named as having a load (several series, or only null points).
  const unknown = new Set<string>();
  const unknownSeveral = new Set<string>();
  const unknownEmpty = new Set<string>();
  let newestPoint: number | null = null;
  let mappedSeries = 0;
  let seriesWithPoints = 0;
  for (const s of series) {
    const server = toServer(s.name);
    if (server === null) {
      unmapped.push(snippet(s.name, 100));
      continue;
    }
    mappedSeries++;
    const newest = newestPointEnd(s);
    if (newest !== null) newestPoint = Math.max(newestPoint ?? newest, newest);
    const value = aggregate(s.values, backend.aggregation);
    if (value !== null) seriesWithPoints++;
    if (known !== undefined && !known.has(server)) {
      const before = unknown.size;
      unknown.add(server);
      if (unknown.size === before) unknownSeveral.add(server);
      else if (value === null) unknownEmpty.add(server);
      continue;
    }
    if (aggregated.has(server)) several.add(server);
    else {
      aggregated.set(server, value);
      spanOf.set(server, measuredSpan(s, backend.aggregation));
    }
  }
  const loads = new Map<string, number>();
  const spans = new Map<string, MeasuredSpan>();
  const empty: string[] = [];
  const ambiguous: string[] = [];
  for (const [server, value] of aggregated) {
    if (several.has(server)) ambiguous.push(server);
    else if (value === null) empty.push(server);
    else {
      loads.set(server, value);
      const span = spanOf.get(server);
      if (span !== undefined && span !== null) spans.set(server, span);
    }
  }
  const unknownServers = unknownSeveral.size + unknownEmpty.size === 0 ? [...unknown] : [...unknown].filter((s) => !unknownSeveral.has(s) && !unknownEmpty.has(s));
  return { loads, empty, ambiguous, unmapped, unknownServers, spans, newestPoint, mappedSeries, seriesWithPoints };
}

/** Seconds between points of a dated series (Graphite's step), or null when it cannot tell. */
function stepOf(series: Series): number | null {
  const t = series.timestamps;
  if (t === undefined || t.length !== series.values.length || t.length < 2) return null;
  const step = (t[1] ?? NaN) - (t[0] ?? NaN);
  return Number.isFinite(step) && step > 0 ? step : null;
}

/**
 * The time the aggregated load covers: the newest point's bucket for the leading edge, from the
 * oldest to the newest point's bucket for the average. Null without timestamps.
 */
function measuredSpan(series: Series, method: BackendConfig['aggregation']): MeasuredSpan | null {
  const t = series.timestamps;
  if (t === undefined || t.length !== series.values.length) return null;
  const step = stepOf(series) ?? 0;
  let first: number | null = null;
  let last: number | null = null;
  series.values.forEach((v, i) => {
    const ts = t[i];
    if (v === null || ts === undefined) return;
    first ??= ts;
    last = ts;
  });
  if (first === null || last === null) return null;
  return { start: method === 'leading-edge' ? last : first, end: last + step };
}

function newestPointEnd(series: Series): number | null {
  const t = series.timestamps;
  if (t === undefined || t.length !== series.values.length) return null;
  const step = stepOf(series) ?? 0;
  for (let i = series.values.length - 1; i >= 0; i--) {
    const ts = t[i];
    if (series.values[i] !== null && ts !== undefined) return ts + step;
  }
  return null;
}
