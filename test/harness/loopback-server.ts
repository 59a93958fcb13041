/**
 * Starting and stopping the loopback servers the harness stands up in front of or instead of a
 * real service (key front, ingestion stand-in, local AWS endpoints).
 */
import type { Server as HttpServer } from 'node:http';
import type { Server } from 'node:net';

/** Binds `server` to a port the OS picks on 127.0.0.1 and returns that port; rejects when the bind fails. */
export async function listenOnLoopback(server: Server, what: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address !== 'object') throw new Error(`${what} has no TCP address`);
  return address.port;
}

/**
 * Binds an HTTP server that stands in for an AWS endpoint and returns its base URL. AWS endpoints
 * keep idle connections far longer than Node's 5 s default; a shorter server timeout makes the SDK
 * reuse sockets the server has just closed ("socket hang up").
 */
export async function listenAsAwsEndpoint(server: HttpServer, what: string): Promise<string> {
  server.keepAliveTimeout = 60_000;
  server.headersTimeout = 65_000;
  return `http://127.0.0.1:${await listenOnLoopback(server, what)}`;
}

/** Stops accepting connections, then cuts the open ones (idle keep-alive included), and waits until closed. */
export async function closeHttpServer(server: HttpServer): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
  await closed;
}
