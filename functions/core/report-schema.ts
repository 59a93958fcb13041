import * as z from 'zod';
import { REPORT_SCHEMA_VERSION } from './report-version.js';

/**
 * The cycle report, version 1: what `--json` prints, what the Lambda returns and what its metrics
 * are derived from. The TypeScript types are inferred from this schema, and the JSON Schema shipped
 * in `docs/report.schema.json` is generated from it (`npm run schema`; a unit test keeps the file
 * current). Every field is always present: null where it does not apply, never missing.
 *
 * `schemaVersion` (report-version.ts) changes whenever a field is added, removed or changes meaning.
 */
export { REPORT_SCHEMA_VERSION };

/** Identifies the schema document; not fetched from anywhere. */
export const REPORT_SCHEMA_ID = `urn:haproxy-weighter:report:v${REPORT_SCHEMA_VERSION}`;

/** What went wrong, as a code tests, alarms and scripts can branch on. */
export const PROBLEM_CODES = [
  // Graphite, per backend (the backend is skipped on every load balancer).
  'graphite-unreachable',
  'graphite-http-status',
  'graphite-auth',
  'graphite-bad-reply',
  // Observation, per load balancer (backend null: the whole load balancer) or per backend.
  'observe-failed',
  'backend-not-found',
  // Planning, per backend and load balancer: nothing is written there.
  'unsupported-algorithm',
  'no-servers',
  'no-quorum',
  // Writing.
  'static-refused',
  'weight-refused',
  'batch-unconfirmed',
  // The cycle's time budget ran out before these weights' batch was sent: HAProxy keeps its weights.
  'write-not-sent',
  'guard-unchecked',
  'operator-conflict-restored',
  'operator-conflict-restore-failed',
  // What the control loop saw (warnings): a new HAProxy process, a server that ingests nothing, a
  // render window that holds no point at all.
  'reload-detected',
  'sinkhole',
  'window-empty',
  // After the cycle (a warning: the cycle's outcome is unaffected).
  'history-not-sent',
] as const;

export const problemCodeSchema = z.enum(PROBLEM_CODES).describe('What went wrong; the list grows with new schema versions');

/** The classes of the error hierarchy in functions/core/errors.ts, and `other` for foreign errors. */
export const ERROR_TYPES = ['config', 'graphite', 'unsafe-input', 'haproxy', 'relay', 'history', 'other'] as const;

export const problemCauseSchema = z
  .strictObject({
    type: z.enum(ERROR_TYPES).describe('The error class: graphite, haproxy, relay, unsafe-input, config, history (sending the weight history), or other'),
    kind: z.string().nullable().describe("The error's finer class: HAProxy's (e.g. permission-denied, no-such-server) or Graphite's (unreachable, http-status, auth, bad-reply); null when it has none"),
    message: z.string().describe('The error message, naming the input that failed'),
  })
  .describe('The error behind a problem');

export const problemSchema = z
  .strictObject({
    code: problemCodeSchema,
    severity: z.enum(['error', 'warning']).describe('error: the cycle did not do all it should (the outcome is partial or failed); warning: reported, the outcome is unaffected'),
    loadBalancer: z.string().nullable().describe('The load balancer concerned; null when the problem is not tied to one (Graphite)'),
    backend: z.string().nullable().describe('The backend concerned; null when the whole load balancer failed'),
    server: z.string().nullable().describe('The server concerned; null when the problem is about a whole backend or load balancer'),
    message: z.string().describe('What happened, in one line, without the load balancer, backend and server names (they are in their own fields)'),
    cause: problemCauseSchema.nullable(),
  })
  .describe('One thing that went wrong in the cycle');

export const SERVER_SKIP_REASONS = ['maint', 'drain', 'weight-zero', 'no-data', 'unaddressable'] as const;

/** The rule that decided a server's weight (functions/core/plan.ts explains each). */
export const WEIGHT_RULES = ['balanced', 'deadband', 'follow-sessions', 'deficit', 'function', 'no-sessions', 'bound', 'sinkhole', 'new-server', 'keep-share', 'guard'] as const;
export const BACKEND_SKIP_REASONS = ['graphite-failed', 'no-quorum', 'unsupported-algorithm', 'observe-failed', 'backend-not-found', 'no-servers'] as const;

