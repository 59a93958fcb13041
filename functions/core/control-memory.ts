import type { ObservedBackend } from './types.js';

/**
 * What a long-running caller (`run`, a warm Lambda) remembers of one backend on one load balancer
 * between cycles, so that the control loop can tell a reload, a new server and how many
 * connections each server took since Graphite last measured it. Pure values and pure functions:
 * the caller keeps the memory and passes the time in. A one-shot `apply` has none, and the
 * policy then does without (see plan.ts).
 */

export interface ServerSample {
  readonly sessions: number;
  /** `stot`; undefined when the reply lacked the column. */
  readonly totalSessions: number | undefined;
}

/** One observation of the backend by one HAProxy process. */
export interface ObservationRecord {
  /** Epoch seconds. */
  readonly at: number;
  readonly servers: ReadonlyMap<string, ServerSample>;
}

/** A new HAProxy process took over the load balancer's runtime socket. */
export interface Reload {
  /** Epoch seconds of the first observation of the new process. */
  readonly at: number;
  /** Why we think so, for the report. */
  readonly why: string;
  /**
   * Mean connections per server the old process held at its last observation: the connections
   * that still carry most of the load while the new process has few.
   */
  readonly countScale: number;
  /** How many cycles a connection lived under the old process (see `cyclesPerLifetime`), when known. */
  readonly cyclesPerLifetime: number | undefined;
}

export interface BackendMemory {
  /** Observations by the current process, oldest first, the last one being this cycle's. */
  readonly records: readonly ObservationRecord[];
  /** The latest reload, while it still matters (see RELOAD_MEMORY_SECONDS). */
  readonly reload: Reload | null;
  /** True when the reload was detected at this cycle's observation. */
  readonly reloadedNow: boolean;
  /** Epoch seconds of the first observation this memory holds: the servers seen then are not new. */
  readonly started: number;
  /** Servers that appeared after `started` and have had no data since: new to the backend. */
  readonly newServers: ReadonlySet<string>;
}

/** Records older than this are dropped: no Graphite delay we support is longer. */
export const HISTORY_SECONDS = 30 * 60;
/**
 * How long the old process's connection count keeps scaling the deficits after a reload, unless
 * the new process reaches it first. Long-lived connections can outlive it; by then the new process
 * holds a large share of them and its own counts are a fair scale.
 */
export const RELOAD_MEMORY_SECONDS = 2 * 3600;

function sampleOf(observed: ObservedBackend): Map<string, ServerSample> {
  return new Map(observed.servers.map((s) => [s.name, { sessions: s.sessions, totalSessions: s.totalSessions }]));
}

/**
 * Why the observation comes from another process than the previous one, or null. `stot` only grows
 * within a process, so a server whose count fell means a new process (a soft reload, `-sf`) or
 * `clear counters`; both make the counts useless as history.
 */
export function reloadEvidence(previous: ObservationRecord | undefined, current: ReadonlyMap<string, ServerSample>): string | null {
  if (previous === undefined) return null;
  for (const [name, now] of current) {
    const before = previous.servers.get(name)?.totalSessions;
    if (before !== undefined && now.totalSessions !== undefined && now.totalSessions < before) {
      return `sessions counted by HAProxy for ${name} fell from ${before} to ${now.totalSessions}: a new HAProxy process (reload) or cleared counters`;
    }
  }
  return null;
}

function meanSessions(record: ObservationRecord | undefined): number {
  if (record === undefined || record.servers.size === 0) return 0;
  let sum = 0;
  for (const s of record.servers.values()) sum += s.sessions;
  return sum / record.servers.size;
}

/**
 * Which servers Graphite had data for: a set, or the measured loads themselves, looked up as they
 * are (a reply's servers may be many more than the backend's, and copying them into a set on
 * every load balancer cost more than the rest of the cycle).
 */
export interface ServerLookup {
  has(name: string): boolean;
}

