/**
 * The real lab's compressed clock. Connection lifetimes of tens of minutes and a weighter every
 * minute cannot fit in a run of a few minutes, and Graphite's 10 s resolution cannot be shortened
 * (the retention schema is fixed). So the whole lab runs on "lab time", `speedup` times faster
 * than the wall clock: traffic, sink buckets, carbon timestamps, the Graphite window the weighter
 * reads and its interval. Only the real latencies (socket writes, carbon, graphite-web, the
 * runtime API) are not compressed, so they weigh `speedup` times more than in production.
 *
 * Lab time 0 maps to `labEpoch` in carbon timestamps, far enough in the past that lab time never
 * passes the wall clock: carbon and graphite-web only know the wall clock, and a point in the
 * future would be hidden from a render that ends "now".
 */

export interface LabClock {
  readonly speedup: number;
  /** Unix seconds of lab time 0 in carbon (a multiple of 600, so buckets and minutes align). */
  readonly labEpoch: number;
  /** Lab seconds since lab time 0 (0 until `start`). */
  now(): number;
  /** Wall-clock milliseconds (Date.now() scale) at which the lab reaches `labSeconds`. */
  wallMsAt(labSeconds: number): number;
  /** Unix seconds (fractional) in carbon's view at a lab time. */
  epochAt(labSeconds: number): number;
  /** Starts lab time 0 now, or at a chosen wall-clock instant; the clock stands at 0 until started. */
  start(atWallMs?: number): void;
  readonly started: boolean;
}

export interface ClockOptions {
  readonly speedup: number;
  /** The longest lab time the run will reach: lab time must stay behind the wall clock. */
  readonly horizonSeconds: number;
  /** Injected for tests; Date.now by default. */
  readonly wallMs?: () => number;
}

/** Pure: the carbon epoch of lab time 0 for a run starting at `wallSeconds` that lasts `horizon` lab seconds. */
function labEpochFor(wallSeconds: number, horizonSeconds: number): number {
  // Lab time runs ahead of the wall clock by (1 - 1/speedup) of the horizon at most: a whole
  // horizon plus ten minutes behind is always enough.
  return Math.floor((wallSeconds - horizonSeconds - 600) / 600) * 600;
}

export function createLabClock(options: ClockOptions): LabClock {
  if (!(Number.isFinite(options.speedup) && options.speedup >= 1)) throw new Error(`speedup must be >= 1 (got ${options.speedup})`);
  const wallMs = options.wallMs ?? Date.now;
  const labEpoch = labEpochFor(wallMs() / 1000, options.horizonSeconds);
  let startMs: number | undefined;
  const clock: LabClock = {
    speedup: options.speedup,
    labEpoch,
    now: () => (startMs === undefined ? 0 : ((wallMs() - startMs) / 1000) * options.speedup),
    wallMsAt: (labSeconds) => (startMs ?? wallMs()) + (labSeconds / options.speedup) * 1000,
    epochAt: (labSeconds) => labEpoch + labSeconds,
    start: (atWallMs) => {
      if (startMs !== undefined) throw new Error('the lab clock was already started');
      startMs = atWallMs ?? wallMs();
    },
    get started() {
      return startMs !== undefined;
    },
  };
  return clock;
}

/**
 * Pure: a Graphite time (`-60s`, `-5min`, `now`, epoch seconds) as unix seconds on the lab clock,
 * for the Graphite proxy the weighter talks to. Accepts the forms the config schema accepts.
 */
export function labTimeSpec(spec: string, labNowEpoch: number): number | null {
  if (spec === 'now') return Math.floor(labNowEpoch);
  if (/^\d{9,11}$/.test(spec)) return Number(spec);
  const m = /^-(\d{1,6})(s|sec|seconds?|min|minutes?|h|hours?|d|days?)$/.exec(spec);
  if (m === null || m[1] === undefined || m[2] === undefined) return null;
  const unit = m[2];
  const seconds = unit.startsWith('mi') ? 60 : unit.startsWith('h') ? 3600 : unit.startsWith('d') ? 86_400 : 1;
  return Math.floor(labNowEpoch - Number(m[1]) * seconds);
}

/**
 * Pure: the wall-clock instant to start the lab clock so that the weighter's cycles, which run at
 * `firstCycleMs + n · intervalMs`, fall `leadSeconds` of lab time before each multiple of the
 * interval. The simulator runs its weighter exactly at those multiples and sees only buckets that
 * ended before them (a point is visible only after its delay); a real cycle a few lab seconds
 * earlier sees the same buckets, even with the cycles' slow drift. The first instant not before
 * `earliestMs` is returned.
 */
export function alignedClockStart(firstCycleMs: number, intervalMs: number, leadSeconds: number, speedup: number, earliestMs: number): number {
  const offset = (leadSeconds / speedup) * 1000;
  const m = Math.max(0, Math.ceil((earliestMs - firstCycleMs - offset) / intervalMs));
  return firstCycleMs + m * intervalMs + offset;
}
