import { createConnection, type Socket } from 'node:net';
import { parseEndpoint, type SocketRelayConfig } from '../core/config.js';
import { displaySafe } from '../core/display.js';
import { RelayError, describeError } from '../core/errors.js';
import { PROMPT, encodeInteractiveBatch, plainReplyFromInteractive, promptsExpected } from '../core/haproxy-protocol.js';
import type { RelayRequest, RelayResult, RuntimeRelay } from '../core/types.js';

/** A runtime API reply larger than this is not HAProxy talking to us. */
const MAX_REPLY_BYTES = 64 * 1024 * 1024;

const PROMPT_BYTES = Buffer.from(PROMPT);

export interface SocketRelayOptions {
  readonly connectTimeoutMs: number;
  readonly readTimeoutMs: number;
}

/**
 * Talks to each load balancer's runtime API directly (Unix socket or TCP): one connection and one
 * `; `-joined batch per load balancer per call, in interactive mode (see encodeInteractiveBatch):
 * the relay never half-closes before the last command's reply is in.
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
            const reply = await sendBatch(endpoint, req.commands, options, req.loadBalancer);
            return { loadBalancer: req.loadBalancer, ok: true, reply };
          } catch (error) {
            const wrapped = error instanceof RelayError ? error : new RelayError(`${req.loadBalancer}: ${describeError(error)}`, { loadBalancer: req.loadBalancer }, { cause: error });
            return { loadBalancer: req.loadBalancer, ok: false, error: wrapped };
          }
        }),
      );
    },
  };
}

/** Counts prompts in a stream of chunks; a prompt may straddle two chunks. */
function promptCounter(): (chunk: Buffer) => number {
  let carry: Buffer = Buffer.alloc(0);
  let count = 0;
  return (chunk) => {
    const window = carry.length === 0 ? chunk : Buffer.concat([carry, chunk]);
    for (let at = window.indexOf(PROMPT_BYTES); at >= 0; at = window.indexOf(PROMPT_BYTES, at + PROMPT_BYTES.length)) count++;
    // A prompt is 3 bytes: 2 bytes kept from this window cannot hold a whole one counted already.
    carry = window.subarray(Math.max(0, window.length - (PROMPT_BYTES.length - 1)));
    return count;
  };
}

/**
 * Sends one batch to one runtime API endpoint and resolves with the whole reply, in the
 * non-interactive form that splitReplies reads. The connection is closed by us once every
 * command has answered; if HAProxy closes it first, what arrived is returned and the parser
 * names what is missing.
 */
export function sendBatch(endpoint: string, commands: readonly string[], options: SocketRelayOptions, loadBalancer: string): Promise<string> {
  const target = parseEndpoint(endpoint);
  if (target === null) return Promise.reject(new RelayError(`${loadBalancer}: invalid runtime endpoint ${endpoint}`, { loadBalancer }));
  let batch: string;
  try {
    batch = encodeInteractiveBatch(commands);
  } catch (error) {
    return Promise.reject(new RelayError(`${loadBalancer}: ${describeError(error)}`, { loadBalancer }, { cause: error }));
  }
  const expected = promptsExpected(commands);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const countPrompts = promptCounter();
    let total = 0;
    let connected = false;
    let settled = false;
    const socket: Socket = target.kind === 'unix' ? createConnection({ path: target.path }) : createConnection({ host: target.host, port: target.port });

    const stopTimers = (): void => {
      clearTimeout(connectTimer);
      clearTimeout(readTimer);
    };
    const fail = (message: string, cause?: unknown): void => {
      if (settled) return;
      settled = true;
      stopTimers();
      socket.destroy();
      reject(new RelayError(`${loadBalancer} (${endpoint}): ${message}`, { loadBalancer }, { cause, mayHaveRun: connected }));
    };
    const finish = (): void => {
      if (settled) return;
      settled = true;
      stopTimers();
      try {
        resolve(plainReplyFromInteractive(Buffer.concat(chunks).toString('utf8')));
      } catch (error) {
        reject(new RelayError(`${loadBalancer} (${endpoint}): ${describeError(error)}`, { loadBalancer }, { cause: error, mayHaveRun: true }));
      }
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
      socket.write(batch);
    });
    socket.on('data', (chunk: Buffer) => {
      if (settled) return;
      total += chunk.length;
      if (total > MAX_REPLY_BYTES) {
        fail(`reply larger than ${MAX_REPLY_BYTES} bytes`);
        return;
      }
      chunks.push(chunk);
      if (countPrompts(chunk) >= expected) {
        // Every command has answered: now the session may end.
        finish();
        socket.end();
      }
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      const phase = connected ? 'connection failed during the reply' : 'cannot connect';
      fail(`${phase}: ${error.code ?? displaySafe(error.message)}`, error);
    });
    socket.on('close', finish);
  });
}
