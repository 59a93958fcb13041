import { connect, type Socket } from 'node:net';
import type { LabClock } from './clock.js';

/**
 * The real lab's traffic generator: replays one schedule of long-lived TCP connections (arrival,
 * rate, end, in lab seconds) through one or more HAProxy frontends at once, the same connection
 * opened on every target at the same moment, so that runs compared side by side see identical
 * traffic.
 *
 * Each connection sends newline-terminated points. To keep the number of writes low (a few
 * thousand connections on 2 cores) every connection writes once per Graphite bucket, at its own
 * fixed phase early in the bucket, exactly the lines it owes for its time alive in that bucket;
 * a connection that arrives after its phase writes at once, and one that leaves before its phase
 * writes its share as it leaves. The sinks count lines per bucket by arrival time, so a server's
 * count for a bucket is the sum of rate × time alive of the connections it holds, as in the
 * simulator, to within one line per connection.
 */

export interface ScheduledConnection {
  /** Lab seconds; negative for the clients already connected at lab time 0. */
  readonly arrival: number;
  /** Points per lab second. */
  readonly rate: number;
  /** Lab seconds at which the client disconnects. */
  readonly end: number;
}

export interface Schedule {
  /** Connected before the clock starts, in arrival order. */
  readonly initial: readonly ScheduledConnection[];
  /** Arriving during the run, in time order. */
  readonly arrivals: readonly ScheduledConnection[];
}

export interface GeneratorTarget {
  readonly name: string;
  readonly port: number;
  /**
   * Resolves once the servers behind the target have accepted `count` connections in all. When
   * given, the initial connections are opened one at a time, each only after HAProxy has placed
   * the one before: HAProxy runs several threads, so connections merely opened in order may be
   * placed in another order, and the stacks would not start from the same placement.
   */
  readonly placed?: (count: number) => Promise<void>;
}

export interface GeneratorOptions {
  readonly targets: readonly GeneratorTarget[];
  readonly schedule: Schedule;
  readonly clock: LabClock;
  /** Graphite's resolution in lab seconds: one write per connection per bucket. */
  readonly bucketSeconds: number;
  /** Real lines sent per point (e.g. 0.1: one line stands for 10 points), to bound the CPU. */
  readonly linesPerPoint: number;
  /** Wall-clock milliseconds between two passes of the event loop (default 20). */
  readonly tickMs?: number;
  /** Initial connections being opened at once per target when no target says when one is placed (default 64). */
  readonly openConcurrency?: number;
}

export interface GeneratorStats {
  readonly opened: number;
  readonly closed: number;
  readonly linesWritten: number;
  /** Lines not written because a socket's buffer was full (0 when the lab keeps up). */
  readonly linesDropped: number;
  readonly socketErrors: number;
  /** Largest delay of a pass behind its schedule, in wall-clock milliseconds. */
  readonly maxLagMs: number;
}

export interface Generator {
  /** Opens every initial connection on every target; resolves when all are connected. */
  openInitial(): Promise<void>;
  /** Replays the schedule from lab time 0 (the clock must be started) until `untilLab` or abort. */
  run(untilLab: number, signal: AbortSignal): Promise<void>;
  /** Connections currently open, per target. */
  open(): number[];
  stats(): GeneratorStats;
  /** Destroys every socket at once. Safe to call twice. */
  stop(): void;
}

/** Slots per bucket: a connection's write phase is one of them. */
const SLOTS = 20;
/** Writes happen in the first part of a bucket, so a late pass still lands in the right bucket. */
const FIRST_SLOT = 1;
const LAST_SLOT = 11;
/** A socket holding more unsent bytes than this is not keeping up: its lines are dropped. */
const MAX_BUFFERED_BYTES = 1 << 20;
const LINE = 'lab.point 1\n';
const LINES_PER_CHUNK = 8192;
const CHUNK = Buffer.from(LINE.repeat(LINES_PER_CHUNK), 'latin1');

