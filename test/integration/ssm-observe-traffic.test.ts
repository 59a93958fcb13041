/**
 * Observation at fleet scale on the real parts: a 1,000-server backend of a real HAProxy that has
 * served real TCP traffic (connections driven through it on loopback, some held open), observed
 * through the local SSM endpoint with GetCommandInvocation's real output limits, and through the
 * S3 output bucket.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { STDOUT_LIMIT_CHARS, createSsmRelayFor } from '../../functions/adapters/ssm-relay.js';
import { observeBackends } from '../../functions/core/observe.js';
import type { ObservedBackend } from '../../functions/core/types.js';
import type { BackendSpec } from '../harness/haproxy.js';
import { listenOnLoopback } from '../harness/loopback-server.js';
import { waitFor } from '../harness/processes.js';
import { startSsmFleet, type SsmFleet } from '../ssm-endpoint/fleet.js';

const SERVERS = 1_000;
const CONNECTIONS = 6_000;
const HELD_OPEN = 400;
const BACKEND = 'be_ingest';

/** An echo server per HAProxy server (its own loopback port, as real servers have their own address). */
async function startEcho(): Promise<{ port: number; server: Server }> {
  const server = createServer((socket) => {
    socket.on('error', () => undefined);
    socket.pipe(socket);
  });
  return { port: await listenOnLoopback(server, 'an echo server'), server };
}

/** One client connection through HAProxy: sends some points, waits for their echo; closes it unless held. */
function exchange(port: number, hold: boolean, points: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port }, () => socket.write('ingest.point 1 1700000000\n'.repeat(points)));
    socket.setTimeout(30_000, () => socket.destroy(new Error('no echo within 30 s')));
    socket.once('error', reject);
    socket.once('data', () => {
      socket.setTimeout(0);
      if (!hold) socket.end();
      resolve(socket);
    });
  });
}

function ok(result: { ok: true; backend: ObservedBackend } | { ok: false; error: Error } | undefined): ObservedBackend {
  if (result === undefined) throw new Error('no observation');
  if (!result.ok) throw result.error;
  return result.backend;
}

describe(`observing a ${SERVERS.toLocaleString('en-US')}-server backend that has served real traffic`, () => {
  let fleet: SsmFleet;
  let echoes: { port: number; server: Server }[] = [];
  const held: Socket[] = [];
  let rawReply = '';

  beforeAll(async () => {
    echoes = await Promise.all(Array.from({ length: SERVERS }, () => startEcho()));
    const servers = echoes.map((echo, i) => ({ name: `ingest-${String(i + 1).padStart(4, '0')}.eu-west-1.internal`, address: `127.0.0.1:${echo.port}` }));
    const backend: BackendSpec = { name: BACKEND, balance: 'roundrobin', servers, frontend: true };
    fleet = await startSsmFleet(1, [backend], { s3: true });
    const port = fleet.haproxies[0]?.frontendPorts[BACKEND];
    if (port === undefined) throw new Error('no frontend port');
    // Real connections, 50 at a time; the last HELD_OPEN stay open so that scur is filled too.
    for (let sent = 0; sent < CONNECTIONS; sent += 50) {
      const batch = await Promise.all(Array.from({ length: 50 }, (_, i) => exchange(port, sent + i >= CONNECTIONS - HELD_OPEN, 1 + ((sent + i) * 7919) % 97)));
      held.push(...batch.filter((s) => !s.writableEnded));
    }
    const h = fleet.haproxies[0];
    if (h === undefined) throw new Error('no HAProxy');
    await waitFor('HAProxy to count the held connections', async () => ((await h.showStat(BACKEND)).reduce((n, r) => n + Number(r.scur ?? 0), 0) >= HELD_OPEN ? true : undefined), { timeoutMs: 30_000, intervalMs: 100 });
    rawReply = await h.runtime(`show stat ${BACKEND} 6 -1; show servers state ${BACKEND}`);
  }, 180_000);

  afterAll(async () => {
    for (const s of held) s.destroy();
    await fleet?.stop();
    await Promise.all(echoes.map((echo) => new Promise<void>((resolve) => echo.server.close(() => resolve()))));
  });

  let encodedWhole = 0;
  it('has filled traffic counters on every server', () => {
    const rows = rawReply.split('\n').filter((l) => l.startsWith(`${BACKEND},ingest-`));
    expect(rows).toHaveLength(SERVERS);
    const header = (rawReply.split('\n')[0] ?? '').slice(2).split(',');
    const stot = header.indexOf('stot');
    const bout = header.indexOf('bout');
    for (const row of rows) {
      const f = row.split(',');
      expect(Number(f[stot])).toBeGreaterThan(0);
      expect(Number(f[bout])).toBeGreaterThan(0);
    }
    // What the document used to print for this reply (gzip -9 + base64 of all of it).
    encodedWhole = gzipSync(Buffer.from(rawReply), { level: 9 }).toString('base64').length;
    console.info(`1,000 servers after ${CONNECTIONS} connections: raw reply ${rawReply.length} bytes, whole reply gzip -9 + base64 ${encodedWhole} characters`);
  });

  it('fits GetCommandInvocation’s output limit once the document cuts it, and reads every server', async () => {
    const relay = createSsmRelayFor(fleet.settings, fleet.instanceIds, { api: fleet.api });
    const id = String(fleet.instanceIds[0]);
    const observed = await observeBackends(relay, new Map([[id, [BACKEND]]]));
    const perBackend = observed.get(id);
    if (!(perBackend instanceof Map)) throw perBackend ?? new Error('no observation');
    const backend = ok(perBackend.get(BACKEND));

    const printed = fleet.endpoint.invocations().at(-1)?.stdout ?? '';
    expect(printed.length).toBeLessThan(STDOUT_LIMIT_CHARS);
    expect(printed.length).toBeLessThan(encodedWhole / 2);
    expect(backend.algorithm).toBe('roundrobin');
    expect(backend.servers).toHaveLength(SERVERS);
    expect(backend.servers.reduce((n, s) => n + s.sessions, 0)).toBe(HELD_OPEN);
    expect(new Set(backend.servers.map((s) => s.weight))).toEqual(new Set([100]));
    console.info(`1,000 servers after ${CONNECTIONS} connections: document output ${printed.length} characters`);
  });

  it('reads the same through the S3 output bucket, whatever its size', async () => {
    const relay = createSsmRelayFor(fleet.settings, fleet.instanceIds, { api: fleet.api, ...(fleet.output === undefined ? {} : { output: fleet.output }) });
    const id = String(fleet.instanceIds[0]);
    const viaS3 = await observeBackends(relay, new Map([[id, [BACKEND]]]));
    const perBackend = viaS3.get(id);
    if (!(perBackend instanceof Map)) throw perBackend ?? new Error('no observation');
    const backend = ok(perBackend.get(BACKEND));

    expect(backend.servers).toHaveLength(SERVERS);
    expect(backend.servers.reduce((n, s) => n + s.sessions, 0)).toBe(HELD_OPEN);
    const key = fleet.endpoint.invocations().at(-1)?.outputKey;
    expect(key).toMatch(new RegExp(`^haproxy-weighter/[0-9a-f-]{36}/${id}/awsrunShellScript/relayRuntimeCommands/stdout$`));
    expect(fleet.s3?.object('haproxy-weighter-test-relay-output', String(key))?.toString('utf8')).toBe(fleet.endpoint.invocations().at(-1)?.stdout);
  });
});
