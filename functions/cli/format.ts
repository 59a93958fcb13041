import type { HaproxyErrorKind } from '../core/errors.js';
import type { ActionReport, ApplyReport, BackendReport, CycleReport, LoadBalancerPlanReport, Problem } from '../core/report.js';

/** The human view of a cycle report. Every sentence shown to a person is made here, from the report's data. */

export interface FormatOptions {
  /**
   * Only the rows that matter on a large backend: servers whose weight changes (or failed to),
   * and servers left alone for a reason the operator did not choose (no data, an unaddressable
   * name). Servers kept unchanged, and those an operator took out (MAINT, DRAIN, weight 0), are
   * only counted in the backend's summary line.
   */
  readonly changesOnly?: boolean;
}

/** Skips an operator chose: counted, not listed, in the changes-only view. */
const OPERATOR_SKIPS: ReadonlySet<string> = new Set(['maint', 'drain', 'weight-zero']);

function mattersForChanges(action: ActionReport, failed: ReadonlyMap<string, string>): boolean {
  if (action.kind === 'set-weight') return true;
  if (action.kind === 'skip') return action.reason === null || !OPERATOR_SKIPS.has(action.reason);
  return failed.has(action.server);
}

/**
 * One line per backend: how many servers, what the cycle decides for them on every load balancer
 * that planned it (changed, unchanged, skipped by reason), where it skipped the whole backend, and
 * the imbalance.
 */
export function backendSummary(b: BackendReport, mode: CycleReport['mode']): string {
  const servers = new Set<string>();
  let changed = 0;
  let unchanged = 0;
  let failedWrites = 0;
  let written = 0;
  const skippedBy = new Map<string, number>();
  const planned: string[] = [];
  const skippedOn = new Map<string, string[]>();
  for (const entry of b.loadBalancers) {
    for (const a of entry.plan.actions) servers.add(a.server);
    if (entry.plan.status === 'skipped') {
      const reason = entry.plan.reason ?? 'unknown';
      skippedOn.set(reason, [...(skippedOn.get(reason) ?? []), entry.loadBalancer]);
      continue;
    }
    planned.push(entry.loadBalancer);
    failedWrites += entry.apply.failed.length;
    written += entry.apply.changed;
    for (const a of entry.plan.actions) {
      if (a.kind === 'set-weight') changed++;
      else if (a.kind === 'unchanged') unchanged++;
      else skippedBy.set(a.reason ?? 'unknown', (skippedBy.get(a.reason ?? 'unknown') ?? 0) + 1);
    }
  }
  const parts: string[] = [`${servers.size} server(s)`];
  if (planned.length > 0) {
    const skipped = [...skippedBy.values()].reduce((n, c) => n + c, 0);
    const reasons = [...skippedBy].map(([reason, n]) => `${reason} ${n}`).join(', ');
    const each = planned.length > 1 ? ` over ${planned.length} load balancers` : '';
    parts.push(
      `${mode === 'plan' ? `${changed} to change` : `${written} changed`}, ${unchanged} unchanged, ${skipped} skipped${skipped > 0 ? ` (${reasons})` : ''}${failedWrites > 0 ? `, ${failedWrites} write(s) failed` : ''}${each}`,
    );
  }
  for (const [reason, lbs] of skippedOn) parts.push(`backend skipped on ${lbs.join(', ')} (${reason})`);
  parts.push(`imbalance ${b.imbalance === null ? '-' : `${b.imbalance.toFixed(2)} (max/mean load)`}`);
  return parts.join('; ');
}

function formatLoad(load: number | null): string {
  if (load === null) return '-';
  if (load >= 1e6) return load.toExponential(2);
  return load.toFixed(load >= 100 ? 0 : 2);
}

/** The rule that decided a weight, in a few words. */
const RULE: Readonly<Record<NonNullable<ActionReport['rule']>, string>> = {
  balanced: 'balanced',
  deadband: 'deadband',
  'follow-sessions': 'follows sessions',
  deficit: 'deficit',
  function: 'function',
  'no-sessions': 'few sessions',
  bound: 'bound',
  sinkhole: 'SINKHOLE',
  'new-server': 'new server',
  'keep-share': 'keeps share',
  guard: 'guard',
};

