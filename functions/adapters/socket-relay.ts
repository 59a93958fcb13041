import { createConnection, type Socket } from 'node:net';
import { parseEndpoint, type SocketRelayConfig } from '../core/config.js';
import { RelayError } from '../core/errors.js';
import { encodeBatch } from '../core/haproxy-protocol.js';
import type { RelayRequest, RelayResult, RuntimeRelay } from '../core/types.js';

/** A runtime API reply larger than this is not HAProxy talking to us. */
const MAX_REPLY_BYTES = 64 * 1024 * 1024;

export interface SocketRelayOptions {
  readonly connectTimeoutMs: number;
  readonly readTimeoutMs: number;
}

/**
 * Talks to each load balancer's runtime API directly (Unix socket or TCP): one connection and one
 * `; `-joined batch per load balancer per call. HAProxy closes a non-interactive connection after
 * the last reply, so the reply is complete when the socket ends.
 */
export function createSocketRelay(config: Pick<SocketRelayConfig, 'loadBalancers' | 'connectTimeoutMs' | 'readTimeoutMs'>): RuntimeRelay {
  const endpoints = new Map(config.loadBalancers.map((lb) => [lb.name, lb.endpoint]));
  const options: SocketRelayOptions = { connectTimeoutMs: config.connectTimeoutMs, readTimeoutMs: config.readTimeoutMs };
  return {
    loadBalancers: config.loadBalancers.map((lb) => lb.name),
    run(requests: readonly RelayRequest[]): Promise<readonly RelayResult[]> {
      return Promise.all(
        requests.map(async (req): Promise<RelayResult> => {
          const endpoint = endpoints.get(req.loadBalancer);
          if (endpoint === undefined) {
            return { loadBalancer: req.loadBalancer, ok: false, error: new RelayError(`Unknown load balancer ${req.loadBalancer}`, { loadBalancer: req.loadBalancer }) };
          }
          try {
            const reply = await sendBatch(endpoint, encodeBatch(req.commands), options, req.loadBalancer);
            return { loadBalancer: req.loadBalancer, ok: true, reply };
          } catch (error) {
            const wrapped = error instanceof RelayError ? error : new RelayError(`${req.loadBalancer}: ${String(error)}`, { loadBalancer: req.loadBalancer }, { cause: error });
            return { loadBalancer: req.loadBalancer, ok: false, error: wrapped };
          }
        }),
      );
    },
  };
}

/** Sends one batch to one runtime API endpoint and resolves with the whole reply. */
export function sendBatch(endpoint: string, batch: string, options: SocketRelayOptions, loadBalancer: string): Promise<string> {
  const target = parseEndpoint(endpoint);
  if (target === null) return Promise.reject(new RelayError(`${loadBalancer}: invalid runtime endpoint ${endpoint}`, { loadBalancer }));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    let connected = false;
    let settled = false;
    const socket: Socket = target.kind === 'unix' ? createConnection({ path: target.path }) : createConnection({ host: target.host, port: target.port });

    const fail = (message: string, cause?: unknown): void => {
      if (settled) return;
      settled = true;
      clearTimeout(connectTimer);
      clearTimeout(readTimer);
      socket.destroy();
      reject(new RelayError(`${loadBalancer} (${endpoint}): ${message}`, { loadBalancer }, { cause, mayHaveRun: connected }));
    };

    const connectTimer = setTimeout(() => fail(`no connection within ${options.connectTimeoutMs} ms`), options.connectTimeoutMs);
    let readTimer: NodeJS.Timeout | undefined;

    socket.on('connect', () => {
      connected = true;
      clearTimeout(connectTimer);
      readTimer = setTimeout(
        () => fail(`no complete reply within ${options.readTimeoutMs} ms (received ${total} bytes)`),
        options.readTimeoutMs,
      );
      socket.end(batch);
    });
    socket.on('data', (chunk: Buffer) => {
      total += chunk.length;
      if (total > MAX_REPLY_BYTES) {
        fail(`reply larger than ${MAX_REPLY_BYTES} bytes`);
        return;
      }
      chunks.push(chunk);
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      const phase = connected ? 'connection failed during the reply' : 'cannot connect';
      fail(`${phase}: ${error.code ?? error.message}`, error);
    });
    socket.on('close', () => {
      if (settled) return;
      settled = true;
      clearTimeout(connectTimer);
      clearTimeout(readTimer);
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
  });
}
