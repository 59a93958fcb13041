/**
 * The control loop on real parts: real HAProxy 2.6 (leastconn and roundrobin backends, a real soft
 * reload, `haproxy -sf`, and a server added at run time), real TCP connections held through it,
 * the real Graphite of the test run, and the real adapters (socket relay, Graphite source). Cycles
 * run back to back in this process with the memory `run` keeps between them; every weight asserted
 * is read back from HAProxy.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createGraphiteSource } from '../../functions/adapters/graphite.js';
import { createSocketRelay } from '../../functions/adapters/socket-relay.js';
import { parseConfig, type Config } from '../../functions/core/config.js';
import { createControlMemory, type ControlMemory } from '../../functions/core/control-memory.js';
import { runCycle, type CycleReport } from '../../functions/core/cycle.js';
import { feedLoads, uniquePrefix, type GraphiteClient } from '../harness/graphite.js';
import { startHaproxy, stopAll, type BackendSpec, type HaproxyHandle } from '../harness/haproxy.js';
import { listenOnLoopback } from '../harness/loopback-server.js';
import { waitFor } from '../harness/processes.js';
import { checkedReport } from '../harness/report.js';
import { sharedGraphite } from '../harness/shared-graphite.js';

const BACKEND = 'be_ingest';

let graphite: GraphiteClient;
const started: HaproxyHandle[] = [];
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  graphite = await sharedGraphite();
});
afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((c) => c()));
  await stopAll(started.splice(0));
});
afterAll(async () => {
  await Promise.all(cleanups.splice(0).map((c) => c()));
});

/** TCP servers that accept connections and hold them open, as ingestion servers hold their clients. */
interface Holders {
  readonly ports: readonly number[];
  /** Connections each server holds now. */
  open(): number[];
}

async function startHolders(count: number): Promise<Holders> {
  const servers: Server[] = [];
  const ports: number[] = [];
  const sockets: Set<Socket>[] = [];
  for (let i = 0; i < count; i++) {
    const held = new Set<Socket>();
    const server = createServer((socket) => {
      held.add(socket);
      socket.on('error', () => undefined);
      socket.on('close', () => held.delete(socket));
      socket.resume();
    });
    ports.push(await listenOnLoopback(server, 'a holder'));
    servers.push(server);
    sockets.push(held);
  }
  cleanups.push(async () => {
    for (const held of sockets) for (const s of held) s.destroy();
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  });
  return {
    ports,
    open: () => sockets.map((held) => held.size),
  };
}

/** Opens `count` client connections to HAProxy's frontend, one at a time (each placed before the next). */
async function openClients(port: number, count: number, holders: Holders): Promise<void> {
  for (let i = 0; i < count; i++) {
    const before = holders.open().reduce((a, b) => a + b, 0);
    const socket = connect({ host: '127.0.0.1', port });
    socket.on('error', () => undefined);
    cleanups.push(async () => {
      socket.destroy();
    });
    await waitFor('the connection to reach a server', async () => (holders.open().reduce((a, b) => a + b, 0) > before ? true : undefined), { timeoutMs: 10_000, intervalMs: 5 });
  }
}

function configFor(lb: HaproxyHandle, target: string, extra: Record<string, unknown> = {}): Config {
  return parseConfig({
    graphite: { url: graphite.url, timeoutMs: 5000, retries: 1 },
    relay: { type: 'socket', loadBalancers: [{ name: 'lb1', endpoint: lb.adminSocket }], connectTimeoutMs: 2000, readTimeoutMs: 5000 },
    // The defaults: the default policy and the 15-minute window.
    backends: [{ name: BACKEND, target, ...extra }],
  });
}

/** One apply cycle with the real adapters and the memory `run` keeps, its report checked against the schema. */
async function cycle(config: Config, memory: ControlMemory): Promise<CycleReport> {
  if (config.relay.type !== 'socket') throw new Error('the control-loop tests talk to sockets');
  const deps = { config, metrics: createGraphiteSource(config.graphite, { env: {} }), relay: createSocketRelay(config.relay), now: () => Date.now(), version: '0.0.0-test' };
  return checkedReport(await runCycle(deps, { mode: 'apply', memory }));
}

async function weightsOf(lb: HaproxyHandle, servers: readonly string[]): Promise<number[]> {
  const out: number[] = [];
  for (const s of servers) out.push((await lb.getWeight(BACKEND, s)).current);
  return out;
}

const planOf = (report: CycleReport) => report.backends[0]?.loadBalancers[0]?.plan;
const ruleOf = (report: CycleReport, server: string) => planOf(report)?.actions.find((a) => a.server === server)?.rule;