/** Pure: lines owed for `seconds` of a connection at `rate`, given the carried fraction. */
export function owedLines(rate: number, seconds: number, linesPerPoint: number, carry: number): { lines: number; carry: number } {
  const exact = Math.max(0, rate * seconds * linesPerPoint) + carry;
  const lines = Math.floor(exact + 1e-9);
  return { lines, carry: Math.max(0, exact - lines) };
}

/** Pure: the write phase of connection `index`, spread over the early slots of a bucket. */
function slotOf(index: number): number {
  return FIRST_SLOT + (index % (LAST_SLOT - FIRST_SLOT + 1));
}

interface Stream {
  readonly socket: Socket;
  readonly rate: number;
  /** Lab time it starts sending (0 for the initial population). */
  readonly start: number;
  readonly end: number;
  readonly slot: number;
  /** Last bucket whose lines were written. */
  doneBucket: number;
  carry: number;
  closed: boolean;
}

export function createGenerator(options: GeneratorOptions): Generator {
  const { clock, bucketSeconds, linesPerPoint, targets, schedule } = options;
  const tickMs = options.tickMs ?? 20;
  const slotSeconds = bucketSeconds / SLOTS;
  const bySlot: Set<Stream>[] = Array.from({ length: SLOTS }, () => new Set<Stream>());
  /** streams[connection index][target index]; initial connections first, then arrivals. */
  const streams: (Stream[] | undefined)[] = [];
  const all = [...schedule.initial, ...schedule.arrivals];
  let opened = 0;
  let closed = 0;
  let linesWritten = 0;
  let linesDropped = 0;
  let socketErrors = 0;
  let maxLagMs = 0;
  let stopping = false;

  const openSocket = (port: number): Socket => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.setNoDelay(true);
    socket.on('error', () => {
      if (!stopping) socketErrors++;
    });
    opened++;
    return socket;
  };

  const write = (stream: Stream, from: number, to: number): void => {
    if (to <= from || stream.closed) return;
    const owed = owedLines(stream.rate, to - from, linesPerPoint, stream.carry);
    stream.carry = owed.carry;
    if (owed.lines === 0) return;
    if (stream.socket.writableLength > MAX_BUFFERED_BYTES || stream.socket.destroyed) {
      linesDropped += owed.lines;
      return;
    }
    let left = owed.lines;
    while (left > 0) {
      const n = Math.min(left, LINES_PER_CHUNK);
      stream.socket.write(CHUNK.subarray(0, n * LINE.length));
      left -= n;
    }
    linesWritten += owed.lines;
  };

  const bucketOf = (t: number): number => Math.floor(t / bucketSeconds + 1e-9);

  const createStreams = (index: number, connection: ScheduledConnection): Stream[] => {
    const list = targets.map((target) => ({
      socket: openSocket(target.port),
      rate: connection.rate,
      start: Math.max(0, connection.arrival),
      end: connection.end,
      slot: slotOf(index),
      doneBucket: -1,
      carry: 0,
      closed: false,
    }));
    streams[index] = list;
    return list;
  };

  const arrive = (index: number, connection: ScheduledConnection): void => {
    const t = connection.arrival;
    const b = bucketOf(t);
    for (const stream of createStreams(index, connection)) {
      bySlot[stream.slot]?.add(stream);
      // Its phase in this bucket has passed: write this bucket's share now.
      if (b * bucketSeconds + stream.slot * slotSeconds <= t) {
        write(stream, t, Math.min(stream.end, (b + 1) * bucketSeconds));
        stream.doneBucket = b;
      }
    }
  };

  const depart = (index: number): void => {
    for (const stream of streams[index] ?? []) {
      if (stream.closed) continue;
      const b = bucketOf(stream.end);
      if (stream.doneBucket < b) write(stream, Math.max(stream.start, b * bucketSeconds), stream.end);
      stream.doneBucket = b;
      stream.closed = true;
      bySlot[stream.slot]?.delete(stream);
      stream.socket.end();
      closed++;
    }
  };

  const writeSlot = (bucket: number, slot: number): void => {
    const from = bucket * bucketSeconds;
    for (const stream of bySlot[slot] ?? []) {
      if (stream.doneBucket >= bucket) continue;
      write(stream, Math.max(stream.start, from), Math.min(stream.end, from + bucketSeconds));
      stream.doneBucket = bucket;
    }
  };

  return {
    openInitial: async () => {
      const ordered = targets.some((t) => t.placed !== undefined);
      const concurrency = ordered ? 1 : (options.openConcurrency ?? 64);
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < schedule.initial.length && !stopping) {
          const index = next++;
          const connection = schedule.initial[index];
          if (connection === undefined) continue;
          const list = createStreams(index, connection);
          await Promise.all(
            list.map(
              (s, t) =>
                new Promise<void>((resolve, reject) => {
                  s.socket.once('connect', () => resolve());
                  s.socket.once('error', reject);
                }).then(() => targets[t]?.placed?.(index + 1)),
            ),
          );
        }
      };
      await Promise.all(Array.from({ length: concurrency }, worker));
      for (let i = 0; i < schedule.initial.length; i++) {
        for (const stream of streams[i] ?? []) bySlot[stream.slot]?.add(stream);
      }
    },

    run: async (untilLab, signal) => {
      if (!clock.started) throw new Error('start the lab clock before running the generator');
      const base = schedule.initial.length;
      // Departures of everyone, in time order: the schedule is known in advance.
      const departures = all.map((c, i) => ({ end: c.end, index: i })).sort((a, b) => a.end - b.end || a.index - b.index);
      let nextArrival = 0;
      let nextDeparture = 0;
      let cursorBucket = 0;
      let cursorSlot = 0;
      for (;;) {
        if (signal.aborted || stopping) return;
        const now = Math.min(clock.now(), untilLab);
        // Events in time order up to now; an arrival and a departure at the same time: arrival first.
        for (;;) {
          const arrival = schedule.arrivals[nextArrival];
          const departure = departures[nextDeparture];
          const tA = arrival?.arrival ?? Infinity;
          const tD = departure?.end ?? Infinity;
          if (Math.min(tA, tD) > now) break;
          if (arrival !== undefined && tA <= tD) {
            arrive(base + nextArrival, arrival);
            nextArrival++;
          } else if (departure !== undefined) {
            depart(departure.index);
            nextDeparture++;
          }
        }
        const nowBucket = bucketOf(now);
        const nowSlot = Math.floor((now - nowBucket * bucketSeconds) / slotSeconds + 1e-9);
        while (cursorBucket < nowBucket || (cursorBucket === nowBucket && cursorSlot <= nowSlot)) {
          const due = clock.wallMsAt(cursorBucket * bucketSeconds + cursorSlot * slotSeconds);
          maxLagMs = Math.max(maxLagMs, Date.now() - due - tickMs);
          writeSlot(cursorBucket, cursorSlot);
          cursorSlot++;
          if (cursorSlot === SLOTS) {
            cursorSlot = 0;
            cursorBucket++;
          }
        }
        if (now >= untilLab) return;
        await new Promise((resolve) => setTimeout(resolve, tickMs));
      }
    },

    open: () =>
      targets.map((_, t) =>
        streams.reduce((n, list) => {
          const stream = list?.[t];
          return n + (stream !== undefined && !stream.closed && !stream.socket.destroyed ? 1 : 0);
        }, 0),
      ),

    stats: () => ({ opened, closed, linesWritten, linesDropped, socketErrors, maxLagMs: Math.max(0, maxLagMs) }),

    stop: () => {
      if (stopping) return;
      stopping = true;
      for (const list of streams) for (const stream of list ?? []) stream.socket.destroy();
    },
  };
}
