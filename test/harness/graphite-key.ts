/**
 * Graphite behind an API key in the path, as Hosted Graphite serves it (`https://host/<key>/render`,
 * the weighter's `graphite.auth.type: url-key`): a loopback HTTP front that answers 401 to any
 * request whose first path segment is not the key, and forwards the others, key removed, to
 * `upstream` (graphite-web, or a fault proxy in front of it) with its real status and body. Only
 * GET is forwarded.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { closeHttpServer, listenOnLoopback } from './loopback-server.js';

export interface KeyedGraphite {
  /** The base URL to configure as `graphite.url` (without the key). */
  readonly url: string;
  /** The path and query of every request, as received (key included). */
  readonly paths: readonly string[];
  stop(): Promise<void>;
}

export async function startKeyedGraphite(upstream: string, key: string): Promise<KeyedGraphite> {
  const paths: string[] = [];
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    paths.push(req.url ?? '/');
    const incoming = new URL(req.url ?? '/', 'http://front');
    const [, first, ...rest] = incoming.pathname.split('/');
    if (req.method !== 'GET' || first === undefined || decodeURIComponent(first) !== key) {
      res.writeHead(401, { 'content-type': 'text/plain' }).end('Unauthorized: invalid API key\n');
      return;
    }
    const target = new URL(`/${rest.join('/')}${incoming.search}`, upstream);
    try {
      const response = await fetch(target, { signal: AbortSignal.timeout(30_000) });
      res.writeHead(response.status, { 'content-type': response.headers.get('content-type') ?? 'application/json' }).end(await response.text());
    } catch (error) {
      res.writeHead(502, { 'content-type': 'text/plain' }).end(`upstream failed: ${error instanceof Error ? error.message : String(error)}\n`);
    }
  };
  const server = createServer((req, res) => void handle(req, res));
  const port = await listenOnLoopback(server, 'the keyed Graphite front');
  return {
    url: `http://127.0.0.1:${port}`,
    paths,
    stop: () => closeHttpServer(server),
  };
}
