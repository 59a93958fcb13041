import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { labTimeSpec, type LabClock } from './clock.js';

/**
 * An HTTP proxy in front of graphite-web that puts `/render` on the lab clock: it rewrites the
 * relative `from` and `until` the weighter sends (`-60s`, `now`) into absolute lab-clock epochs,
 * and the timestamps of the points it returns from the lab clock back onto the wall clock the
 * weighter lives by (a 10 s bucket then lasts 0.5 s of it), so that what the weighter remembers
 * between cycles (stamped with its own clock) and when Graphite measured a load compare as they
 * would in production. This is what lets the unmodified CLI (`haproxy-weighter run`) read a
 * Graphite whose points are stamped in compressed time: the weighter's configuration, render
 * window included, is the production one in lab seconds.
 */

export interface GraphiteProxy {
  /** Base URL to give the weighter as `graphite.url`. */
  readonly url: string;
  /** Render requests served (and failed: bad time spec, upstream unreachable). */
  counts(): { readonly served: number; readonly failed: number };
  stop(): Promise<void>;
}

/** Pure: the upstream URL for a request path, with the render window moved onto the lab clock. */
export function rewriteRenderUrl(upstream: string, path: string, labNowEpoch: number): URL {
  const url = new URL(path, upstream);
  if (url.pathname.endsWith('/render') || url.pathname.endsWith('/render/')) {
    const from = labTimeSpec(url.searchParams.get('from') ?? '-1d', labNowEpoch);
    const until = labTimeSpec(url.searchParams.get('until') ?? 'now', labNowEpoch);
    if (from === null || until === null) throw new Error(`cannot put from=${url.searchParams.get('from')} until=${url.searchParams.get('until')} on the lab clock`);
    url.searchParams.set('from', String(from));
    url.searchParams.set('until', String(until));
  }
  return url;
}

/**
 * Pure: a `/render?format=json` body with every point's timestamp moved by `toWall` (lab-clock
 * epoch seconds to wall-clock epoch seconds); any other body unchanged.
 */
export function wallClockTimestamps(body: string, toWall: (labEpochSeconds: number) => number): string {
  let doc: unknown;
  try {
    doc = JSON.parse(body);
  } catch {
    return body;
  }
  if (!Array.isArray(doc)) return body;
  const moved = doc.map((series: unknown) => {
    if (series === null || typeof series !== 'object' || !Array.isArray(Reflect.get(series, 'datapoints'))) return series;
    const points = Reflect.get(series, 'datapoints') as unknown[];
    return { ...series, datapoints: points.map((p) => (Array.isArray(p) && p.length === 2 && typeof p[1] === 'number' ? [p[0], toWall(p[1])] : p)) };
  });
  return JSON.stringify(moved);
}

export async function startGraphiteProxy(upstream: string, clock: LabClock): Promise<GraphiteProxy> {
  let served = 0;
  let failed = 0;
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    try {
      if (req.method !== 'GET') throw new Error(`only GET is proxied, got ${String(req.method)}`);
      const target = rewriteRenderUrl(upstream, req.url ?? '/', clock.epochAt(clock.now()));
      const response = await fetch(target, { signal: AbortSignal.timeout(10_000) });
      const raw = Buffer.from(await response.arrayBuffer());
      const isRender = target.pathname.endsWith('/render') || target.pathname.endsWith('/render/');
      const body =
        isRender && response.ok
          ? Buffer.from(wallClockTimestamps(raw.toString('utf8'), (epoch) => clock.wallMsAt(epoch - clock.labEpoch) / 1000), 'utf8')
          : raw;
      res.writeHead(response.status, { 'content-type': response.headers.get('content-type') ?? 'application/json', 'content-length': body.length });
      res.end(body);
      served++;
    } catch (error) {
      failed++;
      const message = error instanceof Error ? error.message : String(error);
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`lab graphite proxy: ${message}`);
    }
  };
  const server = createServer((req, res) => void handle(req, res));
  const port = await new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, () => {
      const address = server.address();
      if (address !== null && typeof address === 'object') resolve(address.port);
      else reject(new Error('graphite proxy has no port'));
    });
  });
  let stopped = false;
  return {
    url: `http://127.0.0.1:${port}`,
    counts: () => ({ served, failed }),
    stop: async () => {
      if (stopped) return;
      stopped = true;
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
