import { MetricUnit, type Metrics } from '@aws-lambda-powertools/metrics';
import type { CycleReport } from '../core/cycle.js';

/**
 * CloudWatch metrics of one cycle, emitted as EMF through Powertools. The names are what the
 * alarms in `serverless.yml` watch; keep the two in step.
 */
export const METRIC = {
  cycleDuration: 'CycleDuration',
  cyclesCompleted: 'CyclesCompleted',
  serversChanged: 'ServersChanged',
  loadBalancersFailed: 'LoadBalancersFailed',
  loadBalancerFailed: 'LoadBalancerFailed',
  graphiteFailures: 'GraphiteFailures',
  imbalance: 'Imbalance',
  maxImbalance: 'MaxImbalance',
  problems: 'Problems',
} as const;

/**
 * Emits the metrics of a report; the totals are flushed when the invocation ends (the handler's
 * logMetrics middleware). Totals carry only the service dimension (one alarm each); imbalance per
 * backend, each failed load balancer and the problems of each code get their own dimension so a
 * chart or an alarm notification names them. Only apply cycles that did
 * not fail count as completed: a dry run does not keep the fleet balanced, and a failed one did
 * not either.
 */
export function emitCycleMetrics(metrics: Metrics, report: CycleReport): void {
  metrics.addMetric(METRIC.cycleDuration, MetricUnit.Milliseconds, report.durationMs);
  // A failed cycle (nothing written, something wrong) must not keep the no-cycle alarm quiet.
  if (report.mode === 'apply' && report.outcome !== 'failed') metrics.addMetric(METRIC.cyclesCompleted, MetricUnit.Count, 1);
  metrics.addMetric(METRIC.serversChanged, MetricUnit.Count, report.serversChanged);
  metrics.addMetric(METRIC.loadBalancersFailed, MetricUnit.Count, report.failedLoadBalancers.length);
  metrics.addMetric(METRIC.graphiteFailures, MetricUnit.Count, report.backends.filter((b) => !b.graphite.ok).length);
  const imbalances = report.backends.flatMap((b) => (b.imbalance === null || !Number.isFinite(b.imbalance) ? [] : [b.imbalance]));
  if (imbalances.length > 0) metrics.addMetric(METRIC.maxImbalance, MetricUnit.NoUnit, Math.max(...imbalances));

  for (const b of report.backends) {
    if (b.imbalance === null || !Number.isFinite(b.imbalance)) continue;
    const single = metrics.singleMetric();
    single.addDimension('Backend', b.backend);
    single.addMetric(METRIC.imbalance, MetricUnit.NoUnit, b.imbalance);
  }
  for (const lb of report.failedLoadBalancers) {
    const single = metrics.singleMetric();
    single.addDimension('LoadBalancer', lb);
    single.addMetric(METRIC.loadBalancerFailed, MetricUnit.Count, 1);
  }
  const perCode = new Map<string, number>();
  for (const p of report.problems) perCode.set(p.code, (perCode.get(p.code) ?? 0) + 1);
  for (const [code, count] of perCode) {
    const single = metrics.singleMetric();
    single.addDimension('Code', code);
    single.addMetric(METRIC.problems, MetricUnit.Count, count);
  }
}
