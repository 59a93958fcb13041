import type { BackendConfig } from './config.js';
import { RelayError, describeError } from './errors.js';
import { observeBackends } from './observe.js';
import { parseServerStates, parseSetWeightReply, restoreWeightCommand, splitReplies, type ServerGuardState } from './haproxy-protocol.js';
import { causeOf, problem, staticKey, type ApplyReport, type LoadBalancerReport, type Problem, type ProblemCause, type ServerFailure } from './report.js';
import type { BackendPlan, ObservedBackend, RelayRequest, RelayResult, RelayRunOptions, RuntimeRelay } from './types.js';
import { splitWrites } from './write-batches.js';

/**
 * Step 4 and 5 of the cycle for writes: the writes for each load balancer in as few batches as
 * the relay can carry (one unless it has a limit), each led by its own operator-state read, every
 * reply read per command, weights read back after an unknown outcome, and an operator's weight put
 * back where the write raced with a MAINT, DRAIN or weight 0. Within the cycle's time budget: a
 * batch the relay did not send is reported as not sent, its servers keeping their weights.
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
  /** The relay never sent it (the time budget ran out): nothing of it ran. */
  readonly notSent: boolean;
}

/** One write batch: the guard state of every backend it touches, then the weights. */
interface WriteRequest {
  readonly loadBalancer: string;
  readonly commands: readonly string[];
  readonly owners: readonly Owner[];
  /** Backends whose `show servers state` leads the batch: their state at the instant of the write. */
  readonly guarded: readonly string[];
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
  if (result === undefined) return { text: 'no result from relay', cause: { type: 'other', kind: null, message: 'no result from relay' }, notSent: false };
  if (result.ok) return undefined;
  const mayHaveRun = result.error instanceof RelayError && result.error.mayHaveRun;
  const notSent = result.error instanceof RelayError && result.error.notStarted;
  return { text: mayHaveRun ? `${describeError(result.error)}; ${PARTLY}` : describeError(result.error), cause: causeOf(result.error), notSent };
}

