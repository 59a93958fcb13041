import { aggregate } from './aggregate.js';
import type { BackendConfig } from './config.js';
import { SAFE_SERVER_NAME } from './runtime-grammar.js';
import { snippet } from './errors.js';
import type { Series } from './types.js';

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
 * Turns validated series into one load per server. Pure, and linear in the number of series: a
 * reply with 150,000 series for servers HAProxy does not have costs each of them once.
 */
export function measure(series: readonly Series[], backend: Pick<BackendConfig, 'serverMap' | 'aggregation'>): Measurement {
  const toServer = serverMapper(backend.serverMap);
  // One map from server to its aggregate (null: only null points), in order of first appearance.
  const aggregated = new Map<string, number | null>();
  const several = new Set<string>();
  const unmapped: string[] = [];
  for (const s of series) {
    const server = toServer(s.name);
    if (server === null) unmapped.push(snippet(s.name, 100));
    else if (aggregated.has(server)) several.add(server);
    else aggregated.set(server, aggregate(s.values, backend.aggregation));
  }
  const loads = new Map<string, number>();
  const empty: string[] = [];
  const ambiguous: string[] = [];
  for (const [server, value] of aggregated) {
    if (several.has(server)) ambiguous.push(server);
    else if (value === null) empty.push(server);
    else loads.set(server, value);
  }
  return { loads, empty, ambiguous, unmapped };
}