export const actionReportSchema = z
  .strictObject({
    kind: z.enum(['set-weight', 'unchanged', 'skip']),
    server: z.string(),
    load: z.number().nullable().describe('Aggregated load from Graphite; null when the server has none'),
    current: z.number().int().describe('The weight HAProxy held when observed'),
    weight: z.number().int().nullable().describe('The weight to write (set-weight); null otherwise'),
    reason: z.enum(SERVER_SKIP_REASONS).nullable().describe('Why the server is left alone (skip); null otherwise'),
    detail: z.string().nullable().describe('The reason in words: why it is skipped, or why it is weighed by share or flagged; null otherwise'),
    sessions: z.number().int().nullable().describe("The server's current sessions on this load balancer (scur); null when the backend is skipped"),
    loadNow: z.number().nullable().describe('The load estimated for now from what HAProxy placed and received since Graphite measured it; null when not estimated (the measured load stands)'),
    target: z.number().nullable().describe('The unrounded weight the rule asked for, before the 1..256 clamp and maxChangePerCycle; null when the backend is skipped'),
    rule: z
      .enum(WEIGHT_RULES)
      .nullable()
      .describe(
        'What decided the weight: deficit, deadband, follow-sessions or balanced (the feedback policy), no-sessions (too few sessions to trust: the weights follow the loads gently), function (a seed function), bound (clamped relative to the mean weight), sinkhole, new-server, keep-share (no data or out of service), guard (MAINT, DRAIN, weight 0); null when the backend is skipped',
      ),
  })
  .describe('The decision for one server');

export const planReportSchema = z
  .strictObject({
    status: z.enum(['planned', 'skipped']),
    reason: z.enum(BACKEND_SKIP_REASONS).nullable().describe('Why the backend is left alone on this load balancer (skipped); null when planned'),
    message: z.string().nullable().describe('The reason in words (skipped); null when planned'),
    algorithm: z.string().nullable().describe('The balance algorithm HAProxy reports; null when the backend could not be observed'),
    imbalance: z.number().nullable().describe('max/mean of the loads of the servers in service with data; null when it cannot be computed or the backend is skipped'),
    reload: z.string().nullable().describe('Why the weighter thinks a new HAProxy process took over since the previous cycle (run and a warm Lambda remember; a one-shot apply cannot tell); null otherwise'),
    actions: z.array(actionReportSchema).describe('One decision per observed server (skipped: the servers as observed, all kept)'),
  })
  .describe('The decision for one backend on one load balancer');

export const serverFailureSchema = z
  .strictObject({
    server: z.string(),
    weight: z.number().int().describe('The weight that was sent (not-sent: that was to be sent)'),
    code: z
      .enum(['weight-refused', 'batch-unconfirmed', 'not-sent'])
      .describe("weight-refused: HAProxy answered with an error; batch-unconfirmed: the batch failed as a whole, so no reply confirms the weight; not-sent: the cycle's time budget ran out before the batch was sent, so HAProxy keeps the weight it had"),
    kind: z.string().nullable().describe("HAProxy's error class (weight-refused), e.g. permission-denied, no-such-server, static-algorithm; null otherwise"),
    error: z.string().describe("HAProxy's error, or the batch's"),
    heldWeight: z.number().int().nullable().describe('The weight HAProxy held when read back after an unknown outcome; null when not read back or the server is gone'),
  })
  .describe('A weight that was sent and is not confirmed, or that the time budget left unsent');

export const applyReportSchema = z
  .strictObject({
    status: z.enum(['not-run', 'not-needed', 'applied', 'failed']).describe('not-run: plan mode, or the backend was skipped; not-needed: no weight to change; applied: every weight confirmed; failed: some weight not confirmed'),
    changed: z.number().int().describe('Weights HAProxy confirmed (or that were read back at their new value)'),
    failed: z.array(serverFailureSchema),
    error: z.string().nullable().describe('Why the batch failed as a whole (connection lost, reply cut short); null otherwise'),
    readBack: z.boolean().describe('True when the weights were read back after the batch failed as a whole'),
  })
  .describe('What happened to the weights written for one backend on one load balancer');

