import { describe, expect, it } from 'vitest';
import { REPORT_SCHEMA_VERSION, cycleReportSchema } from '../../functions/core/report-schema.js';
import { problem, type BackendReport, type CycleReport } from '../../functions/core/report.js';
import { emfDocumentsFor } from '../harness/emf.js';

function backend(name: string, imbalance: number | null, graphiteOk = true): BackendReport {
  return { backend: name, graphite: { ok: graphiteOk, error: graphiteOk ? null : 'HTTP 500', unmapped: [], unknownServers: [] }, loads: {}, imbalance, loadBalancers: [] };
}

/** A valid report (checked against the schema), with the fields a case is about overridden. */
function report(overrides: Partial<CycleReport>): CycleReport {
  return cycleReportSchema.parse({
    schemaVersion: REPORT_SCHEMA_VERSION,
    version: '0.0.0-test',
    mode: 'apply',
    force: false,
    startedAt: '2024-01-01T00:00:00.000Z',
    durationMs: 1234,
    outcome: 'ok',
    serversChanged: 0,
    failedLoadBalancers: [],
    staticRefusals: [],
    problems: [],
    backends: [],
    loadBalancers: [],
    ...overrides,
  });
}

/** The metrics of one report as the handler sends them: emitted, then flushed at the end of the invocation (logMetrics). */
function emitted(r: CycleReport): Record<string, unknown>[] {
  return emfDocumentsFor(r, { namespace: 'HaproxyWeighterTest', serviceName: 'haproxy-weighter' });
}

/** The document of the totals (service dimension only). */
function totals(docs: readonly Record<string, unknown>[]): Record<string, unknown> | undefined {
  return docs.find((d) => 'ServersChanged' in d);
}

describe('emitCycleMetrics', () => {
  it('emits the cycle totals under the service dimension', () => {
    const docs = emitted(
      report({ durationMs: 2500, serversChanged: 7, failedLoadBalancers: ['i-0a'], backends: [backend('be_a', 1.8), backend('be_b', null, false), backend('be_c', 1.2)] }),
    );
    expect(totals(docs)).toMatchObject({ service: 'haproxy-weighter', CycleDuration: 2500, CyclesCompleted: 1, ServersChanged: 7, LoadBalancersFailed: 1, GraphiteFailures: 1, MaxImbalance: 1.8 });
    const definitions = JSON.stringify(totals(docs)?._aws);
    expect(definitions).toContain('"Name":"CycleDuration","Unit":"Milliseconds"');
    expect(definitions).toContain('"Dimensions":[["service"]]');
  });

  it('emits the imbalance of each backend with its name as a dimension', () => {
    const docs = emitted(report({ backends: [backend('be_a', 1.8), backend('be_b', null), backend('be_c', 1.2)] }));
    expect(docs.filter((d) => 'Imbalance' in d).map((d) => [d.Backend, d.Imbalance])).toEqual([
      ['be_a', 1.8],
      ['be_c', 1.2],
    ]);
  });

  it('names each failed load balancer in its own metric', () => {
    const docs = emitted(report({ failedLoadBalancers: ['i-0a', 'i-0b'], outcome: 'partial' }));
    expect(docs.filter((d) => 'LoadBalancerFailed' in d).map((d) => [d.LoadBalancer, d.LoadBalancerFailed])).toEqual([
      ['i-0a', 1],
      ['i-0b', 1],
    ]);
  });

  it('does not count a failed cycle as completed, so the no-cycle alarm sees Graphite down on every backend', () => {
    const docs = emitted(report({ outcome: 'failed', backends: [backend('be_a', null, false)] }));
    expect(totals(docs)).not.toHaveProperty('CyclesCompleted');
    expect(totals(docs)).toHaveProperty('GraphiteFailures', 1);
  });

  it('does not count a dry run as a completed cycle and omits MaxImbalance without data', () => {
    const docs = emitted(report({ mode: 'plan', backends: [backend('be_a', null)] }));
    expect(totals(docs)).not.toHaveProperty('CyclesCompleted');
    expect(totals(docs)).not.toHaveProperty('MaxImbalance');
    expect(totals(docs)).toHaveProperty('ServersChanged', 0);
  });

  it('counts the problems of each code under its own Code dimension', () => {
    const problems = [
      problem('weight-refused', { loadBalancer: 'i-0a', backend: 'be_a', server: 's1' }, 'weight 5 refused'),
      problem('weight-refused', { loadBalancer: 'i-0a', backend: 'be_a', server: 's2' }, 'weight 9 refused'),
      problem('graphite-auth', { backend: 'be_b' }, 'no weight changed because Graphite failed'),
    ];
    const docs = emitted(report({ outcome: 'partial', serversChanged: 3, problems }));
    expect(docs.filter((d) => 'Problems' in d).map((d) => [d.Code, d.Problems])).toEqual([
      ['weight-refused', 2],
      ['graphite-auth', 1],
    ]);
  });
});
