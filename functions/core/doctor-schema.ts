import * as z from 'zod';
import { CHECK_KINDS, DOCTOR_SCHEMA_VERSION } from './doctor-version.js';

/**
 * The doctor's report, version 1: what `haproxy-weighter doctor --json` prints and what the Lambda
 * returns for `{"doctor": true}`. One check per piece a cycle needs, each ok, warning, failed (with
 * a code and the fix) or skipped (because a piece it depends on failed). The TypeScript types are
 * inferred from this schema, and the JSON Schema shipped in `docs/doctor.schema.json` is generated
 * from it (`npm run schema`; a unit test keeps the file current). Every field is always present:
 * null where it does not apply.
 *
 * `schemaVersion` (doctor-version.ts) changes whenever a field is added, removed or changes meaning.
 */
export { CHECK_KINDS, DOCTOR_SCHEMA_VERSION };

export const DOCTOR_SCHEMA_ID = `urn:haproxy-weighter:doctor:v${DOCTOR_SCHEMA_VERSION}`;

/** Why a check failed or warns, as a code scripts can branch on. */
export const DOCTOR_CODES = [
  // Graphite.
  'graphite-unreachable',
  'graphite-auth',
  'graphite-secret-missing',
  'graphite-http-status',
  'graphite-bad-reply',
  // A backend's target.
  'target-no-series',
  'target-matches-no-server',
  'coverage-below-quorum',
  'coverage-partial',
  'series-unmatched',
  // A load balancer's runtime API.
  'socket-missing',
  'socket-refused',
  'socket-permission',
  'runtime-unreachable',
  'relay-failed',
  'level-not-admin',
  'level-unknown',
  // A backend on a load balancer.
  'backend-not-found',
  'observe-failed',
  'static-algorithm',
  'hash-type-unverified',
  'algorithm-unrecognised',
  'unaddressable-servers',
  'no-servers',
  // AWS.
  'document-missing',
  'document-not-stack',
  'ssm-api-failed',
  'no-instances',
  'instance-offline',
  'instance-unknown',
  'instance-not-tagged',
  'agent-too-old',
] as const;

export const checkKindSchema = z.enum(CHECK_KINDS).describe('What the check looks at');
export const doctorCodeSchema = z.enum(DOCTOR_CODES).describe('Why the check failed or warns; the list grows with new schema versions');

export const coverageSchema = z
  .strictObject({
    servers: z.number().int().min(0).describe('Servers the load balancers have in the backend (every one that could be read)'),
    withData: z.number().int().min(0).describe('Of those, the servers a series with at least one point maps to'),
    withoutData: z.array(z.string()).describe('The servers no series with a point maps to: they keep their weight'),
    series: z.number().int().min(0).describe('Series the target returned'),
    unmappedSeries: z.array(z.string()).describe('Series whose names do not map to a server name we may address'),
    unknownServers: z.array(z.string()).describe('Servers a series maps to that no load balancer has'),
  })
  .describe("How a backend's target covers its servers");

const place = {
  check: checkKindSchema,
  loadBalancer: z.string().nullable().describe('The load balancer (an instance id in AWS) checked; null when the check is not about one'),
  backend: z.string().nullable().describe('The backend checked; null when the check is not about one'),
  message: z.string().describe('What was found, in one line, without the load balancer and backend names (they are in their own fields)'),
  coverage: coverageSchema.nullable().describe('target-coverage: how the target covers the servers; null for other checks, or when it could not be measured'),
};

export const doctorCheckSchema = z
  .discriminatedUnion('status', [
    z.strictObject({ status: z.literal('ok'), ...place, code: z.null(), fix: z.null() }).describe('The piece works as a cycle needs it'),
    z
      .strictObject({ status: z.literal('warning'), ...place, code: doctorCodeSchema, fix: z.string().describe('What to do about it') })
      .describe('A cycle runs, but not as well as it could (servers without data, a hash type that cannot be seen)'),
    z.strictObject({ status: z.literal('failed'), ...place, code: doctorCodeSchema, fix: z.string().describe('What to do about it') }).describe('A cycle would fail or change nothing here'),
    z.strictObject({ status: z.literal('skipped'), ...place, code: z.null(), fix: z.null() }).describe('Not checked: a piece it needs failed (the message says which)'),
  ])
  .describe('One check');

export const doctorReportSchema = z
  .strictObject({
    schemaVersion: z.literal(DOCTOR_SCHEMA_VERSION),
    mode: z.literal('doctor').describe('Tells a doctor report from a cycle report (whose mode is plan or apply)'),
    version: z.string().describe('The haproxy-weighter version that wrote the report'),
    startedAt: z.iso.datetime().describe('When the checks started (UTC)'),
    durationMs: z.number().int().min(0),
    outcome: z.enum(['ok', 'failed']).describe('failed when any check failed (exit code 1); warnings keep it ok'),
    counts: z
      .strictObject({ ok: z.number().int().min(0), warning: z.number().int().min(0), failed: z.number().int().min(0), skipped: z.number().int().min(0) })
      .describe('Checks per status'),
    checks: z.array(doctorCheckSchema),
  })
  .meta({ title: 'haproxy-weighter doctor report', description: 'What haproxy-weighter doctor --json prints and the Lambda returns for {"doctor": true}: every piece a cycle needs, checked without changing anything' });

export type CheckKind = z.infer<typeof checkKindSchema>;
export type DoctorCode = z.infer<typeof doctorCodeSchema>;
export type Coverage = z.infer<typeof coverageSchema>;
export type DoctorCheck = z.infer<typeof doctorCheckSchema>;
export type DoctorReport = z.infer<typeof doctorReportSchema>;

/** The JSON Schema of the doctor report, as shipped in docs/doctor.schema.json. */
export function doctorJsonSchema(): Record<string, unknown> {
  const { $schema, ...rest } = z.toJSONSchema(doctorReportSchema, { target: 'draft-2020-12' });
  return { $schema, $id: DOCTOR_SCHEMA_ID, ...rest };
}

/** The shipped file's exact text: `npm run schema` writes it, a unit test checks it is current. */
export function doctorJsonSchemaText(): string {
  return `${JSON.stringify(doctorJsonSchema(), null, 2)}\n`;
}
