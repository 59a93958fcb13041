import type { BackendConfig } from './config.js';
import { RelayError, describeError } from './errors.js';
import { observeBackends } from './observe.js';
import {
  parseServerStates,
  parseSetWeightReply,
  restoreWeightCommand,
  serversStateCommand,
  setWeightCommand,
  splitReplies,
  type ServerGuardState,
} from './haproxy-protocol.js';
import { causeOf, problem, staticKey, type ApplyReport, type LoadBalancerReport, type Problem, type ProblemCause, type ServerFailure } from './report.js';
import type { BackendPlan, ObservedBackend, RelayRequest, RelayResult, RuntimeRelay } from './types.js';

/**
 * Step 4 and 5 of the cycle for writes: one batch per load balancer, every reply read per command,
 * weights read back after an unknown outcome, and an operator's weight put back where the write
 * raced with a MAINT, DRAIN or weight 0.
 */

function hashAlgo(plans: ReadonlyMap<string, ReadonlyMap<string, BackendPlan>>, backend: string, lb: string): string {
  const plan = plans.get(backend)?.get(lb);
  return plan?.status === 'planned' ? plan.algorithm : 'unknown';
}

interface Owner {
  readonly backend: string;
  readonly server: string;
  readonly weight: number;
}

export interface ActResult {
  /** Per backend, per load balancer that was sent a batch for it. */
  readonly applyResults: Map<string, Map<string, ApplyReport>>;
  readonly lbApply: Map<string, LoadBalancerReport['apply']>;
  /** Why a load balancer's write batch failed as a whole. */
  readonly lbErrors: Map<string, string>;
  readonly serversChanged: number;
  readonly problems: Problem[];
  readonly staticRefusals: string[];
}

export function emptyActResult(): ActResult {
  return { applyResults: new Map(), lbApply: new Map(), lbErrors: new Map(), serversChanged: 0, problems: [], staticRefusals: [] };
}

/** A weight sent and not confirmed, with the error behind it. */
interface PendingFailure {
  readonly failure: ServerFailure;
  readonly cause: ProblemCause;
}

interface BackendTally {
  applied: number;
  failed: PendingFailure[];
}

/** Why a whole batch failed, as the report says it and as a problem's cause. */
interface BatchError {
  readonly text: string;
  readonly cause: ProblemCause;
}

/** One write batch: the guard state of every backend it touches, then the weights. */
interface WriteRequest {
  readonly loadBalancer: string;
  readonly commands: string[];
  readonly owners: Owner[];
  /** Backends whose `show servers state` leads the batch: their state at the instant of the write. */
  readonly guarded: string[];
}

/** A server an operator took out (MAINT, DRAIN, weight 0) between our observation and our write. */
interface Conflict {
  readonly backend: string;
  readonly server: string;
  /** The weight it had just before our write: the one to put back. */
  readonly weight: number;
  readonly why: string;
}

function guardConflict(state: ServerGuardState | undefined): string | null {
  if (state === undefined) return null;
  if (state.admin === 'maint') return 'was put in MAINT';
  if (state.admin === 'drain') return 'was put in DRAIN';
  return state.weight === 0 ? 'was given weight 0' : null;
}

const PARTLY = 'the batch may have been partly applied';

function batchErrorOf(result: RelayResult | undefined): BatchError | undefined {
  if (result === undefined) return { text: 'no result from relay', cause: { type: 'other', kind: null, message: 'no result from relay' } };
  if (result.ok) return undefined;
  const mayHaveRun = result.error instanceof RelayError && result.error.mayHaveRun;
  return { text: mayHaveRun ? `${describeError(result.error)}; ${PARTLY}` : describeError(result.error), cause: causeOf(result.error) };
}

interface Tally {
  readonly perBackend: Map<string, BackendTally>;
  readonly batchError: BatchError | undefined;
  readonly conflicts: Conflict[];
  readonly problems: Problem[];
}

