import { aggregate } from './aggregate.js';
import type { BackendConfig } from './config.js';
import { SAFE_NAME } from './runtime-grammar.js';
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
  let mapped = name;
  if (serverMap !== undefined) {
    const match = new RegExp(serverMap.pattern).exec(name);
    if (match === null) return null;
    mapped = serverMap.template.replace(/\$(\d)/g, (_, digit: string) => match[Number(digit)] ?? '');
  }
  return SAFE_NAME.test(mapped) ? mapped : null;
}

/** Turns validated series into one load per server. Pure. */
export function measure(series: readonly Series[], backend: Pick<BackendConfig, 'serverMap' | 'aggregation'>): Measurement {
  const byServer = new Map<string, Series[]>();
  const unmapped: string[] = [];
  for (const s of series) {
    const server = seriesToServer(s.name, backend.serverMap);
    if (server === null) {
      unmapped.push(snippet(s.name, 100));
      continue;
    }
    const list = byServer.get(server) ?? [];
    list.push(s);
    byServer.set(server, list);
  }
  const loads = new Map<string, number>();
  const empty: string[] = [];
  const ambiguous: string[] = [];
  for (const [server, list] of byServer) {
    const [only] = list;
    if (list.length !== 1 || only === undefined) {
      ambiguous.push(server);
      continue;
    }
    const value = aggregate(only.values, backend.aggregation);
    if (value === null) empty.push(server);
    else loads.set(server, value);
  }
  return { loads, empty, ambiguous, unmapped };
}
