import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { PROBLEM_CODES, REPORT_SCHEMA_VERSION, cycleReportSchema, reportJsonSchemaText } from '../../functions/core/report-schema.js';
import { checkedReport, REPORT_SCHEMA_PATH } from '../harness/report.js';

const valid = {
  schemaVersion: REPORT_SCHEMA_VERSION,
  version: '0.1.0',
  mode: 'apply',
  force: false,
  startedAt: '2024-01-01T00:00:00.000Z',
  durationMs: 12,
  outcome: 'partial',
  serversChanged: 1,
  failedLoadBalancers: ['lb1'],
  staticRefusals: [],
  problems: [
    {
      code: 'weight-refused',
      severity: 'error',
      loadBalancer: 'lb1',
      backend: 'be',
      server: 's2',
      message: 'weight 9 refused',
      cause: { type: 'haproxy', kind: 'no-such-server', message: 'HAProxy has no server s2 in backend be on load balancer lb1' },
    },
  ],
  backends: [
    {
      backend: 'be',
      graphite: { ok: true, error: null, unmapped: [], unknownServers: [] },
      loads: { s1: 10, s2: 20 },
      imbalance: 1.33,
      loadBalancers: [
        {
          loadBalancer: 'lb1',
          plan: {
            status: 'planned',
            reason: null,
            message: null,
            algorithm: 'leastconn',
            imbalance: 1.33,
            reload: null,
            actions: [
              { kind: 'set-weight', server: 's1', load: 10, current: 100, weight: 256, reason: null, detail: null, sessions: 10, loadNow: null, target: 256, rule: 'deficit' },
              { kind: 'set-weight', server: 's2', load: 20, current: 100, weight: 9, reason: null, detail: null, sessions: 40, loadNow: 21.5, target: 9.2, rule: 'deficit' },
            ],
          },
          apply: {
            status: 'failed',
            changed: 1,
            failed: [{ server: 's2', weight: 9, code: 'weight-refused', kind: 'no-such-server', error: 'HAProxy has no server s2', heldWeight: null }],
            error: null,
            readBack: false,
          },
        },
      ],
    },
  ],
  loadBalancers: [{ name: 'lb1', observe: 'ok', apply: 'failed', error: null }],
};

describe('the report schema', () => {
  it('is shipped in docs/report.schema.json exactly as `npm run schema` writes it', () => {
    expect(readFileSync(REPORT_SCHEMA_PATH, 'utf8')).toBe(reportJsonSchemaText());
  });

  it('accepts a complete report, in the shipped JSON Schema and in the zod schema alike', () => {
    expect(checkedReport(valid)).toEqual(valid);
    expect(cycleReportSchema.parse(valid)).toEqual(valid);
  });

  it.each([
    ['a missing field (never absent: null where it does not apply)', (r: Record<string, unknown>) => ({ ...r, staticRefusals: undefined })],
    ['an unknown field', (r: Record<string, unknown>) => ({ ...r, extra: true })],
    ['another schema version', (r: Record<string, unknown>) => ({ ...r, schemaVersion: REPORT_SCHEMA_VERSION + 1 })],
    ['an unknown problem code', (r: Record<string, unknown>) => ({ ...r, problems: [{ ...valid.problems[0], code: 'something-else' }] })],
    ['a problem without its server field', (r: Record<string, unknown>) => ({ ...r, problems: [{ ...valid.problems[0], server: undefined }] })],
    ['a start time that is not a UTC timestamp', (r: Record<string, unknown>) => ({ ...r, startedAt: 'yesterday' })],
  ])('rejects %s in both schemas', (_what, edit) => {
    const bad: unknown = JSON.parse(JSON.stringify(edit(valid)));
    expect(() => checkedReport(bad)).toThrow(/does not match docs\/report\.schema\.json/);
    expect(cycleReportSchema.safeParse(bad).success).toBe(false);
  });

  it('lists every problem code in the shipped schema, so consumers can switch on them', () => {
    const text = readFileSync(REPORT_SCHEMA_PATH, 'utf8');
    for (const code of PROBLEM_CODES) expect(text).toContain(`"${code}"`);
  });
});
