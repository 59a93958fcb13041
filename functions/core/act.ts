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
import { staticKey, type ApplyResult, type LoadBalancerReport, type ServerFailure } from './report.js';
import type { BackendPlan, ObservedBackend, RelayRequest, RelayResult, RuntimeRelay } from './types.js';

/**
 * Step 4 and 5 of the cycle for writes: one batch per load balancer, every reply read per command,
 * weights read back after an unknown outcome, and an operator's weight put back where the write
 * raced with a MAINT, DRAIN or weight 0.
 */

/** One line per load balancer and backend: the failed servers, and each distinct cause once. */
function describeFailures(lb: string, backend: string, failed: readonly ServerFailure[], batchError: string | undefined, heldNow: ReadonlyMap<string, number> | undefined): string {
  const servers = failed.map((f) => f.server).join(', ');
  if (batchError !== undefined) {
    const held = heldNow === undefined ? '; weights could not be read back' : `; read back: ${failed.map((f) => `${f.server}=${heldNow.get(f.server) ?? 'unknown'}`).join(', ')}`;
    return `${lb}: backend ${backend}: ${failed.length} weight(s) not confirmed (${servers}): ${batchError}${held}`;
  }
  const causes = [...new Set(failed.map((f) => f.error.replace(`${backend}/${f.server}`, `${backend}/<server>`)))];
  return `${lb}: backend ${backend}: ${failed.length} weight(s) refused (${servers}): ${causes.join('; ')}`;
}

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
  readonly applyResults: Map<string, Map<string, ApplyResult>>;
  readonly lbApply: Map<string, LoadBalancerReport['apply']>;
  readonly lbErrors: Map<string, string>;
  readonly serversChanged: number;
  readonly problems: string[];
  readonly staticRefusals: string[];
}

export function emptyActResult(): ActResult {
  return { applyResults: new Map(), lbApply: new Map(), lbErrors: new Map(), serversChanged: 0, problems: [], staticRefusals: [] };
}

