/**
 * Shared data types of the rebalance cycle. The core passes these plain, readonly values between
 * pure functions; adapters (Graphite, socket relay, SSM relay) produce or consume them.
 */

/** Operator state that decides whether we may touch a server at all. */
export type AdminState = 'ready' | 'maint' | 'drain';

/** One server as one load balancer sees it (from `show stat` + `show servers state`). */
export interface ObservedServer {
  readonly name: string;
  /** The raw `status` column, e.g. `UP`, `DOWN`, `MAINT`, `DRAIN`, `no check`, `UP 1/3`. */
  readonly status: string;
  readonly admin: AdminState;
  /** Current user weight (`uweight`, the one `set server ... weight` changes). */
  readonly weight: number;
  /** Weight from the configuration file (`srv_iweight`). */
  readonly initialWeight: number;
  /** Current sessions (`scur`). */
  readonly sessions: number;
  /** Why the runtime API cannot address this server (see unaddressableServerName); absent when it can. */
  readonly unaddressable?: string;
  /**
   * Sessions this process has sent to the server since it started (`stot`); absent when the reply
   * does not carry the column. It only grows, so a fall means a new process (a reload) or
   * `clear counters`, and its rise between two cycles counts the connections placed meanwhile.
   */
  readonly totalSessions?: number;
}

/** One backend as one load balancer sees it. */
export interface ObservedBackend {
  readonly backend: string;
  /** The backend's balance algorithm from the BACKEND row's `algo` column, e.g. `leastconn`. */
  readonly algorithm: string;
  readonly servers: readonly ObservedServer[];
}

/** Per-server input of a weighting function. */
export interface WeightingInput {
  /** Aggregated load from Graphite (finite, >= 0). */
  readonly load: number;
  /** Weight currently set in HAProxy (1..256). */
  readonly weight: number;
  /** Current sessions on this load balancer, for policies that reason per connection. */
  readonly sessions: number;
}

/** Why a server or a backend is left alone. Reports, tables and metrics read these codes. */
export type ServerSkipReason = 'maint' | 'drain' | 'weight-zero' | 'no-data' | 'unaddressable';

export type Action =
  | {
      readonly kind: 'set-weight';
      readonly server: string;
      /** null for a server weighed by its share, without data of its own. */
      readonly load: number | null;
      readonly current: number;
      readonly weight: number;
    }
  | {
      readonly kind: 'unchanged';
      readonly server: string;
      readonly load: number | null;
      readonly current: number;
    }
  | {
      readonly kind: 'skip';
      readonly server: string;
      readonly load: number | null;
      readonly current: number;
      readonly reason: ServerSkipReason;
      readonly detail: string;
    };

export type BackendSkipReason =
  | 'graphite-failed'
  | 'no-quorum'
  | 'unsupported-algorithm'
  | 'observe-failed'
  | 'backend-not-found'
  | 'no-servers';

/** Why a server got the weight it got (plan.ts says what each rule means). */
export type WeightRule = 'balanced' | 'deadband' | 'follow-sessions' | 'deficit' | 'function' | 'no-sessions' | 'bound' | 'sinkhole' | 'new-server' | 'keep-share' | 'guard';

export interface WeightExplanation {
  readonly rule: WeightRule;
  /** The load as measured; null without data. */
  readonly load: number | null;
  /** The load estimated for now from what HAProxy placed since it was measured; null when not estimated. */
  readonly loadNow: number | null;
  readonly sessions: number;
  /** The unrounded weight the rule asked for, before the 1..256 clamp and maxChangePerCycle. */
  readonly target: number;
  /** Why a server is weighed by share or flagged, in words. */
  readonly detail?: string;
}

/** The decision for one backend on one load balancer. */
export type BackendPlan =
  | {
      readonly status: 'planned';
      readonly backend: string;
      readonly loadBalancer: string;
      readonly algorithm: string;
      /** max/mean of the loads of the servers in service with data; null when it cannot be computed. */
      readonly imbalance: number | null;
      readonly actions: readonly Action[];
      /** Per server: what decided its weight. */
      readonly explanations: ReadonlyMap<string, WeightExplanation>;
      /** Why the memory thinks a new HAProxy process took over since the previous cycle; null otherwise. */
      readonly reload: string | null;
    }
  | {
      readonly status: 'skipped';
      readonly backend: string;
      readonly loadBalancer: string;
      readonly reason: BackendSkipReason;
      /** The reason in words, without the backend and load balancer names (the report has them). */
      readonly message: string;
      /** The balance algorithm HAProxy reports; null when the backend could not be observed. */
      readonly algorithm: string | null;
      /** Servers as observed, when observation worked, so the report can still show them. */
      readonly actions: readonly Action[];
    };

/** A runtime API batch for one load balancer. */
export interface RelayRequest {
  readonly loadBalancer: string;
  /** Validated runtime commands, sent in order as one `; `-joined line. */
  readonly commands: readonly string[];
}

export type RelayResult =
  | { readonly loadBalancer: string; readonly ok: true; readonly reply: string }
  | { readonly loadBalancer: string; readonly ok: false; readonly error: Error };

/**
 * Reaches the runtime API of each load balancer: a Unix/TCP socket locally, or SSM Run Command in
 * AWS. One call is one round trip per load balancer; one load balancer failing never fails the
 * others (its result says why).
 */
export interface RuntimeRelay {
  readonly loadBalancers: readonly string[];
  /**
   * Longest batch (commands joined by `; `) one request may carry, when the relay has a limit (one
   * SSM command); the cycle cuts write batches to fit, each part with its own operator-state read.
   */
  readonly maxBatchChars?: number;
  /** Requests for the same load balancer may run at once; results come back in request order. */
  run(requests: readonly RelayRequest[], options?: RelayRunOptions): Promise<readonly RelayResult[]>;
}

/** The cycle's time budget, as a relay sees it. */
export interface RelayRunOptions {
  /** Aborted when the cycle is out of time: nothing more is started and waiting stops at once. */
  readonly signal?: AbortSignal;
  /** Milliseconds since the epoch: a batch that would not finish by then is not started. */
  readonly deadline?: number;
}

/** One Graphite series after validation: a name and its datapoint values (nulls kept). */
export interface Series {
  readonly name: string;
  readonly values: readonly (number | null)[];
  /**
   * Epoch seconds of each point (Graphite's bucket start), parallel to `values`; absent when the
   * source gives none. Used to tell how old a load is, never to decide whether a point counts.
   */
  readonly timestamps?: readonly number[];
}

/** Reads load series for a backend. */
export interface MetricSource {
  render(target: string, from: string, until?: string, options?: RenderOptions): Promise<readonly Series[]>;
}

export interface RenderOptions {
  /** The cycle's time budget: when it aborts, the source stops waiting (and retrying) and fails the render. */
  readonly signal?: AbortSignal;
}