function describeAction(action: ActionReport, applyFailed: ReadonlyMap<string, string>): { next: string; what: string } {
  const detail = action.kind !== 'skip' && action.detail !== null ? `: ${action.detail}` : '';
  switch (action.kind) {
    case 'set-weight': {
      const failure = applyFailed.get(action.server);
      return { next: String(action.weight ?? action.current), what: failure === undefined ? `set-weight${detail}` : `FAILED: ${failure}` };
    }
    case 'unchanged':
      return { next: String(action.current), what: `unchanged${detail}` };
    case 'skip':
      return { next: String(action.current), what: `skip (${action.reason ?? 'unknown'}): ${action.detail ?? ''}` };
  }
}

function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  ')).join('\n');
}

/** What HAProxy's refusal means for a group of servers: the error message names one server, this names none. */
const REFUSAL: Readonly<Record<HaproxyErrorKind, string>> = {
  'no-such-backend': 'HAProxy has no such backend',
  'no-such-server': 'HAProxy has no such server',
  'permission-denied': 'changing weights needs a runtime socket at "level admin" (Permission denied)',
  'static-algorithm': 'the backend uses a static balance algorithm (static-rr or map-based hashing), which only takes weights 0% and 100%',
  'out-of-range': 'HAProxy refused the weight as out of range',
  'bad-weight-string': 'HAProxy could not parse the weight',
  'unexpected-reply': 'HAProxy gave an unexpected reply',
};

function refusalText(kind: string | null): string | undefined {
  return kind !== null && Object.hasOwn(REFUSAL, kind) ? REFUSAL[kind as HaproxyErrorKind] : undefined;
}

function where(p: Pick<Problem, 'loadBalancer' | 'backend' | 'server'>): string {
  const parts: string[] = [];
  if (p.loadBalancer !== null) parts.push(p.loadBalancer);
  if (p.backend !== null) parts.push(`backend ${p.backend}`);
  if (p.server !== null) parts.push(`server ${p.server}`);
  return parts.join(': ');
}

function applyOf(report: CycleReport, backend: string | null, loadBalancer: string | null): ApplyReport | undefined {
  return report.backends.find((b) => b.backend === backend)?.loadBalancers.find((l) => l.loadBalancer === loadBalancer)?.apply;
}

/**
 * One line per problem, except the per-server problems of one batch: weights refused for the same
 * reason, and weights a failed batch left unconfirmed, share one line per backend and load balancer.
 */
function problemLines(report: CycleReport): string[] {
  // In report order; a group sits where its first problem was.
  const entries: (string | Problem[])[] = [];
  const groups = new Map<string, Problem[]>();
  for (const p of report.problems) {
    if ((p.code !== 'weight-refused' && p.code !== 'batch-unconfirmed') || p.server === null) {
      const head = where(p);
      entries.push(`${head === '' ? '' : `${head}: `}${p.message}${p.cause === null ? '' : `: ${p.cause.message}`}`);
      continue;
    }
    const key = JSON.stringify([p.code, p.loadBalancer, p.backend, p.code === 'weight-refused' ? (p.cause?.kind ?? null) : null]);
    const group = groups.get(key);
    if (group !== undefined) group.push(p);
    else {
      const created = [p];
      groups.set(key, created);
      entries.push(created);
    }
  }
  return entries.map((entry) => (typeof entry === 'string' ? entry : serverGroupLine(report, entry)));
}

function serverGroupLine(report: CycleReport, group: readonly Problem[]): string {
  const [first] = group;
  if (first === undefined) return '';
  const servers = group.map((p) => p.server ?? '').join(', ');
  const head = `${where({ ...first, server: null })}: ${group.length} weight(s)`;
  if (first.code === 'weight-refused') {
    const why = group.length === 1 ? (first.cause?.message ?? '') : (refusalText(first.cause?.kind ?? null) ?? first.cause?.message ?? '');
    return `${head} refused (${servers}): ${why}`;
  }
  const apply = applyOf(report, first.backend, first.loadBalancer);
  const held = new Map((apply?.failed ?? []).map((f) => [f.server, f.heldWeight]));
  const readBack =
    apply?.readBack === true
      ? `; read back: ${group.map((p) => `${p.server ?? ''}=${held.get(p.server ?? '') ?? 'unknown (server gone)'}`).join(', ')}`
      : '; weights could not be read back';
  return `${head} not confirmed (${servers}): ${apply?.error ?? first.cause?.message ?? 'unknown'}${readBack}`;
}