/** The relay's reason for not sending, without the load balancer and `not sent:` it starts with. */
function notSentReason(text: string, loadBalancer: string): string {
  const head = `${loadBalancer}: not sent: `;
  return text.startsWith(head) ? text.slice(head.length) : text;
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
      batchError = { text: `${describeError(error)}; ${PARTLY}`, cause: causeOf(error), notSent: false };
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
      const error = batchError ?? { text: 'unknown', cause: { type: 'other', kind: null, message: 'unknown' }, notSent: false };
      e.failed.push({ failure: { server: o.server, weight: o.weight, code: error.notSent ? 'not-sent' : 'batch-unconfirmed', kind: null, error: error.text, heldWeight: null }, cause: error.cause });
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
async function putBack(relay: RuntimeRelay, conflicts: ReadonlyMap<string, readonly Conflict[]>, budget: RelayRunOptions): Promise<{ problems: Problem[]; failed: Set<string> }> {
  const problems: Problem[] = [];
  const failed = new Set<string>();
  const requests: RelayRequest[] = [...conflicts].map(([loadBalancer, list]) => ({ loadBalancer, commands: list.map((c) => restoreWeightCommand(c.backend, c.server, c.weight)) }));
  if (requests.length === 0) return { problems, failed };
  const results = await relay.run(requests, budget);
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
async function readBack(relay: RuntimeRelay, unknown: ReadonlyMap<string, readonly string[]>, budget: RelayRunOptions): Promise<Map<string, Map<string, ObservedBackend>>> {
  const out = new Map<string, Map<string, ObservedBackend>>();
  // Best effort: what cannot be read back stays "not confirmed" in the report.
  for (const [lb, perBackend] of await observeBackends(relay, unknown, budget)) {
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

interface Merged {
  readonly loadBalancer: string;
  readonly perBackend: Map<string, BackendTally>;
  /** The first batch error that was not a budget stop, else the budget stop, if any batch failed. */
  batchError: BatchError | undefined;
}

/** Adds one batch's tally to its load balancer's. */
function merge(into: Merged, t: Tally): void {
  for (const [backend, e] of t.perBackend) {
    const m = into.perBackend.get(backend) ?? { applied: 0, failed: [] };
    m.applied += e.applied;
    m.failed.push(...e.failed);
    into.perBackend.set(backend, m);
  }
  if (t.batchError !== undefined && (into.batchError === undefined || (into.batchError.notSent && !t.batchError.notSent))) into.batchError = t.batchError;
}

export async function act(relay: RuntimeRelay, backends: readonly BackendConfig[], plans: ReadonlyMap<string, ReadonlyMap<string, BackendPlan>>, budget: RelayRunOptions = {}): Promise<ActResult> {
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
    for (const batch of splitWrites(owners, relay.maxBatchChars)) requests.push({ loadBalancer: lb, ...batch });
  }
  // Results come back in request order: a load balancer may have several batches.
  const replies = requests.length === 0 ? [] : await relay.run(requests, budget);
  const tallies = requests.map((req, i) => ({ req, ...tally(req, replies[i]) }));
  const merged = new Map<string, Merged>();
  for (const t of tallies) {
    const m = merged.get(t.req.loadBalancer) ?? { loadBalancer: t.req.loadBalancer, perBackend: new Map<string, BackendTally>(), batchError: undefined };
    merge(m, t);
    merged.set(t.req.loadBalancer, m);
  }

  // Only a batch that may have run is read back: one the relay never sent changed nothing.
  const unknown = new Map<string, string[]>();
  for (const t of tallies) {
    if (t.batchError === undefined || t.batchError.notSent) continue;
    unknown.set(t.req.loadBalancer, [...new Set([...(unknown.get(t.req.loadBalancer) ?? []), ...t.perBackend.keys()])]);
  }
  const conflicts = new Map<string, Conflict[]>();
  for (const t of tallies) if (t.conflicts.length > 0) conflicts.set(t.req.loadBalancer, [...(conflicts.get(t.req.loadBalancer) ?? []), ...t.conflicts]);
  // Disjoint load balancers (a conflict needs a reply that parsed, a read-back one that did not): both at once.
  const [actual, restored] = await Promise.all([readBack(relay, unknown, budget), putBack(relay, conflicts, budget)]);
  for (const t of tallies) result.problems.push(...t.problems);
  result.problems.push(...restored.problems);

  let serversChanged = 0;
  for (const { loadBalancer, perBackend, batchError } of merged.values()) {
    let anyFailed = false;
    for (const [backend, e] of perBackend) {
      const place = { loadBalancer, backend };
      const seen = unknown.get(loadBalancer)?.includes(backend) === true ? actual.get(loadBalancer)?.get(backend) : undefined;
      const now = seen === undefined ? undefined : new Map(seen.servers.map((s) => [s.name, s.weight]));
      let failed = e.failed;
      if (now !== undefined) {
        // Weights read back after an unknown outcome: count what landed, keep the rest as failures.
        const landed = (f: PendingFailure): boolean => f.failure.code === 'batch-unconfirmed' && now.get(f.failure.server) === f.failure.weight;
        e.applied += failed.filter(landed).length;
        failed = failed.filter((f) => !landed(f)).map((f) => (f.failure.code === 'batch-unconfirmed' ? { ...f, failure: { ...f.failure, heldWeight: now.get(f.failure.server) ?? null } } : f));
      }
      serversChanged += e.applied;
      const unconfirmed = failed.find((f) => f.failure.code === 'batch-unconfirmed');
      const unsent = failed.filter((f) => f.failure.code === 'not-sent');
      const res: ApplyReport = {
        status: failed.length === 0 ? 'applied' : 'failed',
        changed: e.applied,
        failed: failed.map((f) => f.failure),
        error: unconfirmed !== undefined && batchError !== undefined && !batchError.notSent ? batchError.text : unsent.length > 0 ? `not sent: ${notSentReason(unsent[0]?.failure.error ?? '', loadBalancer)}` : null,
        readBack: now !== undefined,
      };
      if (failed.length > 0) {
        anyFailed = true;
        const sent = failed.filter((f) => f.failure.code !== 'not-sent');
        const allStatic = e.applied === 0 && sent.length > 0 && sent.every((f) => f.failure.kind === 'static-algorithm');
        if (allStatic) {
          result.staticRefusals.push(staticKey(backend, loadBalancer));
          result.problems.push(
            problem(
              'static-refused',
              place,
              `refused every weight: it uses a static algorithm (map-based hashing shows as '${hashAlgo(plans, backend, loadBalancer)}'); use 'hash-type consistent' or a dynamic balance algorithm`,
              sent[0]?.cause ?? null,
            ),
          );
        } else {
          for (const { failure, cause } of sent) {
            const where = { ...place, server: failure.server };
            result.problems.push(
              failure.code === 'weight-refused'
                ? problem('weight-refused', where, `weight ${failure.weight} refused`, cause)
                : problem('batch-unconfirmed', where, unconfirmedMessage(failure.weight, now === undefined ? undefined : (now.get(failure.server) ?? null)), cause),
            );
          }
        }
        const first = unsent[0];
        if (first !== undefined) {
          result.problems.push(
            problem('write-not-sent', place, `${unsent.length} weight(s) not sent: ${notSentReason(first.failure.error, loadBalancer)}; HAProxy keeps the weights it had`, first.cause),
          );
        }
      }
      const map = result.applyResults.get(backend) ?? new Map<string, ApplyReport>();
      map.set(loadBalancer, res);
      result.applyResults.set(backend, map);
    }
    result.lbApply.set(loadBalancer, anyFailed || restored.failed.has(loadBalancer) ? 'failed' : 'ok');
    if (batchError !== undefined) result.lbErrors.set(loadBalancer, batchError.text);
  }
  return { ...result, serversChanged };
}