export const backendReportSchema = z
  .strictObject({
    backend: z.string(),
    graphite: z.strictObject({
      ok: z.boolean(),
      error: z.string().nullable().describe('Why Graphite failed; null when it answered'),
      unmapped: z.array(z.string()).describe('Series whose names do not map to a server name we may address'),
      unknownServers: z.array(z.string()).describe('Servers with a series that no load balancer has'),
    }),
    loads: z.record(z.string(), z.number()).describe('Aggregated load per server, as measured this cycle'),
    imbalance: z.number().nullable().describe('max/mean of the measured loads of the servers in service (not MAINT, DRAIN, DOWN, NOLB or weight 0) on every load balancer that observed them; null when it cannot be computed'),
    loadBalancers: z.array(
      z.strictObject({
        loadBalancer: z.string(),
        plan: planReportSchema,
        apply: applyReportSchema,
      }),
    ),
  })
  .describe('One backend: what Graphite said, and the decision and its outcome on each load balancer');

export const loadBalancerReportSchema = z.strictObject({
  name: z.string(),
  observe: z.enum(['ok', 'failed']),
  apply: z.enum(['ok', 'failed', 'not-needed', 'not-run']),
  error: z.string().nullable().describe('Why observing or the write batch failed as a whole; null otherwise'),
});

export const cycleReportSchema = z
  .strictObject({
    schemaVersion: z.literal(REPORT_SCHEMA_VERSION),
    version: z.string().describe('The haproxy-weighter version that wrote the report'),
    mode: z.enum(['plan', 'apply']),
    force: z.boolean(),
    startedAt: z.iso.datetime().describe('When the cycle started (UTC)'),
    durationMs: z.number().int().min(0),
    outcome: z.enum(['ok', 'partial', 'failed']).describe('ok: no problem of severity error; partial: some weights written and a problem; failed: nothing written and a problem'),
    serversChanged: z.number().int().min(0).describe('Weights written and confirmed, over every load balancer'),
    failedLoadBalancers: z.array(z.string()).describe('Load balancers that could not be observed or whose writes failed'),
    staticRefusals: z.array(z.string()).describe('backend@loadBalancer pairs that refused every weight as a static algorithm this cycle'),
    problems: z.array(problemSchema),
    backends: z.array(backendReportSchema),
    loadBalancers: z.array(loadBalancerReportSchema),
  })
  .meta({ title: 'haproxy-weighter cycle report', description: 'The report of one rebalance cycle (haproxy-weighter plan/apply/run --json, and the Lambda result)' });

export type ProblemCode = z.infer<typeof problemCodeSchema>;
export type ProblemCause = z.infer<typeof problemCauseSchema>;
export type Problem = z.infer<typeof problemSchema>;
export type ActionReport = z.infer<typeof actionReportSchema>;
export type WeightRule = (typeof WEIGHT_RULES)[number];
export type PlanReport = z.infer<typeof planReportSchema>;
export type ServerFailure = z.infer<typeof serverFailureSchema>;
export type ApplyReport = z.infer<typeof applyReportSchema>;
export type BackendReport = z.infer<typeof backendReportSchema>;
export type LoadBalancerPlanReport = BackendReport['loadBalancers'][number];
export type LoadBalancerReport = z.infer<typeof loadBalancerReportSchema>;
export type CycleReport = z.infer<typeof cycleReportSchema>;
export type CycleOutcome = CycleReport['outcome'];

/** The JSON Schema of the report, as shipped in docs/report.schema.json. */
export function reportJsonSchema(): Record<string, unknown> {
  const { $schema, ...rest } = z.toJSONSchema(cycleReportSchema, { target: 'draft-2020-12' });
  return { $schema, $id: REPORT_SCHEMA_ID, ...rest };
}

/** The shipped file's exact text: `npm run schema` writes it, a unit test checks it is current. */
export function reportJsonSchemaText(): string {
  return `${JSON.stringify(reportJsonSchema(), null, 2)}\n`;
}
