import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bucketOf, GRAPHITE_RESOLUTION_SECONDS, startGraphite, uniquePrefix, valueAt, writeAndWait, type GraphiteClient, type GraphiteSeries } from '../harness/graphite.js';
import { parseGetWeight, startHaproxy, startHaproxyFleet, stopAll, type BackendSpec, type HaproxyHandle } from '../harness/haproxy.js';
import { isProcessRunning } from '../harness/processes.js';
import { sharedGraphite } from '../harness/shared-graphite.js';

const APP: BackendSpec = {
  name: 'app',
  balance: 'leastconn',
  servers: [{ name: 's1' }, { name: 's2', weight: 50 }, { name: 's3', weight: 10 }],
};

const OPS: BackendSpec = {
  name: 'ops',
  balance: 'roundrobin',
  servers: [
    { name: 'ready1', weight: 30 },
    { name: 'maint1', state: 'maint' },
    { name: 'drain1', state: 'drain' },
    { name: 'zero1', weight: 0 },
  ],
};

describe('HAProxy harness', () => {
  let haproxy: HaproxyHandle;

  beforeAll(async () => {
    haproxy = await startHaproxy({ backends: [APP, OPS], tcpRuntime: true });
  });

  afterAll(async () => {
    await haproxy.stop();
  });

  it.each([
    ['s1', 100],
    ['s2', 50],
    ['s3', 10],
    ['zero1', 0],
  ])('answers get weight for %s with its configured weight %i', async (server, weight) => {
    const backend = server === 'zero1' ? 'ops' : 'app';
    expect(await haproxy.getWeight(backend, server)).toEqual({ current: weight, initial: weight });
  });

  it.each([
    ['maint1', 'MAINT'],
    ['drain1', 'DRAIN'],
    ['ready1', 'no check'],
  ])('shows %s with status %s in show stat', async (server, status) => {
    const rows = await haproxy.showStat('ops');
    expect(rows.find((row) => row['svname'] === server)?.['status']).toBe(status);
  });

  it('refuses set server weight through the operator socket with Permission denied and keeps the weight', async () => {
    const reply = await haproxy.runtime('set server app/s2 weight 7', 'operator');
    expect(reply.trim()).toBe('Permission denied');
    expect(await haproxy.getWeight('app', 's2')).toEqual({ current: 50, initial: 50 });
  });

  it('answers the runtime API at level admin on its TCP endpoint', async () => {
    expect(haproxy.tcpEndpoint).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(parseGetWeight(await haproxy.runtime('get weight app/s3', 'tcp'))).toEqual({ current: 10, initial: 10 });
  });

  it('rejects a reply to get weight that is not exactly "<current> (initial <configured>)"', async () => {
    const reply = await haproxy.runtime('get weight app/nosuch');
    expect(reply.trim()).toBe('No such server.');
    expect(() => parseGetWeight(reply)).toThrow(/unexpected reply to get weight/);
  });
});

describe('HAProxy harness lifecycle', () => {
  it('resets a changed weight to its configured value on reload() and drains DRAIN servers again', async () => {
    const haproxy = await startHaproxy({ backends: [APP, OPS] });
    try {
      const pidBefore = haproxy.pid;
      expect(await haproxy.runtime('set server app/s1 weight 7')).toBe('\n');
      expect(await haproxy.getWeight('app', 's1')).toEqual({ current: 7, initial: 100 });

      await haproxy.reload();

      expect(haproxy.pid).not.toBe(pidBefore);
      expect(isProcessRunning(pidBefore)).toBe(false);
      expect(await haproxy.getWeight('app', 's1')).toEqual({ current: 100, initial: 100 });
      const rows = await haproxy.showStat('ops');
      expect(rows.find((row) => row['svname'] === 'drain1')?.['status']).toBe('DRAIN');
    } finally {
      await haproxy.stop();
    }
  });

  it('reloads with a new configuration when given new backends', async () => {
    const haproxy = await startHaproxy({ backends: [APP] });
    try {
      await haproxy.reload({ backends: [{ ...APP, servers: APP.servers.filter((s) => s.name !== 's3') }] });
      expect((await haproxy.runtime('get weight app/s3')).trim()).toBe('No such server.');
      expect(await haproxy.getWeight('app', 's2')).toEqual({ current: 50, initial: 50 });
    } finally {
      await haproxy.stop();
    }
  });

  it('leaves no HAProxy process and no temp directory behind after stop()', async () => {
    const haproxy = await startHaproxy({ backends: [APP], tcpRuntime: true });
    const { pid, dir, adminSocket } = haproxy;
    expect(isProcessRunning(pid)).toBe(true);

    await haproxy.stop();

    expect(isProcessRunning(pid)).toBe(false);
    expect(existsSync(dir)).toBe(false);
    await expect(haproxy.runtime('show info')).rejects.toThrow(/No such file or directory/);
    expect(existsSync(adminSocket)).toBe(false);
  });

  it('fails the start with the alert HAProxy printed and removes its temp directory when HAProxy rejects the configuration', async () => {
    const start = startHaproxy({ backends: [{ name: 'bad', balance: 'roundrobin', servers: [{ name: 's1', address: 'nosuchhost.invalid:80' }] }] });
    const error: unknown = await start.then(
      async (unexpected) => unexpected.stop(),
      (reason: unknown) => reason,
    );
    expect(error).toBeInstanceOf(Error);
    const message = error instanceof Error ? error.message : '';
    expect(message).toMatch(/could not resolve address 'nosuchhost\.invalid'/);
    const dir = /(\/\S*hw-haproxy-[^/\s]+)\//.exec(message)?.[1];
    expect(dir).toBeDefined();
    expect(existsSync(dir ?? '')).toBe(false);
  });

  it('starts a fleet of separate load balancers with the same configuration', async () => {
    const fleet = await startHaproxyFleet(3, { backends: [APP] });
    try {
      expect(new Set(fleet.map((h) => h.pid)).size).toBe(3);
      expect(new Set(fleet.map((h) => h.adminSocket)).size).toBe(3);
      const [first, ...others] = fleet;
      if (first === undefined) throw new Error('empty fleet');
      await first.runtime('set server app/s2 weight 9');
      expect(await first.getWeight('app', 's2')).toEqual({ current: 9, initial: 50 });
      for (const other of others) expect(await other.getWeight('app', 's2')).toEqual({ current: 50, initial: 50 });
    } finally {
      await stopAll(fleet);
    }
    for (const handle of fleet) expect(existsSync(handle.dir)).toBe(false);
  });
});