/** Load balancers that agree on everything share one table: 3 identical tables hide the one that differs. */
function groupLoadBalancers(entries: readonly LoadBalancerPlanReport[]): { names: string[]; entry: LoadBalancerPlanReport; messages: Set<string | null> }[] {
  const groups = new Map<string, { names: string[]; entry: LoadBalancerPlanReport; messages: Set<string | null> }>();
  for (const entry of entries) {
    // The skip message may name the load balancer; equal decisions and results still share a table.
    const key = JSON.stringify({ plan: { ...entry.plan, message: null }, apply: entry.apply });
    const group = groups.get(key);
    if (group === undefined) groups.set(key, { names: [entry.loadBalancer], entry, messages: new Set([entry.plan.message]) });
    else {
      group.names.push(entry.loadBalancer);
      group.messages.add(entry.plan.message);
    }
  }
  return [...groups.values()];
}

/** Names shown in one line of the human view; the JSON report holds every one. */
export const NAMES_SHOWN = 20;

/**
 * A list of names for a person: all of them when they are few, else the first NAMES_SHOWN and how
 * many more (a too-broad target may name 150,000 servers no load balancer has).
 */
function someOf(names: readonly string[]): string {
  if (names.length <= NAMES_SHOWN) return names.join(', ');
  return `${names.slice(0, NAMES_SHOWN).join(', ')} and ${names.length - NAMES_SHOWN} more (${names.length} in all; --json lists every one)`;
}

/** The human view of a cycle: one table per backend and load balancer, then a summary. */
export function formatReport(report: CycleReport, options: FormatOptions = {}): string {
  const changesOnly = options.changesOnly === true;
  const out: string[] = [];
  for (const b of report.backends) {
    const graphite = b.graphite.ok ? '' : `  Graphite FAILED: ${b.graphite.error ?? 'unknown error'}`;
    out.push(`backend ${b.backend}${graphite}`);
    out.push(`  summary: ${backendSummary(b, report.mode)}`);
    if (b.graphite.unmapped.length > 0) out.push(`  series not mapped to a server: ${someOf(b.graphite.unmapped)}`);
    if (b.graphite.unknownServers.length > 0) out.push(`  series for servers no load balancer has: ${someOf(b.graphite.unknownServers)}`);
    for (const { names, entry, messages } of groupLoadBalancers(b.loadBalancers)) {
      const { plan, apply } = entry;
      const failed = new Map<string, string>();
      for (const f of apply.failed) failed.set(f.server, f.error);
      const each = names.length > 1 ? ' each' : '';
      const [message] = messages;
      const why = messages.size === 1 && message !== null && message !== undefined ? `: ${message}` : ' (see the problems below)';
      const head =
        plan.status === 'planned'
          ? `  on ${names.join(', ')} (${plan.algorithm ?? 'unknown'})${apply.status === 'applied' ? `: ${apply.changed} weight(s) written${each}` : ''}`
          : `  on ${names.join(', ')}: SKIPPED (${plan.reason ?? 'unknown'})${why}`;
      out.push(head);
      if (plan.reload !== null) out.push(`    reload: ${plan.reload}`);
      // A skipped backend changes nothing: the changes-only view lists none of its servers.
      const actions = changesOnly ? (plan.status === 'planned' ? plan.actions.filter((a) => mattersForChanges(a, failed)) : []) : plan.actions;
      if (changesOnly && plan.status === 'planned' && actions.length === 0) out.push('    no weight to change');
      if (actions.length > 0) {
        const rows: string[][] = [['    server', 'load', 'load now', 'sessions', 'weight', 'target', 'new', 'rule', 'action']];
        for (const a of actions) {
          const { next, what } = describeAction(a, failed);
          const planned = plan.status === 'planned';
          rows.push([
            `    ${a.server}`,
            formatLoad(a.load),
            formatLoad(a.loadNow),
            a.sessions === null ? '-' : String(a.sessions),
            String(a.current),
            a.target === null ? '-' : a.target.toFixed(1),
            planned ? next : '-',
            a.rule === null ? '-' : RULE[a.rule],
            planned ? what : 'kept (backend skipped)',
          ]);
        }
        out.push(table(rows));
      }
    }
    out.push('');
  }
  const lbFailed = report.failedLoadBalancers.length === 0 ? '' : `; failed load balancers: ${report.failedLoadBalancers.join(', ')}`;
  const verb = report.mode === 'plan' ? 'plan only, nothing written' : `${report.serversChanged} weight(s) written`;
  out.push(`outcome: ${report.outcome} (${verb}; ${report.durationMs} ms${lbFailed})`);
  for (const line of problemLines(report)) out.push(`  problem: ${line}`);
  return out.join('\n');
}