/** Reads the batch's reply per command: which weights HAProxy took, which it refused, and which hit a server an operator had just taken out. */
function tally(req: WriteRequest, result: RelayResult | undefined): Tally {
  const perBackend = new Map<string, BackendTally>();
  const conflicts: Conflict[] = [];
  const problems: Problem[] = [];
  let blocks: string[] | null = null;
  let batchError = batchErrorOf(result);
  if (result?.ok === true) {
    try {
      blocks = splitReplies(req.commands, result.reply);
    } catch (error) {
      batchError = { text: `${describeError(error)}; ${PARTLY}`, cause: causeOf(error) };
    }
  }
  const states = new Map<string, Map<string, ServerGuardState>>();
  if (blocks !== null) {
    const read = blocks;
    req.guarded.forEach((backend, i) => {
      try {
        states.set(backend, parseServerStates(backend, read[i] ?? '', { loadBalancer: req.loadBalancer }));
      } catch (error) {
        problems.push(problem('guard-unchecked', { loadBalancer: req.loadBalancer, backend }, 'the operator state could not be checked at write time', causeOf(error)));
      }
    });
  }
  const offset = req.guarded.length;
  req.owners.forEach((o, i) => {
    const e = perBackend.get(o.backend) ?? { applied: 0, failed: [] };
    perBackend.set(o.backend, e);
    if (blocks === null) {
      const error = batchError ?? { text: 'unknown', cause: { type: 'other', kind: null, message: 'unknown' } };
      e.failed.push({ failure: { server: o.server, weight: o.weight, code: 'batch-unconfirmed', kind: null, error: error.text, heldWeight: null }, cause: error.cause });
      return;
    }
    const err = parseSetWeightReply(blocks[offset + i] ?? '', { backend: o.backend, server: o.server, loadBalancer: req.loadBalancer });
    if (err !== null) {
      e.failed.push({ failure: { server: o.server, weight: o.weight, code: 'weight-refused', kind: err.kind, error: err.message, heldWeight: null }, cause: causeOf(err) });
      return;
    }
    const before = states.get(o.backend)?.get(o.server);
    const why = guardConflict(before);
    if (before !== undefined && why !== null) conflicts.push({ backend: o.backend, server: o.server, weight: before.weight, why });
    else e.applied++;
  });
  return { perBackend, batchError, conflicts, problems };
}

/**
 * HAProxy has no conditional write: a server an operator takes out between our observation and
 * our write gets our weight anyway (measured: 2.6 accepts weights on MAINT and DRAIN servers).
 * The batch read its state at the instant of the write, so its previous weight is known exactly
 * and is put back at once, and the report says so.
 */
async function putBack(relay: RuntimeRelay, conflicts: ReadonlyMap<string, readonly Conflict[]>): Promise<{ problems: Problem[]; failed: Set<string> }> {
  const problems: Problem[] = [];
  const failed = new Set<string>();
  const requests: RelayRequest[] = [...conflicts].map(([loadBalancer, list]) => ({ loadBalancer, commands: list.map((c) => restoreWeightCommand(c.backend, c.server, c.weight)) }));
  if (requests.length === 0) return { problems, failed };
  const results = await relay.run(requests);
  for (const req of requests) {
    const list = conflicts.get(req.loadBalancer) ?? [];
    const result = results.find((r) => r.loadBalancer === req.loadBalancer);
    let blocks: string[] | null = null;
    let error: unknown;
    if (result === undefined) error = new Error('no result from relay');
    else if (!result.ok) error = result.error;
    else {
      try {
        blocks = splitReplies(req.commands, result.reply);
      } catch (e) {
        error = e;
      }
    }
    list.forEach((c, i) => {
      const refused = blocks === null ? null : parseSetWeightReply(blocks[i] ?? '', { backend: c.backend, server: c.server, loadBalancer: req.loadBalancer });
      const place = { loadBalancer: req.loadBalancer, backend: c.backend, server: c.server };
      const head = `${c.why} while the cycle was writing its weight`;
      if (blocks !== null && refused === null) {
        problems.push(problem('operator-conflict-restored', place, `${head}: its weight was put back to ${c.weight}`));
        return;
      }
      failed.add(req.loadBalancer);
      problems.push(
        problem(
          'operator-conflict-restore-failed',
          place,
          `${head}: putting its weight back to ${c.weight} FAILED: run "set server ${c.backend}/${c.server} weight ${c.weight}"`,
          causeOf(refused ?? error),
        ),
      );
    });
  }
  return { problems, failed };
}

/**
 * After a batch whose outcome is unknown (connection lost, reply cut short), reads the weights back
 * so the report can say exactly what each load balancer holds instead of guessing.
 */
async function readBack(relay: RuntimeRelay, unknown: ReadonlyMap<string, readonly string[]>): Promise<Map<string, Map<string, ObservedBackend>>> {
  const out = new Map<string, Map<string, ObservedBackend>>();
  // Best effort: what cannot be read back stays "not confirmed" in the report.
  for (const [lb, perBackend] of await observeBackends(relay, unknown)) {
    if (perBackend instanceof Error) continue;
    const seen = new Map<string, ObservedBackend>();
    for (const [backend, o] of perBackend) if (o.ok) seen.set(backend, o.backend);
    out.set(lb, seen);
  }
  return out;
}

function unconfirmedMessage(weight: number, held: number | null | undefined): string {
  if (held === undefined) return `weight ${weight} not confirmed; it could not be read back`;
  return held === null ? `weight ${weight} not confirmed; the server is gone (read back)` : `weight ${weight} not confirmed; HAProxy holds weight ${held} (read back)`;
}

