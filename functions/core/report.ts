import type { HaproxyErrorKind } from './errors.js';
import type { BackendPlan } from './types.js';

/**
 * The report of one cycle: what the CLI prints (`--json` verbatim, or as tables), what the Lambda
 * returns, and what its metrics are derived from.
 */

/** The key of `knownStatic` and `staticRefusals`. */
export const staticKey = (backend: string, loadBalancer: string): string => `${backend}@${loadBalancer}`;

/** What happened to the batch sent to one load balancer for one backend. */
export type ApplyResult =
  | { readonly status: 'not-needed' }
  | { readonly status: 'applied'; readonly changed: number }
  | { readonly status: 'failed'; readonly applied: number; readonly failed: readonly ServerFailure[]; readonly error?: string };

export interface ServerFailure {
  readonly server: string;
  readonly weight: number;
  readonly error: string;
  /** The HAProxy error class when HAProxy answered; absent when the batch itself failed. */
  readonly kind?: HaproxyErrorKind;
}

export interface LoadBalancerPlanReport {
  readonly loadBalancer: string;
  readonly plan: BackendPlan;
  readonly apply?: ApplyResult;
}

export interface BackendReport {
  readonly backend: string;
  readonly graphite: { readonly ok: true; readonly unmapped: readonly string[] } | { readonly ok: false; readonly error: string };
  /** Aggregated load per server, as measured this cycle. */
  readonly loads: Readonly<Record<string, number>>;
  /** max/mean of the measured loads, or null. */
  readonly imbalance: number | null;
  readonly loadBalancers: readonly LoadBalancerPlanReport[];
}

export interface LoadBalancerReport {
  readonly name: string;
  readonly observe: 'ok' | 'failed';
  readonly apply: 'ok' | 'failed' | 'not-needed' | 'not-run';
  readonly error?: string;
}

export type CycleOutcome = 'ok' | 'partial' | 'failed';

export interface CycleReport {
  readonly mode: 'plan' | 'apply';
  readonly force: boolean;
  readonly startedAt: string;
  readonly durationMs: number;
  /** ok: nothing went wrong; partial: some weights written and something failed; failed: nothing written and something failed. */
  readonly outcome: CycleOutcome;
  readonly backends: readonly BackendReport[];
  readonly loadBalancers: readonly LoadBalancerReport[];
  readonly failedLoadBalancers: readonly string[];
  readonly serversChanged: number;
  readonly problems: readonly string[];
  /** `backend@loadBalancer` pairs that refused every weight as a static algorithm this cycle (always present; optional for reports of older versions). */
  readonly staticRefusals?: readonly string[];
}

/** CLI exit codes: 0 all good, 1 failed and nothing written, 3 partial. (2 is for usage errors.) */
export function exitCodeFor(report: Pick<CycleReport, 'outcome'>): 0 | 1 | 3 {
  return report.outcome === 'ok' ? 0 : report.outcome === 'partial' ? 3 : 1;
}
