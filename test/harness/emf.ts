/**
 * The CloudWatch metrics the Lambda sends for one report, as Powertools prints them: the handler's
 * emitCycleMetrics, then the flush its logMetrics middleware does when the invocation ends, read
 * back as EMF documents from stdout. Plain Node (no vitest spy): the soak uses it too.
 */
import { Metrics } from '@aws-lambda-powertools/metrics';
import { emitCycleMetrics } from '../../functions/aws/cycle-metrics.js';
import type { CycleReport } from '../../functions/core/report.js';

const isRecord = (d: unknown): d is Record<string, unknown> => typeof d === 'object' && d !== null && !Array.isArray(d);

/** The EMF documents printed for `report` under this namespace and service. */
export function emfDocumentsFor(report: CycleReport, names: { readonly namespace: string; readonly serviceName: string }): Record<string, unknown>[] {
  const lines: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = (chunk: string | Uint8Array, ..._rest: unknown[]): boolean => {
    lines.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
    return true;
  };
  try {
    const metrics = new Metrics({ namespace: names.namespace, serviceName: names.serviceName });
    emitCycleMetrics(metrics, report);
    metrics.publishStoredMetrics();
  } finally {
    process.stdout.write = write;
  }
  return lines
    .join('')
    .split('\n')
    .filter((l) => l.includes('"_aws"'))
    .map((l): unknown => JSON.parse(l))
    .filter(isRecord);
}