export async function act(relay: RuntimeRelay, backends: readonly BackendConfig[], plans: ReadonlyMap<string, ReadonlyMap<string, BackendPlan>>): Promise<ActResult> {
  const result = emptyActResult();
  const requests: WriteRequest[] = [];
  for (const lb of relay.loadBalancers) {
    const owners: Owner[] = [];
    for (const b of backends) {
      const plan = plans.get(b.name)?.get(lb);
      if (plan?.status !== 'planned') continue;
      for (const a of plan.actions) if (a.kind === 'set-weight') owners.push({ backend: b.name, server: a.server, weight: a.weight });
    }
    if (owners.length === 0) result.lbApply.set(lb, 'not-needed');
    else {
      const guarded = [...new Set(owners.map((o) => o.backend))];
      requests.push({
        loadBalancer: lb,
        commands: [...guarded.map(serversStateCommand), ...owners.map((o) => setWeightCommand(o.backend, o.server, o.weight))],
        owners,
        guarded,
      });
    }
  }
  const replies = requests.length === 0 ? [] : await relay.run(requests);
  const tallies = requests.map((req) => ({ req, ...tally(req, replies.find((r) => r.loadBalancer === req.loadBalancer)) }));

  const unknown = new Map<string, string[]>();
  for (const t of tallies) if (t.batchError !== undefined) unknown.set(t.req.loadBalancer, [...t.perBackend.keys()]);
  const conflicts = new Map(tallies.filter((t) => t.conflicts.length > 0).map((t) => [t.req.loadBalancer, t.conflicts] as const));
  // Disjoint load balancers (a conflict needs a reply that parsed, a read-back one that did not): both at once.
  const [actual, restored] = await Promise.all([readBack(relay, unknown), putBack(relay, conflicts)]);
  for (const t of tallies) result.problems.push(...t.problems);
  result.problems.push(...restored.problems);

  let serversChanged = 0;
  for (const { req, perBackend, batchError } of tallies) {
    let anyFailed = false;
    for (const [backend, e] of perBackend) {
      const place = { loadBalancer: req.loadBalancer, backend };
      const seen = actual.get(req.loadBalancer)?.get(backend);
      const now = seen === undefined ? undefined : new Map(seen.servers.map((s) => [s.name, s.weight]));
      let failed = e.failed;
      if (now !== undefined) {
        // Weights read back after an unknown outcome: count what landed, keep the rest as failures.
        e.applied += failed.filter((f) => now.get(f.failure.server) === f.failure.weight).length;
        failed = failed
          .filter((f) => now.get(f.failure.server) !== f.failure.weight)
          .map((f) => ({ ...f, failure: { ...f.failure, heldWeight: now.get(f.failure.server) ?? null } }));
      }
      serversChanged += e.applied;
      const unconfirmed = failed.some((f) => f.failure.code === 'batch-unconfirmed');
      const res: ApplyReport = {
        status: failed.length === 0 ? 'applied' : 'failed',
        changed: e.applied,
        failed: failed.map((f) => f.failure),
        error: unconfirmed && batchError !== undefined ? batchError.text : null,
        readBack: now !== undefined,
      };
      if (failed.length > 0) {
        anyFailed = true;
        const allStatic = e.applied === 0 && failed.every((f) => f.failure.kind === 'static-algorithm');
        if (allStatic) {
          result.staticRefusals.push(staticKey(backend, req.loadBalancer));
          result.problems.push(
            problem(
              'static-refused',
              place,
              `refused every weight: it uses a static algorithm (map-based hashing shows as '${hashAlgo(plans, backend, req.loadBalancer)}'); use 'hash-type consistent' or a dynamic balance algorithm`,
              failed[0]?.cause ?? null,
            ),
          );
        } else {
          for (const { failure, cause } of failed) {
            const where = { ...place, server: failure.server };
            result.problems.push(
              failure.code === 'weight-refused'
                ? problem('weight-refused', where, `weight ${failure.weight} refused`, cause)
                : problem('batch-unconfirmed', where, unconfirmedMessage(failure.weight, now === undefined ? undefined : (now.get(failure.server) ?? null)), cause),
            );
          }
        }
      }
      const map = result.applyResults.get(backend) ?? new Map<string, ApplyReport>();
      map.set(req.loadBalancer, res);
      result.applyResults.set(backend, map);
    }
    result.lbApply.set(req.loadBalancer, anyFailed || restored.failed.has(req.loadBalancer) ? 'failed' : 'ok');
    if (batchError !== undefined) result.lbErrors.set(req.loadBalancer, batchError.text);
  }
  return { ...result, serversChanged };
}
