import { serversStateCommand, setWeightCommand } from './haproxy-protocol.js';

/**
 * Cuts the writes for one load balancer into batches a relay can carry (one SSM command holds at
 * most so many characters). Every batch leads with `show servers state` of each backend it writes:
 * HAProxy has no conditional write, so the guards (MAINT, DRAIN, weight 0) are checked against
 * the state read in the same exchange as the write, whichever batch a server lands in. Pure.
 */

export interface WriteOwner {
  readonly backend: string;
  readonly server: string;
  readonly weight: number;
}

export interface WriteBatch {
  /** `show servers state` of each guarded backend, then one `set server` per owner. */
  readonly commands: readonly string[];
  readonly owners: readonly WriteOwner[];
  /** Backends whose state leads the batch, in the order of their commands. */
  readonly guarded: readonly string[];
}

function batchOf(owners: readonly WriteOwner[]): WriteBatch {
  const guarded = [...new Set(owners.map((o) => o.backend))];
  return { commands: [...guarded.map(serversStateCommand), ...owners.map((o) => setWeightCommand(o.backend, o.server, o.weight))], owners, guarded };
}

/**
 * Batches of at most `maxChars` once joined by `; ` (no limit by default: one batch), in the
 * owners' order. A batch is never empty; one whose single write would not fit alone is still sent
 * alone (no limit we use comes near it).
 */
export function splitWrites(owners: readonly WriteOwner[], maxChars = Number.POSITIVE_INFINITY): WriteBatch[] {
  if (owners.length === 0) return [];
  if (!Number.isFinite(maxChars)) return [batchOf(owners)];
  const batches: WriteBatch[] = [];
  let current: WriteOwner[] = [];
  let backends = new Set<string>();
  let chars = 0;
  for (const owner of owners) {
    const set = setWeightCommand(owner.backend, owner.server, owner.weight).length;
    const guard = backends.has(owner.backend) ? 0 : serversStateCommand(owner.backend).length;
    // Each command after the first adds its `; ` separator.
    const added = set + (guard === 0 ? 0 : guard + 2) + (current.length === 0 ? 0 : 2);
    if (current.length > 0 && chars + added > maxChars) {
      batches.push(batchOf(current));
      current = [];
      backends = new Set();
      chars = 0;
    }
    const fresh = backends.has(owner.backend) ? 0 : serversStateCommand(owner.backend).length + 2;
    chars += set + fresh + (current.length === 0 ? 0 : 2);
    backends.add(owner.backend);
    current.push(owner);
  }
  batches.push(batchOf(current));
  return batches;
}
