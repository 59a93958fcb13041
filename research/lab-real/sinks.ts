import { createServer, type Server, type Socket } from 'node:net';
import { connectGraphite, type GraphitePoint } from '../../test/harness/graphite.js';
import type { LabClock } from './clock.js';

/**
 * The real lab's backend servers: one small TCP server per HAProxy server, on a free loopback port,
 * counting the newline-terminated points it receives into Graphite buckets of lab time (by arrival
 * time). Shortly after each bucket ends, every sink reports the rate it received in that bucket to
 * carbon (plaintext protocol) as `<prefix>.<server>.points_received`, stamped with the bucket's
 * start on the lab clock: what an ingestion server's own metrics would say. The counts are also
 * kept in memory: they are the ground truth the lab's figures are computed from.
 */

export interface SinkOptions {
  /** HAProxy server names, one sink each. */
  readonly names: readonly string[];
  readonly clock: LabClock;
  readonly bucketSeconds: number;
  /** Real lines per point (the generator's scale): reported rates are in points per lab second. */
  readonly linesPerPoint: number;
  /** Where to report; no reporting without it. */
  readonly carbon?: { readonly url: string; readonly carbonPort: number; readonly prefix: string };
  /** Wall-clock milliseconds after a bucket ends before it is reported (late lines still count). */
  readonly reportLagMs?: number;
  /**
   * Per sink, the lab second before which it reports nothing (a server whose metrics have not
   * reached Graphite yet: no series at all). Absent: every sink reports from the start.
   */
  readonly silentUntil?: readonly number[];
}

export interface Sinks {
  /** Loopback ports, in the order of `names`. */
  readonly ports: readonly number[];
  /** Reports each bucket to carbon as it completes, until `untilBucket` (exclusive). */
  startReporting(untilBucket: number): void;
  /** Mean received rate of each server over one bucket, in points per lab second. */
  loads(bucket: number): number[];
  /** Connections each server holds now. */
  sessions(): number[];
  /** Connections each server has accepted since it started. */
  accepted(): number[];
  /** Resolves once the sinks have accepted `count` connections in all since they started. */
  whenAccepted(count: number): Promise<void>;
  /** Buckets reported so far, and the wall-clock delay from each bucket's end to carbon's ack. */
  reports(): { readonly reported: number; readonly failed: number; readonly meanLagMs: number; readonly lastError?: string };
  stop(): Promise<void>;
}

/** Pure: newlines in a chunk, i.e. complete points (a line split across chunks counts once, at its end). */
function countLines(chunk: Buffer): number {
  let n = 0;
  let i = chunk.indexOf(10);
  while (i !== -1) {
    n++;
    i = chunk.indexOf(10, i + 1);
  }
  return n;
}

export async function startSinks(options: SinkOptions): Promise<Sinks> {
  const { names, clock, bucketSeconds, linesPerPoint } = options;
  const n = names.length;
  /** lines[bucket][server] */
  const lines: Float64Array[] = [];
  const live = new Array<number>(n).fill(0);
  const total = new Array<number>(n).fill(0);
  const sockets = new Set<Socket>();
  const servers: Server[] = [];
  const timers = new Set<NodeJS.Timeout>();
  let reported = 0;
  let failed = 0;
  let lagSum = 0;
  let lastError: string | undefined;
  let stopped = false;
  let acceptedInAll = 0;
  const waiters: { readonly count: number; readonly resolve: () => void }[] = [];

  const row = (bucket: number): Float64Array => {
    while (lines.length <= bucket) lines.push(new Float64Array(n));
    const r = lines[bucket];
    if (r === undefined) throw new Error(`no row for bucket ${bucket}`);
    return r;
  };

  const listen = (server: Server): Promise<number> =>
    new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, () => {
        const address = server.address();
        if (address !== null && typeof address === 'object') resolve(address.port);
        else reject(new Error('sink has no port'));
      });
    });

  const ports: number[] = [];
  try {
    for (let s = 0; s < n; s++) {
      const server = createServer((socket) => {
        sockets.add(socket);
        live[s] = (live[s] ?? 0) + 1;
        total[s] = (total[s] ?? 0) + 1;
        acceptedInAll++;
        for (let i = waiters.length - 1; i >= 0; i--) {
          const waiter = waiters[i];
          if (waiter !== undefined && waiter.count <= acceptedInAll) {
            waiters.splice(i, 1);
            waiter.resolve();
          }
        }
        socket.on('data', (chunk: Buffer) => {
          const t = clock.now();
          const bucket = Math.max(0, Math.floor(t / bucketSeconds));
          const r = row(bucket);
          r[s] = (r[s] ?? 0) + countLines(chunk);
        });
        socket.on('error', () => undefined);
        socket.once('close', () => {
          sockets.delete(socket);
          live[s] = (live[s] ?? 0) - 1;
        });
      });
      servers.push(server);
      ports.push(await listen(server));
    }
  } catch (error) {
    for (const server of servers) server.close();
    throw error;
  }

  const loads = (bucket: number): number[] => {
    const r = lines[bucket];
    return names.map((_, s) => (r?.[s] ?? 0) / (bucketSeconds * linesPerPoint));
  };

  const report = async (bucket: number, dueMs: number): Promise<void> => {
    const carbon = options.carbon;
    if (carbon === undefined) return;
    const values = loads(bucket);
    const points: GraphitePoint[] = names.flatMap((name, s) =>
      bucket * bucketSeconds < (options.silentUntil?.[s] ?? -Infinity)
        ? []
        : [{ path: `${carbon.prefix}.${name}.points_received`, value: Math.round((values[s] ?? 0) * 1000) / 1000, timestamp: clock.epochAt(bucket * bucketSeconds) }],
    );
    if (points.length === 0) return;
    try {
      await connectGraphite({ url: carbon.url, carbonPort: carbon.carbonPort }).write(points);
      reported++;
      lagSum += Date.now() - (dueMs - (options.reportLagMs ?? 40));
    } catch (error) {
      failed++;
      lastError = error instanceof Error ? error.message : String(error);
    }
  };

  return {
    ports,
    startReporting: (untilBucket) => {
      if (!clock.started) throw new Error('start the lab clock before reporting');
      const lag = options.reportLagMs ?? 40;
      const schedule = (bucket: number): void => {
        if (stopped || bucket >= untilBucket) return;
        const due = clock.wallMsAt((bucket + 1) * bucketSeconds) + lag;
        const timer = setTimeout(
          () => {
            timers.delete(timer);
            void report(bucket, due);
            schedule(bucket + 1);
          },
          Math.max(0, due - Date.now()),
        );
        timers.add(timer);
      };
      schedule(Math.max(0, Math.floor(clock.now() / bucketSeconds)));
    },
    loads,
    sessions: () => [...live],
    accepted: () => [...total],
    whenAccepted: (count) =>
      count <= acceptedInAll ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ count, resolve })),
    reports: () => ({ reported, failed, meanLagMs: reported === 0 ? NaN : lagSum / reported, ...(lastError === undefined ? {} : { lastError }) }),
    stop: async () => {
      if (stopped) return;
      stopped = true;
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      for (const socket of sockets) socket.destroy();
      await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
    },
  };
}
