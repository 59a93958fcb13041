/**
 * Every report a test gets (the CLI's `--json`, the Lambda's result, an in-process cycle) is
 * checked against the JSON Schema shipped in docs/report.schema.json, with a JSON Schema validator
 * (Ajv) rather than the zod schema it was generated from: what users validate against is the file.
 * And the one way tests read problems: by code and place.
 */
import { readFileSync } from 'node:fs';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import type { DoctorReport } from '../../functions/core/doctor-schema.js';
import type { CycleReport } from '../../functions/core/report.js';

export const REPORT_SCHEMA_PATH = new URL('../../docs/report.schema.json', import.meta.url);
export const DOCTOR_SCHEMA_PATH = new URL('../../docs/doctor.schema.json', import.meta.url);

const addFormats = addFormatsModule.default;
const ajv = new Ajv2020({ allErrors: true, strict: true });
addFormats(ajv);

/**
 * A checker against the JSON Schema at `path` (a file in docs/): through JSON first, because what is checked is
 * what a consumer of `--json` or of the Lambda receives; throws naming every violation.
 */
function checkerOf<T>(what: string, path: URL): (value: unknown) => T {
  const validate = ajv.compile<T>(JSON.parse(readFileSync(path, 'utf8')));
  const shown = `docs/${path.pathname.slice(path.pathname.lastIndexOf('/') + 1)}`;
  return (value) => {
    const json: unknown = JSON.parse(JSON.stringify(value));
    if (validate(json)) return json;
    const errors = (validate.errors ?? []).map((e) => `${e.instancePath || '(root)'} ${e.message ?? ''}`).join('; ');
    throw new Error(`${what} does not match ${shown}: ${errors}`);
  };
}

/** The report, checked against the shipped JSON Schema; throws naming every violation. */
export const checkedReport: (value: unknown) => CycleReport = checkerOf('the report', REPORT_SCHEMA_PATH);

/** The doctor's report, checked against the shipped docs/doctor.schema.json; throws naming every violation. */
export const checkedDoctorReport: (value: unknown) => DoctorReport = checkerOf('the doctor report', DOCTOR_SCHEMA_PATH);

/** Each check as [check, status, code, load balancer, backend]: what a test branches on, never the message text. */
export function checksOf(report: Pick<DoctorReport, 'checks'>): [string, string, string | null, string | null, string | null][] {
  return report.checks.map((c) => [c.check, c.status, c.code, c.loadBalancer, c.backend]);
}

/** Each problem as [code, load balancer, backend, server]: what a test branches on, never the message text. */
export function problemsOf(report: Pick<CycleReport, 'problems'>): [string, string | null, string | null, string | null][] {
  return report.problems.map((p) => [p.code, p.loadBalancer, p.backend, p.server]);
}
