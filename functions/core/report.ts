import { GraphiteError, HaproxyError, WeighterError, describeError } from './errors.js';
import type { CycleOutcome, CycleReport, Problem, ProblemCause, ProblemCode } from './report-schema.js';

/**
 * Helpers of the cycle report (its shape is the zod schema in report-schema.ts): typed problems
 * built from typed errors, and the outcome and exit code derived from them.
 */

export type {
  ActionReport,
  ApplyReport,
  BackendReport,
  CycleOutcome,
  CycleReport,
  LoadBalancerPlanReport,
  LoadBalancerReport,
  PlanReport,
  Problem,
  ProblemCause,
  ProblemCode,
  ServerFailure,
} from './report-schema.js';
export { REPORT_SCHEMA_VERSION } from './report-version.js';

/** The key of `knownStatic` and `staticRefusals`. */
export const staticKey = (backend: string, loadBalancer: string): string => `${backend}@${loadBalancer}`;

/** Any thrown value as the cause of a problem: its class and finer kind read from the error, never from its text. */
export function causeOf(error: unknown): ProblemCause {
  if (error instanceof HaproxyError || error instanceof GraphiteError) return { type: error.code, kind: error.kind, message: error.message };
  if (error instanceof WeighterError) {
    const type = error.code;
    return { type: type === 'config' || type === 'unsafe-input' || type === 'relay' || type === 'history' ? type : 'other', kind: null, message: error.message };
  }
  return { type: 'other', kind: null, message: describeError(error) };
}

/** Where a problem happened: null for what does not apply. */
export interface ProblemPlace {
  readonly loadBalancer?: string | null;
  readonly backend?: string | null;
  readonly server?: string | null;
}

export function problem(code: ProblemCode, place: ProblemPlace, message: string, cause: ProblemCause | null = null, severity: Problem['severity'] = 'error'): Problem {
  return { code, severity, loadBalancer: place.loadBalancer ?? null, backend: place.backend ?? null, server: place.server ?? null, message, cause };
}

/** The problem code of a Graphite failure, from the error's kind. */
export function graphiteProblemCode(error: unknown): ProblemCode {
  if (!(error instanceof GraphiteError)) return 'graphite-unreachable';
  switch (error.kind) {
    case 'unreachable':
      return 'graphite-unreachable';
    case 'http-status':
      return 'graphite-http-status';
    case 'auth':
      return 'graphite-auth';
    case 'bad-reply':
      return 'graphite-bad-reply';
  }
}

/**
 * ok: no problem of severity error; partial: some weights written and such a problem; failed:
 * nothing written and such a problem.
 */
export function outcomeOf(problems: readonly Problem[], serversChanged: number): CycleOutcome {
  if (!problems.some((p) => p.severity === 'error')) return 'ok';
  return serversChanged > 0 ? 'partial' : 'failed';
}

/** CLI exit codes: 0 all good, 1 failed and nothing written, 3 partial. (2 is for usage errors.) */
export function exitCodeFor(report: Pick<CycleReport, 'outcome'>): 0 | 1 | 3 {
  return report.outcome === 'ok' ? 0 : report.outcome === 'partial' ? 3 : 1;
}
