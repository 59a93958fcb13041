import { CHECK_KINDS } from '../core/doctor-version.js';
import { doctorExitCode, type CheckKind, type DoctorCheck, type DoctorReport } from '../core/doctor.js';

/** The human view of a doctor report: one line per check (load balancers that agree share it), the fix under each that is not ok. */

const LABEL: Readonly<Record<CheckKind, string>> = {
  'graphite-reachable': 'reachable',
  'graphite-authenticated': 'authenticated',
  'target-coverage': 'target coverage',
  'load-balancer-reachable': 'runtime API reachable',
  'admin-level': 'level admin',
  'backend-present': 'present',
  'backend-algorithm': 'algorithm',
  servers: 'servers',
  'ssm-document': 'Command document',
  'instances-found': 'instances',
  'instance-online': 'online',
  'instance-tag': 'tagged',
  'ssm-agent-version': 'SSM Agent',
};

const STATUS: Readonly<Record<DoctorCheck['status'], string>> = { ok: 'ok', warning: 'WARNING', failed: 'FAILED', skipped: 'skipped' };

const AWS_CHECKS: ReadonlySet<CheckKind> = new Set(['ssm-document', 'instances-found', 'instance-online', 'instance-tag', 'ssm-agent-version']);
const GRAPHITE_CHECKS: ReadonlySet<CheckKind> = new Set(['graphite-reachable', 'graphite-authenticated']);
const LOAD_BALANCER_CHECKS: ReadonlySet<CheckKind> = new Set(['load-balancer-reachable', 'admin-level']);

interface Line {
  readonly check: DoctorCheck;
  readonly loadBalancers: string[];
}

/** Checks that differ only by load balancer share one line: by kind of check, then in report order. */
function grouped(checks: readonly DoctorCheck[]): Line[] {
  const lines = new Map<string, Line>();
  for (const check of checks) {
    const key = JSON.stringify({ ...check, loadBalancer: null });
    const line = lines.get(key);
    if (line === undefined) lines.set(key, { check, loadBalancers: check.loadBalancer === null ? [] : [check.loadBalancer] });
    else if (check.loadBalancer !== null) line.loadBalancers.push(check.loadBalancer);
  }
  const rank = (line: Line): number => CHECK_KINDS.indexOf(line.check.check);
  return [...lines.values()].sort((a, b) => rank(a) - rank(b));
}

function render(lines: readonly Line[]): string[] {
  const out: string[] = [];
  for (const { check, loadBalancers } of lines) {
    const on = loadBalancers.length === 0 ? '' : `${loadBalancers.join(', ')}: `;
    out.push(`  ${STATUS[check.status].padEnd(8)} ${on}${LABEL[check.check]}: ${check.message}`);
    if (check.fix !== null) out.push(`  ${''.padEnd(8)} fix: ${check.fix}`);
  }
  return out;
}

export function formatDoctorReport(report: DoctorReport): string {
  const { counts } = report;
  const out: string[] = [
    `doctor: ${counts.failed} failed, ${counts.warning} warning(s), ${counts.ok} ok${counts.skipped > 0 ? `, ${counts.skipped} skipped` : ''} (haproxy-weighter ${report.version}, ${report.durationMs} ms)`,
  ];
  const section = (title: string, checks: readonly DoctorCheck[]): void => {
    if (checks.length === 0) return;
    out.push('', title, ...render(grouped(checks)));
  };
  section('AWS', report.checks.filter((c) => AWS_CHECKS.has(c.check)));
  section('Graphite', report.checks.filter((c) => GRAPHITE_CHECKS.has(c.check)));
  section('Load balancers', report.checks.filter((c) => LOAD_BALANCER_CHECKS.has(c.check)));
  const backends = [...new Set(report.checks.flatMap((c) => (c.backend === null ? [] : [c.backend])))];
  for (const backend of backends) section(`Backend ${backend}`, report.checks.filter((c) => c.backend === backend));
  out.push('', `outcome: ${report.outcome} (exit ${doctorExitCode(report)})`);
  return out.join('\n');
}
