import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CHECK_KINDS, DOCTOR_CODES, doctorJsonSchemaText, doctorReportSchema } from '../../functions/core/doctor-schema.js';
import { DOCTOR_SCHEMA_PATH, checkedDoctorReport } from '../harness/report.js';

const valid = {
  schemaVersion: 1,
  mode: 'doctor',
  version: '0.1.0',
  startedAt: '2024-01-01T00:00:00.000Z',
  durationMs: 40,
  outcome: 'failed',
  counts: { ok: 1, warning: 1, failed: 1, skipped: 1 },
  checks: [
    { status: 'ok', check: 'graphite-reachable', loadBalancer: null, backend: null, message: 'answered', coverage: null, code: null, fix: null },
    {
      status: 'warning',
      check: 'target-coverage',
      loadBalancer: null,
      backend: 'be',
      message: '1 of 2 server(s) have data',
      coverage: { servers: 2, withData: 1, withoutData: ['s2'], series: 1, unmappedSeries: [], unknownServers: [] },
      code: 'coverage-partial',
      fix: 'name each series like its server',
    },
    { status: 'failed', check: 'admin-level', loadBalancer: 'lb1', backend: null, message: 'level operator', coverage: null, code: 'level-not-admin', fix: 'level admin' },
    { status: 'skipped', check: 'backend-present', loadBalancer: 'lb2', backend: 'be', message: 'the load balancer could not be read', coverage: null, code: null, fix: null },
  ],
};

describe('the doctor report schema', () => {
  it('is shipped in docs/doctor.schema.json exactly as `npm run schema` writes it', () => {
    expect(readFileSync(DOCTOR_SCHEMA_PATH, 'utf8')).toBe(doctorJsonSchemaText());
  });

  it('accepts a report with a check of every status, in the shipped JSON Schema and in the zod schema alike', () => {
    expect(checkedDoctorReport(valid)).toEqual(valid);
    expect(doctorReportSchema.parse(valid)).toEqual(valid);
  });

  const editCheck = (i: number, edit: Record<string, unknown>) => (r: typeof valid) => ({ ...r, checks: r.checks.map((c, j) => (j === i ? { ...c, ...edit } : c)) });
  it.each([
    ['a failed check without its fix', editCheck(2, { fix: null })],
    ['a failed check without a code', editCheck(2, { code: null })],
    ['an ok check with a fix', editCheck(0, { fix: 'do something' })],
    ['a skipped check with a code', editCheck(3, { code: 'socket-missing' })],
    ['an unknown code', editCheck(2, { code: 'something-else' })],
    ['an unknown check', editCheck(0, { check: 'vibes' })],
    ['a missing field (never absent: null where it does not apply)', editCheck(0, { coverage: undefined })],
    ['a cycle report mode', (r: typeof valid) => ({ ...r, mode: 'plan' })],
    ['an unknown field', (r: typeof valid) => ({ ...r, extra: 1 })],
  ])('rejects %s in both schemas', (_what, edit) => {
    const bad: unknown = JSON.parse(JSON.stringify(edit(valid)));
    expect(() => checkedDoctorReport(bad)).toThrow(/does not match docs\/doctor\.schema\.json/);
    expect(doctorReportSchema.safeParse(bad).success).toBe(false);
  });

  it('lists every check and every code in the shipped schema, so scripts can switch on them', () => {
    const text = readFileSync(DOCTOR_SCHEMA_PATH, 'utf8');
    for (const word of [...CHECK_KINDS, ...DOCTOR_CODES]) expect(text).toContain(`"${word}"`);
  });
});