function backendOf(servers: BackendSpec['servers'], frontend = false): BackendSpec {
  return { name: BACKEND, balance: 'leastconn', servers, frontend };
}

describe('the control loop against real HAProxy and Graphite', () => {
  it('settles within 5 cycles under constant skewed loads with no session at all, without reaching the bounds', async () => {
    const prefix = uniquePrefix('settle');
    const lb = await startHaproxy({ backends: [backendOf([{ name: 's1' }, { name: 's2' }, { name: 's3' }])] });
    started.push(lb);
    const target = await feedLoads(graphite, prefix, { s1: 10, s2: 20, s3: 30 });
    const config = configFor(lb, target);
    const memory = createControlMemory();
    const history: number[][] = [];
    const reports: CycleReport[] = [];
    for (let i = 0; i < 7; i++) {
      reports.push(await cycle(config, memory));
      history.push(await weightsOf(lb, ['s1', 's2', 's3']));
    }
    // Settled: from the fifth cycle on (at the latest), nothing moves any more.
    const settledFrom = history.findIndex((w, i) => history.slice(i).every((later) => later.join() === w.join()));
    expect(settledFrom).toBeGreaterThanOrEqual(0);
    expect(settledFrom).toBeLessThanOrEqual(4);
    // The loads order the weights, gently: no server at a bound, none near HAProxy's 1.
    const last = history.at(-1) ?? [];
    expect(last[0]).toBeGreaterThan(last[1] ?? Infinity);
    expect(last[1]).toBeGreaterThan(last[2] ?? Infinity);
    const mean = last.reduce((a, b) => a + b, 0) / last.length;
    expect(Math.min(...last) / mean).toBeGreaterThan(0.5);
    for (const report of reports) expect(planOf(report)?.actions.map((a) => a.rule)).not.toContain('bound');
    expect(ruleOf(reports[0] as CycleReport, 's1')).toBe('no-sessions');
  });

  it('after a real soft reload (the old process holding the connections) names the reload and weighs sensibly in the new process', async () => {
    const prefix = uniquePrefix('reload');
    const holders = await startHolders(3);
    const lb = await startHaproxy({ backends: [backendOf(holders.ports.map((port, i) => ({ name: `s${i + 1}`, address: `127.0.0.1:${port}` })), true)] });
    started.push(lb);
    const port = lb.frontendPorts[BACKEND];
    if (port === undefined) throw new Error('no frontend port');
    await openClients(port, 60, holders);
    const target = await feedLoads(graphite, prefix, { s1: 3000, s2: 2000, s3: 1000 });
    const config = configFor(lb, target);
    const memory = createControlMemory();
    const servers = ['s1', 's2', 's3'];

    const before = await cycle(config, memory);
    expect(planOf(before)?.reload).toBeNull();
    await cycle(config, memory);
    const oldPid = lb.pid;
    await lb.softReload();
    expect(lb.pid).not.toBe(oldPid);
    // The old process still holds every connection; the new one starts empty, at the configured weights.
    expect(holders.open().reduce((a, b) => a + b, 0)).toBe(60);
    expect(await weightsOf(lb, servers)).toEqual([100, 100, 100]);
    const stat = await lb.showStat(BACKEND);
    expect(stat.reduce((a, r) => a + Number(r['scur'] ?? NaN), 0)).toBe(0);
    // Two clients connect just before the next cycle: the worst case for a policy that trusts its counts.
    await openClients(port, 2, holders);

    const after = await cycle(config, memory);
    expect(planOf(after)?.reload).toMatch(/fell from \d+ to \d+/);
    expect(after.problems.map((p) => [p.code, p.severity])).toContainEqual(['reload-detected', 'warning']);
    const weights = await weightsOf(lb, servers);
    // Sensible: the most loaded server gets the least weight whoever holds the two new sessions,
    // and no server is thrown to the bottom of the range.
    expect(weights[0]).toBeLessThan(weights[1] ?? 0);
    expect(weights[1]).toBeLessThan(weights[2] ?? 0);
    expect(Math.min(...weights)).toBeGreaterThan(0.2 * Math.max(...weights));
    // The next cycle does not name it again.
    const next = await cycle(config, memory);
    expect(planOf(next)?.reload).toBeNull();
  });

  it('gives a server added at run time (add server, weight 1, no metrics) a fair share, and keeps it', async () => {
    const prefix = uniquePrefix('added');
    const lb = await startHaproxy({ backends: [backendOf([{ name: 's1' }, { name: 's2' }, { name: 's3' }])] });
    started.push(lb);
    const target = await feedLoads(graphite, prefix, { s1: 1500, s2: 1000, s3: 500 });
    const config = configFor(lb, target);
    const memory = createControlMemory();
    await cycle(config, memory);
    await cycle(config, memory);
    // HAProxy 2.6 creates a dynamic server in MAINT at weight 1; the operator enables it.
    expect(await lb.runtime(`add server ${BACKEND}/s4 127.0.0.1:9`)).toContain('New server registered');
    expect((await lb.runtime(`enable server ${BACKEND}/s4`)).trim()).toBe('');
    expect((await lb.getWeight(BACKEND, 's4')).current).toBe(1);

    const added = await cycle(config, memory);
    expect(ruleOf(added, 's4')).toBe('new-server');
    const weights = await weightsOf(lb, ['s1', 's2', 's3', 's4']);
    const others = ((weights[0] ?? 0) + (weights[1] ?? 0) + (weights[2] ?? 0)) / 3;
    expect((weights[3] ?? 0) / others).toBeGreaterThan(0.9);
    expect((weights[3] ?? 0) / others).toBeLessThan(1.1);
    // Still without metrics a cycle later: still new, still an average server's share.
    const later = await cycle(config, memory);
    expect(ruleOf(later, 's4')).toBe('new-server');
    const again = await weightsOf(lb, ['s1', 's2', 's3', 's4']);
    const share = (w: readonly number[]) => (w[3] ?? 0) / w.reduce((a, b) => a + b, 0);
    expect(Math.abs(share(again) - share(weights))).toBeLessThan(0.01);
  });

  it('under roundrobin tilts the shares of new connections away from the loaded server, and real HAProxy sends it fewer', async () => {
    const prefix = uniquePrefix('roundrobin');
    const holders = await startHolders(3);
    const servers = holders.ports.map((port, i) => ({ name: `s${i + 1}`, address: `127.0.0.1:${port}` }));
    const lb = await startHaproxy({ backends: [{ name: BACKEND, balance: 'roundrobin', servers, frontend: true }] });
    started.push(lb);
    const port = lb.frontendPorts[BACKEND];
    if (port === undefined) throw new Error('no frontend port');
    const target = await feedLoads(graphite, prefix, { s1: 3000, s2: 1000, s3: 1000 });
    const config = configFor(lb, target);
    const memory = createControlMemory();

    const first = await cycle(config, memory);
    expect(ruleOf(first, 's1')).toBe('deficit');
    const weights = await weightsOf(lb, ['s1', 's2', 's3']);
    expect(weights[0]).toBeLessThan(weights[1] ?? 0);
    expect(weights[1]).toBe(weights[2]);
    // A share, not a count run to the bounds: the loaded server keeps most of an even share.
    expect((weights[0] ?? 0) / (weights[1] ?? Infinity)).toBeGreaterThan(0.5);

    // What the weights are for: HAProxy's weighted roundrobin places the next connections by them.
    await openClients(port, 90, holders);
    const placed = holders.open();
    expect(placed.reduce((a, b) => a + b, 0)).toBe(90);
    expect(placed[0]).toBeLessThan(placed[1] ?? 0);
    expect(placed[0]).toBeLessThan(placed[2] ?? 0);
    const expected = ((weights[0] ?? 0) / weights.reduce((a, b) => a + b, 0)) * 90;
    expect(Math.abs((placed[0] ?? 0) - expected)).toBeLessThanOrEqual(2);

    // Same loads a cycle later: the order of the weights holds (no reversal).
    await cycle(config, memory);
    const later = await weightsOf(lb, ['s1', 's2', 's3']);
    expect(later[0]).toBeLessThan(later[1] ?? 0);
    expect(later[1]).toBe(later[2]);
  });

  it('leaves a MAINT and a DRAIN server out of the imbalance: two in-service servers at 50/50 report 1.00', async () => {
    const prefix = uniquePrefix('maint');
    const lb = await startHaproxy({ backends: [backendOf([{ name: 'a' }, { name: 'b' }, { name: 'm', state: 'maint' }, { name: 'd', state: 'drain' }])] });
    started.push(lb);
    const target = await feedLoads(graphite, prefix, { a: 500, b: 500, m: 0, d: 0 });
    const report = await cycle(configFor(lb, target), createControlMemory());
    expect(report.backends[0]?.imbalance).toBe(1);
    expect(planOf(report)?.imbalance).toBe(1);
    expect(planOf(report)?.actions.filter((a) => a.rule === 'guard').map((a) => a.server)).toEqual(['m', 'd']);
  });
});