interface BackendTally {
  applied: number;
  failed: ServerFailure[];
  error?: string;
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

/** Reads the batch's reply per command: which weights HAProxy took, which it refused, and which hit a server an operator had just taken out. */
function tally(req: WriteRequest, result: RelayResult | undefined): { perBackend: Map<string, BackendTally>; batchError?: string; conflicts: Conflict[]; unchecked: string[] } {
  const perBackend = new Map<string, BackendTally>();
  const conflicts: Conflict[] = [];
  const unchecked: string[] = [];
  let blocks: string[] | null = null;
  let batchError: string | undefined;
  if (result === undefined || !result.ok) {
    batchError =
      result === undefined
        ? 'no result from relay'
        : `${describeError(result.error)}${result.error instanceof RelayError && result.error.mayHaveRun ? '; the batch may have been partly applied' : ''}`;
  } else {
    try {
      blocks = splitReplies(req.commands, result.reply);
    } catch (error) {
      batchError = `${describeError(error)}; the batch may have been partly applied`;
    }
  }
  const states = new Map<string, Map<string, ServerGuardState>>();
  if (blocks !== null) {
    const read = blocks;
    req.guarded.forEach((backend, i) => {
      try {
        states.set(backend, parseServerStates(backend, read[i] ?? '', { loadBalancer: req.loadBalancer }));
      } catch (error) {
        unchecked.push(`${req.loadBalancer}: backend ${backend}: the operator state could not be checked at write time: ${describeError(error)}`);
      }
    });
  }
  const offset = req.guarded.length;
  req.owners.forEach((o, i) => {
    const e = perBackend.get(o.backend) ?? { applied: 0, failed: [] };
    perBackend.set(o.backend, e);
    if (blocks === null) {
      e.failed.push({ server: o.server, weight: o.weight, error: batchError ?? 'unknown' });
      e.error = batchError;
      return;
    }
    const err = parseSetWeightReply(blocks[offset + i] ?? '', { backend: o.backend, server: o.server, loadBalancer: req.loadBalancer });
    if (err !== null) {
      e.failed.push({ server: o.server, weight: o.weight, error: err.message, kind: err.kind });
      return;
    }
    const before = states.get(o.backend)?.get(o.server);
    const why = guardConflict(before);
    if (before !== undefined && why !== null) conflicts.push({ backend: o.backend, server: o.server, weight: before.weight, why });
    else e.applied++;
  });
  return batchError === undefined ? { perBackend, conflicts, unchecked } : { perBackend, batchError, conflicts, unchecked };
}

/**
 * HAProxy has no conditional write: a server an operator takes out between our observation and
 * our write gets our weight anyway (measured: 2.6 accepts weights on MAINT and DRAIN servers).
 * The batch read its state at the instant of the write, so its previous weight is known exactly
 * and is put back at once, and the report says so.
 */
async function putBack(relay: RuntimeRelay, conflicts: ReadonlyMap<string, readonly Conflict[]>): Promise<{ problems: string[]; failed: Set<string> }> {
  const problems: string[] = [];
  const failed = new Set<string>();
  const requests: RelayRequest[] = [...conflicts].map(([loadBalancer, list]) => ({ loadBalancer, commands: list.map((c) => restoreWeightCommand(c.backend, c.server, c.weight)) }));
  if (requests.length === 0) return { problems, failed };
  const results = await relay.run(requests);
  for (const req of requests) {
    const list = conflicts.get(req.loadBalancer) ?? [];
    const result = results.find((r) => r.loadBalancer === req.loadBalancer);
    let blocks: string[] | null = null;
    let error: string | undefined;
    if (result === undefined || !result.ok) error = result === undefined ? 'no result from relay' : describeError(result.error);
    else {
      try {
        blocks = splitReplies(req.commands, result.reply);
      } catch (e) {
        error = describeError(e);
      }
    }
    list.forEach((c, i) => {
      const refused = blocks === null ? null : parseSetWeightReply(blocks[i] ?? '', { backend: c.backend, server: c.server, loadBalancer: req.loadBalancer });
      const head = `${req.loadBalancer}: backend ${c.backend}: server ${c.server} ${c.why} while the cycle was writing its weight`;
      if (blocks !== null && refused === null) {
        problems.push(`${head}: its weight was put back to ${c.weight}`);
        return;
      }
      failed.add(req.loadBalancer);
      problems.push(`${head}: putting its weight back to ${c.weight} FAILED (${refused?.message ?? error ?? 'unknown'}): run "set server ${c.backend}/${c.server} weight ${c.weight}"`);
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
  for (const t of tallies) result.problems.push(...t.unchecked);
  result.problems.push(...restored.problems);

  let serversChanged = 0;
  for (const { req, perBackend, batchError } of tallies) {
    let anyFailed = false;
    for (const [backend, e] of perBackend) {
      const seen = actual.get(req.loadBalancer)?.get(backend);
      const now = seen === undefined ? undefined : new Map(seen.servers.map((s) => [s.name, s.weight]));
      if (now !== undefined) {
        // Weights read back after an unknown outcome: count what landed, keep the rest as failures.
        const landed = e.failed.filter((f) => now.get(f.server) === f.weight);
        e.applied += landed.length;
        e.failed = e.failed
          .filter((f) => now.get(f.server) !== f.weight)
          .map((f) => ({ ...f, error: `${f.error}; HAProxy now holds weight ${now.get(f.server) ?? 'unknown (server gone)'}` }));
        if (e.failed.length === 0) delete e.error;
      }
      serversChanged += e.applied;
      const res: ApplyResult =
        e.failed.length === 0
          ? { status: 'applied', changed: e.applied }
          : { status: 'failed', applied: e.applied, failed: e.failed, ...(e.error === undefined ? {} : { error: e.error }) };
      if (res.status === 'failed') {
        anyFailed = true;
        const allStatic = e.applied === 0 && e.failed.every((f) => f.kind === 'static-algorithm');
        if (allStatic) result.staticRefusals.push(staticKey(backend, req.loadBalancer));
        result.problems.push(
          allStatic
            ? `${req.loadBalancer}: backend ${backend} refused every weight: it uses a static algorithm (map-based hashing shows as '${hashAlgo(plans, backend, req.loadBalancer)}'); use 'hash-type consistent' or a dynamic balance algorithm`
            : describeFailures(req.loadBalancer, backend, e.failed, e.error, now),
        );
      }
      const map = result.applyResults.get(backend) ?? new Map<string, ApplyResult>();
      map.set(req.loadBalancer, res);
      result.applyResults.set(backend, map);
    }
    result.lbApply.set(req.loadBalancer, anyFailed || restored.failed.has(req.loadBalancer) ? 'failed' : 'ok');
    if (batchError !== undefined) result.lbErrors.set(req.loadBalancer, batchError);
  }
  return { ...result, serversChanged };
}

