import { causeOf, problem, type CycleReport } from './report.js';

/**
 * The weight history: after each apply cycle, what HAProxy holds and what the cycle saw, as
 * Graphite points, so operators graph weights beside load. Sending never fails the cycle: a
 * failure is one problem of severity warning in the report (`history-not-sent`).
 *
 * Paths, under the configured prefix (every name one escaped node, see escapeNode):
 *
 *   <prefix>.cycle.outcome                           0 ok, 1 partial, 2 failed
 *   <prefix>.cycle.servers_changed                   weights written and confirmed
 *   <prefix>.cycle.problems                          problems of severity error
 *   <prefix>.cycle.duration_ms
 *   <prefix>.backend.<backend>.imbalance             max/mean of the measured loads
 *   <prefix>.backend.<backend>.changed               weights confirmed, over every load balancer
 *   <prefix>.backend.<backend>.load.<server>         the load the cycle measured
 *   <prefix>.backend.<backend>.weight.<lb>.<server>  the weight HAProxy holds after the cycle
 *
 * Fixed words and names never share a level, so no backend, load balancer or server name can
 * collide with a fixed word, whatever it is called.
 */

export interface HistoryPoint {
  readonly path: string;
  readonly value: number;
  /** Epoch seconds. */
  readonly timestamp: number;
}

/** Where points go: carbon's line receiver, or an HTTP ingestion API. */
export interface HistorySink {
  /** Where, in words, for the report (no secret in it). */
  readonly destination: string;
  send(points: readonly HistoryPoint[]): Promise<void>;
}

const UTF8 = new TextEncoder();

/**
 * One Graphite path node from a name: every character other than A-Z a-z 0-9 _ : - (so `.`,
 * which would open a new level, and `%`, the escape itself) is written as `%` and two upper-case
 * hex digits of its UTF-8 bytes. Injective: two names never share a node (`a.b` is `a%2Eb`, while
 * `a_b` stays `a_b`). graphite-web's render targets take `%` as a plain metric character.
 */
export function escapeNode(name: string): string {
  let out = '';
  for (const c of name) {
    if (/^[A-Za-z0-9_:-]$/.test(c)) out += c;
    else for (const byte of UTF8.encode(c)) out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  // An empty name would make an empty node (`a..b`), which carbon drops: never the case for a
  // validated name, kept safe anyway.
  return out === '' ? '%' : out;
}

const OUTCOME_VALUE: Readonly<Record<CycleReport['outcome'], number>> = { ok: 0, partial: 1, failed: 2 };

/** The weight each server holds on a load balancer after the cycle; absent where it is not known (a write whose outcome could not be read back). */
function heldWeights(entry: CycleReport['backends'][number]['loadBalancers'][number]): [string, number][] {
  const failed = new Map(entry.apply.failed.map((f) => [f.server, f]));
  const written = entry.apply.status === 'applied' || entry.apply.status === 'failed';
  const out: [string, number][] = [];
  for (const a of entry.plan.actions) {
    if (a.kind !== 'set-weight' || !written || a.weight === null) {
      out.push([a.server, a.current]);
      continue;
    }
    const failure = failed.get(a.server);
    if (failure === undefined) out.push([a.server, a.weight]);
    // A batch the time budget left unsent never reached HAProxy: it keeps the weight it had.
    else if (failure.code === 'not-sent') out.push([a.server, a.current]);
    else if (failure.heldWeight !== null) out.push([a.server, failure.heldWeight]);
  }
  return out;
}

/** The points of one cycle report. Pure. */
export function historyPoints(report: CycleReport, prefix: string): HistoryPoint[] {
  const timestamp = Math.floor(Date.parse(report.startedAt) / 1000);
  const points: HistoryPoint[] = [];
  const add = (path: string, value: number): void => {
    if (Number.isFinite(value)) points.push({ path: `${prefix}.${path}`, value, timestamp });
  };
  add('cycle.outcome', OUTCOME_VALUE[report.outcome]);
  add('cycle.servers_changed', report.serversChanged);
  add('cycle.problems', report.problems.filter((p) => p.severity === 'error').length);
  add('cycle.duration_ms', report.durationMs);
  for (const b of report.backends) {
    const be = `backend.${escapeNode(b.backend)}`;
    if (b.imbalance !== null) add(`${be}.imbalance`, b.imbalance);
    add(`${be}.changed`, b.loadBalancers.reduce((n, l) => n + l.apply.changed, 0));
    for (const [server, load] of Object.entries(b.loads)) add(`${be}.load.${escapeNode(server)}`, load);
    for (const entry of b.loadBalancers) {
      for (const [server, weight] of heldWeights(entry)) add(`${be}.weight.${escapeNode(entry.loadBalancer)}.${escapeNode(server)}`, weight);
    }
  }
  return points;
}

/**
 * Sends the history of an apply cycle and returns its report, with a warning problem added when
 * sending failed. Never throws, never changes the outcome. A plan changes nothing: nothing is sent.
 */
export async function recordHistory(report: CycleReport, sink: HistorySink, prefix: string): Promise<CycleReport> {
  if (report.mode !== 'apply') return report;
  try {
    await sink.send(historyPoints(report, prefix));
    return report;
  } catch (error) {
    const warning = problem('history-not-sent', {}, `the weight history was not sent to ${sink.destination} (the cycle itself is unaffected)`, causeOf(error), 'warning');
    return { ...report, problems: [...report.problems, warning] };
  }
}
