import type { CycleReport } from '../core/cycle.js';
import type { Action } from '../core/types.js';

function formatLoad(load: number | null): string {
  if (load === null) return '-';
  if (load >= 1e6) return load.toExponential(2);
  return load.toFixed(load >= 100 ? 0 : 2);
}

function describeAction(action: Action, applyFailed: ReadonlyMap<string, string>): { next: string; what: string } {
  switch (action.kind) {
    case 'set-weight': {
      const failure = applyFailed.get(action.server);
      return { next: String(action.weight), what: failure === undefined ? 'set-weight' : `FAILED: ${failure}` };
    }
    case 'unchanged':
      return { next: String(action.current), what: 'unchanged' };
    case 'skip':
      return { next: String(action.current), what: `skip (${action.reason}): ${action.detail}` };
  }
}

function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  ')).join('\n');
}

/** The human view of a cycle: one table per backend and load balancer, then a summary. */
export function formatReport(report: CycleReport): string {
  const out: string[] = [];
  for (const b of report.backends) {
    const graphite = b.graphite.ok ? '' : `  Graphite FAILED: ${b.graphite.error}`;
    out.push(`backend ${b.backend}${b.imbalance === null ? '' : `  imbalance ${b.imbalance.toFixed(2)} (max/mean load)`}${graphite}`);
    if (b.graphite.ok && b.graphite.unmapped.length > 0) out.push(`  series not mapped to a server: ${b.graphite.unmapped.join(', ')}`);
    // Load balancers that agree on everything share one table: 3 identical tables hide the one that differs.
    const groups = new Map<string, { names: string[]; lb: (typeof b.loadBalancers)[number] }>();
    for (const lb of b.loadBalancers) {
      const { loadBalancer: _name, ...rest } = lb;
      const key = JSON.stringify({ ...rest, plan: { ...rest.plan, loadBalancer: '', message: rest.plan.status === 'skipped' ? rest.plan.message.replaceAll(lb.loadBalancer, '<lb>') : '' } });
      const group = groups.get(key);
      if (group === undefined) groups.set(key, { names: [lb.loadBalancer], lb });
      else group.names.push(lb.loadBalancer);
    }
    for (const { names, lb } of groups.values()) {
      const plan = lb.plan;
      const failed = new Map<string, string>();
      if (lb.apply?.status === 'failed') for (const f of lb.apply.failed) failed.set(f.server, f.error);
      const each = names.length > 1 ? ' each' : '';
      const head =
        plan.status === 'planned'
          ? `  on ${names.join(', ')} (${plan.algorithm})${lb.apply?.status === 'applied' ? `: ${lb.apply.changed} weight(s) written${each}` : ''}`
          : `  on ${names.join(', ')}: SKIPPED (${plan.reason}): ${plan.message}`;
      out.push(head);
      if (plan.actions.length > 0) {
        const rows: string[][] = [['    server', 'load', 'weight', 'new', 'action']];
        for (const a of plan.actions) {
          const { next, what } = describeAction(a, failed);
          rows.push([`    ${a.server}`, formatLoad(a.load), String(a.current), plan.status === 'planned' ? next : '-', plan.status === 'planned' ? what : 'kept (backend skipped)']);
        }
        out.push(table(rows));
      }
    }
    out.push('');
  }
  const lbFailed = report.failedLoadBalancers.length === 0 ? '' : `; failed load balancers: ${report.failedLoadBalancers.join(', ')}`;
  const verb = report.mode === 'plan' ? 'plan only, nothing written' : `${report.serversChanged} weight(s) written`;
  out.push(`outcome: ${report.outcome} (${verb}; ${report.durationMs} ms${lbFailed})`);
  for (const p of report.problems) out.push(`  problem: ${p}`);
  return out.join('\n');
}