const NONE: ServerLookup = { has: () => false };

/**
 * The memory after observing `observed` at `now` (epoch seconds), with the servers Graphite had
 * data for this cycle (`withData`; none when Graphite failed). Pure.
 *
 * A server is new when it appeared after the memory's first observation and has had no data
 * since: it stays new until its metrics arrive, however many cycles that takes (and whether or not
 * they wrote weights: a dry run sees it too). A server the first observation already held cannot
 * be told from one whose metrics broke: it is not new.
 */
export function updateMemory(previous: BackendMemory | undefined, observed: ObservedBackend, now: number, withData: ServerLookup = NONE): BackendMemory {
  const servers = sampleOf(observed);
  const record: ObservationRecord = { at: now, servers };
  const last = previous?.records.at(-1);
  const started = previous?.started ?? now;
  const newServers = new Set<string>();
  for (const name of servers.keys()) {
    if (withData.has(name)) continue;
    if (previous !== undefined && (previous.newServers.has(name) || !seenBefore(previous, name))) newServers.add(name);
  }
  const why = reloadEvidence(last, servers);
  if (why !== null) {
    // A reload within a reload: the older count is the better guess of what still carries the load.
    const countScale = Math.max(meanSessions(last), previous?.reload?.countScale ?? 0);
    const lifetime = cyclesPerLifetime(previous?.records ?? []) ?? previous?.reload?.cyclesPerLifetime;
    return { records: [record], reload: { at: now, why, countScale, cyclesPerLifetime: lifetime }, reloadedNow: true, started, newServers };
  }
  const kept = (previous?.records ?? []).filter((r) => r.at < now && r.at >= now - HISTORY_SECONDS);
  let reload = previous?.reload ?? null;
  // The new process has caught up, or long enough has passed: its own counts are the scale again.
  if (reload !== null && (now - reload.at > RELOAD_MEMORY_SECONDS || meanSessions(record) >= reload.countScale)) reload = null;
  return { records: [...kept, record], reload, reloadedNow: false, started, newServers };
}

/** Whether the memory's last observation held the server. */
function seenBefore(memory: BackendMemory, name: string): boolean {
  return memory.records.at(-1)?.servers.has(name) === true;
}

/**
 * How many cycles a connection lives: connections held now / connections placed per cycle, from
 * `stot` over the records (Little's law). Undefined with fewer than two records or nothing placed.
 */
export function cyclesPerLifetime(records: readonly ObservationRecord[], servers?: ReadonlySet<string>): number | undefined {
  const first = records[0];
  const last = records.at(-1);
  const previous = records.at(-2);
  if (first === undefined || last === undefined || previous === undefined) return undefined;
  let placed = 0;
  let held = 0;
  for (const [name, now] of last.servers) {
    if (servers !== undefined && !servers.has(name)) continue;
    held += now.sessions;
    const before = first.servers.get(name)?.totalSessions;
    if (before !== undefined && now.totalSessions !== undefined) placed += Math.max(0, now.totalSessions - before);
  }
  const span = last.at - first.at;
  const interval = last.at - previous.at;
  if (!(placed > 0 && span > 0 && interval > 0)) return undefined;
  return held / ((placed / span) * interval);
}

/** The memory of every backend on every load balancer, kept by `run` and a warm Lambda between cycles. */
export interface ControlMemory {
  get(backend: string, loadBalancer: string): BackendMemory | undefined;
  set(backend: string, loadBalancer: string, memory: BackendMemory): void;
}

export function createControlMemory(): ControlMemory {
  const map = new Map<string, BackendMemory>();
  const key = (backend: string, loadBalancer: string): string => `${backend}@${loadBalancer}`;
  return {
    get: (backend, loadBalancer) => map.get(key(backend, loadBalancer)),
    set: (backend, loadBalancer, memory) => {
      map.set(key(backend, loadBalancer), memory);
    },
  };
}
