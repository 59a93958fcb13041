import { MAX_WEIGHT } from '../../functions/core/runtime-grammar.js';

/**
 * How one HAProxy process picks a server for a new connection, for the two dynamic algorithms the
 * weighter drives. Modelled on HAProxy 2.6 (src/lb_fwlc.c, src/lb_fwrr.c); what we simplified is
 * said next to each model.
 */

/** HAProxy's internal scale of effective weights (BE_WEIGHT_SCALE); MAX_WEIGHT is its SRV_UWGHT_MAX. */
const BE_WEIGHT_SCALE = 16;
const SRV_EWGHT_MAX = MAX_WEIGHT * BE_WEIGHT_SCALE;

/** One load balancer's selection state for a backend. Servers are numbered 0..n-1. */
export interface Balancer {
  readonly algorithm: 'leastconn' | 'roundrobin';
  /** The server for the next new connection, or -1 when none is up. */
  pick(): number;
  connected(server: number): void;
  disconnected(server: number): void;
  setWeight(server: number, weight: number): void;
  /** A server that is down (or not yet added) receives nothing. */
  setUp(server: number, up: boolean): void;
  weight(server: number): number;
  /** Connections this load balancer holds on the server (HAProxy's `scur`). */
  sessions(server: number): number;
  /** Connections this process has placed on the server since it started (HAProxy's `stot`). */
  totalSessions(server: number): number;
}

/**
 * What both algorithms keep alike: weights, up/down, and the connection counts HAProxy reports.
 * Subclasses add their selection state and keep it up to date in `changed`.
 */
abstract class CountingBalancer implements Balancer {
  abstract readonly algorithm: Balancer['algorithm'];
  protected readonly active: number[];
  protected readonly weights: number[];
  protected readonly up: boolean[];
  private readonly total: number[];

  constructor(serverCount: number, initialWeight: number) {
    this.total = new Array<number>(serverCount).fill(0);
    this.active = new Array<number>(serverCount).fill(0);
    this.weights = new Array<number>(serverCount).fill(initialWeight);
    this.up = new Array<boolean>(serverCount).fill(false);
  }

  abstract pick(): number;

  /**
   * After a connect, a disconnect, a weight set or the server coming up; `force` for the last two,
   * which make HAProxy re-queue a server whatever its key (fwlc_update_server_weight).
   */
  protected abstract changed(server: number, force: boolean): void;

  connected(server: number): void {
    this.active[server] = (this.active[server] ?? 0) + 1;
    this.total[server] = (this.total[server] ?? 0) + 1;
    this.changed(server, false);
  }

  disconnected(server: number): void {
    this.active[server] = Math.max(0, (this.active[server] ?? 0) - 1);
    this.changed(server, false);
  }

  setWeight(server: number, weight: number): void {
    this.weights[server] = weight;
    this.changed(server, true);
  }

  setUp(server: number, up: boolean): void {
    this.up[server] = up;
    if (up) this.changed(server, true);
  }

  weight(server: number): number {
    return this.weights[server] ?? 0;
  }

  sessions(server: number): number {
    return this.active[server] ?? 0;
  }

  totalSessions(server: number): number {
    return this.total[server] ?? 0;
  }
}

/**
 * leastconn (fwlc). HAProxy keeps the servers in an eb32 tree keyed by
 *
 *     key = inflight == 0 ? 0 : floor((inflight + 1) · SRV_EWGHT_MAX / eweight)
 *
 * with eweight = uweight · BE_WEIGHT_SCALE, i.e. floor((active + 1) · 256 / weight), and takes the
 * first server of the tree. Two details matter for long-lived traffic and are kept here:
 * - an idle server has key 0 whatever its weight, so a new or restarted server takes every new
 *   connection until it holds one;
 * - the integer division makes nearby ratios tie. eb32 trees keep duplicate keys in insertion
 *   order and a server is re-inserted when its key changes (`fwlc_srv_reposition`; with weights
 *   of at most 256 every connect and disconnect changes it) or its weight does, so among equal
 *   keys the server that reached its key first wins. A sequence number bumped on every
 *   re-insertion tracks that.
 * Not modelled: maxconn/queues (none in our configurations) and slowstart.
 */
export class LeastconnBalancer extends CountingBalancer {
  readonly algorithm = 'leastconn';
  private readonly keys: number[];
  private readonly queuedAt: number[];
  private sequence = 0;

  constructor(serverCount: number, initialWeight: number) {
    super(serverCount, initialWeight);
    this.keys = new Array<number>(serverCount).fill(0);
    this.queuedAt = new Array<number>(serverCount).fill(0);
  }

  private keyOf(server: number): number {
    const inflight = this.active[server] ?? 0;
    const eweight = (this.weights[server] ?? 0) * BE_WEIGHT_SCALE;
    return inflight === 0 ? 0 : Math.floor(((inflight + 1) * SRV_EWGHT_MAX) / eweight);
  }

  protected changed(server: number, force: boolean): void {
    const key = this.keyOf(server);
    if (!force && key === this.keys[server]) return;
    this.keys[server] = key;
    this.queuedAt[server] = ++this.sequence;
  }

  pick(): number {
    let best = -1;
    let bestKey = Infinity;
    let bestQueued = Infinity;
    for (let i = 0; i < this.active.length; i++) {
      // Weight 0 takes a server out of the tree in HAProxy; we never set 0 but keep the rule.
      if (this.up[i] !== true || this.weights[i] === 0) continue;
      const key = this.keys[i] ?? 0;
      const queued = this.queuedAt[i] ?? 0;
      if (key < bestKey || (key === bestKey && queued < bestQueued)) {
        best = i;
        bestKey = key;
        bestQueued = queued;
      }
    }
    return best;
  }
}

/**
 * roundrobin, as a smooth weighted round robin: every pick adds each up server's weight to its
 * credit, takes the server with the most credit (lowest index on ties) and charges it the sum of
 * the weights. Over any stretch of constant weights each server gets a share of new connections
 * proportional to its weight, spread evenly. HAProxy's fwrr reaches the same shares with a
 * different interleaving (position trees per weight); connection counts play no part in either.
 */
export class RoundrobinBalancer extends CountingBalancer {
  readonly algorithm = 'roundrobin';
  private readonly credit: number[];

  constructor(serverCount: number, initialWeight: number) {
    super(serverCount, initialWeight);
    this.credit = new Array<number>(serverCount).fill(0);
  }

  pick(): number {
    let best = -1;
    let total = 0;
    for (let i = 0; i < this.weights.length; i++) {
      const w = this.weights[i] ?? 0;
      if (this.up[i] !== true || w === 0) continue;
      total += w;
      this.credit[i] = (this.credit[i] ?? 0) + w;
      if (best === -1 || (this.credit[i] ?? 0) > (this.credit[best] ?? 0)) best = i;
    }
    if (best !== -1) this.credit[best] = (this.credit[best] ?? 0) - total;
    return best;
  }

  protected changed(): void {
    // Counts play no part in roundrobin's choice, and a new weight counts from the next pick.
  }

  override setUp(server: number, up: boolean): void {
    super.setUp(server, up);
    // A server coming back starts level instead of cashing in credit from before it left.
    if (up) this.credit[server] = 0;
  }
}

export function createBalancer(algorithm: 'leastconn' | 'roundrobin', serverCount: number, initialWeight: number): Balancer {
  return algorithm === 'leastconn' ? new LeastconnBalancer(serverCount, initialWeight) : new RoundrobinBalancer(serverCount, initialWeight);
}
