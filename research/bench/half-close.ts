/**
 * How often a large batch comes back whole, by the way the client ends its side of the session:
 * one backend of 1,000 servers on 3 real HAProxy processes, `TRIALS` write batches of 1,001
 * commands (a `show servers state`, then a weight per server) per load balancer and per way:
 * - half-close: the batch line, then an immediate half-close (the socket relay before the fix,
 *   and `printf ... | socat stdio` as the SSM document still does);
 * - no half-close: the batch line, then waiting for HAProxy to close after its last reply;
 * - interactive: the socket relay as shipped (`prompt`, the batch, close after the last prompt).
 * A batch is whole when every command has its reply. Prints counts, not times.
 *
 * Usage: npm run bench:half-close [-- TRIALS]   (default 30)
 */
import { createConnection } from 'node:net';
import { sendBatch } from '../../functions/adapters/socket-relay.js';
import { encodeBatch, serversStateCommand, setWeightCommand, splitReplies } from '../../functions/core/haproxy-protocol.js';
import { startHaproxyFleet, stopAll, type HaproxyHandle } from '../../test/harness/haproxy.js';

const SERVERS = 1_000;
const BACKEND = 'be_big';
const TRIALS = Number(process.argv[2] ?? 30);
const names = Array.from({ length: SERVERS }, (_, i) => `srv${String(i).padStart(4, '0')}`);

type Way = 'half-close' | 'no half-close' | 'interactive';

/** The non-interactive exchange: the whole reply up to HAProxy's close, or up to an error. */
function plainExchange(path: string, line: string, halfClose: boolean): Promise<string> {
  return new Promise((resolve) => {
    const socket = createConnection({ path });
    const chunks: Buffer[] = [];
    socket.on('connect', () => (halfClose ? socket.end(line) : socket.write(line)));
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    // A reset (HAProxy closing with our batch unread) ends the exchange like a close.
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}

async function exchange(way: Way, lb: HaproxyHandle, commands: readonly string[]): Promise<string> {
  if (way === 'interactive') return sendBatch(lb.adminSocket, commands, { connectTimeoutMs: 5_000, readTimeoutMs: 60_000 }, 'bench');
  return plainExchange(lb.adminSocket, encodeBatch(commands), way === 'half-close');
}

/** How many commands got a reply: all of them, or the count splitReplies found before the cut. */
function answered(commands: readonly string[], reply: string): number {
  try {
    return splitReplies(commands, reply).length;
  } catch (error) {
    const m = /replied with (\d+) block/.exec(error instanceof Error ? error.message : '');
    return m === null ? -1 : Number(m[1]);
  }
}

const fleet = await startHaproxyFleet(3, { backends: [{ name: BACKEND, balance: 'leastconn', servers: names.map((name) => ({ name })) }] });
try {
  const ways: Way[] = ['half-close', 'no half-close', 'interactive'];
  console.log(`${TRIALS} trials x ${fleet.length} load balancers, ${SERVERS + 1} commands per batch, HAProxy ${(await fleet[0]?.runtime('show version'))?.trim() ?? '?'}`);
  for (const way of ways) {
    let whole = 0;
    const cut: number[] = [];
    for (let trial = 0; trial < TRIALS; trial++) {
      const commands = [serversStateCommand(BACKEND), ...names.map((n, i) => setWeightCommand(BACKEND, n, 1 + ((i + trial) % 256)))];
      const replies = await Promise.all(fleet.map((lb) => exchange(way, lb, commands)));
      for (const reply of replies) {
        const n = answered(commands, reply);
        if (n === commands.length) whole++;
        else cut.push(n);
      }
    }
    const total = TRIALS * fleet.length;
    const detail = cut.length === 0 ? '' : `, after ${Math.min(...cut)} to ${Math.max(...cut)} replies`;
    console.log(`${way.padEnd(14)} ${String(total - whole).padStart(4)} of ${total} batches cut short${detail}`);
  }
} finally {
  await stopAll(fleet);
}