function seriesNamed(series: readonly GraphiteSeries[], target: string): GraphiteSeries {
  const found = series.find((s) => s.target === target);
  if (found === undefined) throw new Error(`no series ${target} in ${series.map((s) => s.target).join(', ')}`);
  return found;
}

describe('Graphite harness', () => {
  let graphite: GraphiteClient;

  beforeAll(async () => {
    graphite = await sharedGraphite();
  });

  it('returns points written to carbon from /render as JSON with their values at 10 s resolution', async () => {
    const prefix = uniquePrefix('harness-render');
    const start = bucketOf(Math.floor(Date.now() / 1000)) - 3 * GRAPHITE_RESOLUTION_SECONDS;
    const points = [
      { path: `${prefix}.s1.rate`, value: 1.5, timestamp: start },
      { path: `${prefix}.s1.rate`, value: 2.5, timestamp: start + 10 },
      { path: `${prefix}.s1.rate`, value: 4, timestamp: start + 20 },
      { path: `${prefix}.s2.rate`, value: 700, timestamp: start + 10 },
    ];

    const series = await writeAndWait(graphite, points, `${prefix}.*.rate`);

    expect(series.map((s) => s.target).sort()).toEqual([`${prefix}.s1.rate`, `${prefix}.s2.rate`]);
    const s1 = seriesNamed(series, `${prefix}.s1.rate`);
    const s2 = seriesNamed(series, `${prefix}.s2.rate`);
    expect([start, start + 10, start + 20].map((t) => valueAt(s1, t))).toEqual([1.5, 2.5, 4]);
    expect([start, start + 10, start + 20].map((t) => valueAt(s2, t))).toEqual([null, 700, null]);
    const steps = s1.datapoints.slice(1).map(([, t], i) => t - (s1.datapoints[i]?.[1] ?? Number.NaN));
    expect(new Set(steps)).toEqual(new Set([GRAPHITE_RESOLUTION_SECONDS]));
  });

  it('keeps the series of a metric path apart from the same path under another prefix', async () => {
    const mine = uniquePrefix('harness-isolation');
    const theirs = uniquePrefix('harness-isolation');
    await writeAndWait(graphite, [{ path: `${theirs}.s1.rate`, value: 3 }]);
    const series = await writeAndWait(graphite, [{ path: `${mine}.s1.rate`, value: 8 }], `${mine}.*.rate`);
    expect(series.map((s) => s.target)).toEqual([`${mine}.s1.rate`]);
  });
});

describe('Graphite harness lifecycle', () => {
  it('leaves no carbon-cache or graphite-web process and no temp directory behind after stop()', async () => {
    const graphite = await startGraphite();
    const { carbonPid, webPid, dir } = graphite;
    try {
      expect(isProcessRunning(carbonPid)).toBe(true);
      expect(isProcessRunning(webPid)).toBe(true);
      const path = `${uniquePrefix('harness-private')}.value`;
      const series = await writeAndWait(graphite, [{ path, value: 42 }]);
      expect(series.map((s) => s.datapoints.some(([v]) => v === 42))).toEqual([true]);
    } finally {
      await graphite.stop();
    }
    expect(isProcessRunning(carbonPid)).toBe(false);
    expect(isProcessRunning(webPid)).toBe(false);
    expect(existsSync(dir)).toBe(false);
  });
});
