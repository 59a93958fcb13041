/**
 * The pieces of the real lab (research/lab-real), each against the real services: sinks that report
 * what they receive to the real carbon, the traffic generator through a real HAProxy, and the
 * real CLI weighter reading Graphite on the lab clock through the lab's proxy. Short runs (a few
 * seconds of wall clock at 20x) with exact assertions on counts, never on durations.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { uniquePrefix, type GraphiteClient, type GraphiteSeries } from '../harness/graphite.js';
import { startHaproxy } from '../harness/haproxy.js';
import { REPO_ROOT } from '../harness/paths.js';
import { waitFor } from '../harness/processes.js';
import { sharedGraphite } from '../harness/shared-graphite.js';
import { alignedClockStart, createLabClock, labTimeSpec } from '../../research/lab-real/clock.js';
import { createGenerator, owedLines, type Schedule } from '../../research/lab-real/generator.js';
import { rewriteRenderUrl, startGraphiteProxy, wallClockTimestamps } from '../../research/lab-real/graphite-proxy.js';
import { startSinks } from '../../research/lab-real/sinks.js';
import { loadExampleSettings, startWeighter, weighterConfig } from '../../research/lab-real/weighter.js';

const SPEEDUP = 20;
const BUCKET = 10;
const LINES_PER_POINT = 0.1;

let graphite: GraphiteClient;
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  graphite = await sharedGraphite();
});

afterEach(async () => {
  for (const stop of cleanups.splice(0).reverse()) await stop().catch(() => undefined);
});

function onCleanup(stop: () => Promise<unknown>): void {
  cleanups.push(stop);
}

const sum = (values: readonly number[]): number => values.reduce((a, b) => a + b, 0);

/** Connections that stay for the whole test, with the given rates (points per lab second). */
function steady(rates: readonly number[]): Schedule {
  return { initial: rates.map((rate, i) => ({ arrival: -1 - i, rate, end: 1e6 })), arrivals: [] };
}

describe('real lab pieces', () => {
  it('delivers every point to a sink through HAProxy, and Graphite renders the rate each sink reported', async () => {
    const prefix = uniquePrefix('lab_real_sinks');
    const names = ['s01', 's02', 's03'];
    const rates = [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 1100, 1200];
    const clock = createLabClock({ speedup: SPEEDUP, horizonSeconds: 200 });
    const sinks = await startSinks({ names, clock, bucketSeconds: BUCKET, linesPerPoint: LINES_PER_POINT, carbon: { url: graphite.url, carbonPort: graphite.carbonPort, prefix } });
    onCleanup(() => sinks.stop());
    const haproxy = await startHaproxy({
      backends: [{ name: 'be_ingest', balance: 'leastconn', frontend: true, servers: names.map((name, i) => ({ name, address: `127.0.0.1:${sinks.ports[i] ?? 0}` })) }],
    });
    onCleanup(() => haproxy.stop());
    const port = haproxy.frontendPorts['be_ingest'] ?? 0;
    const generator = createGenerator({
      targets: [{ name: 'lab', port, placed: (count) => sinks.whenAccepted(count) }],
      schedule: steady(rates),
      clock,
      bucketSeconds: BUCKET,
      linesPerPoint: LINES_PER_POINT,
    });
    onCleanup(async () => generator.stop());

    await generator.openInitial();
    await waitFor('every connection at a sink', async () => (sum(sinks.sessions()) === rates.length ? true : undefined), { timeoutMs: 10_000 });
    // leastconn with equal weights spreads the connections evenly.
    expect(sinks.sessions()).toEqual([4, 4, 4]);

    const buckets = 6;
    clock.start();
    sinks.startReporting(buckets);
    await generator.run(buckets * BUCKET, new AbortController().signal);
    const last = names.map((name) => `${prefix}.${name}.points_received`);
    const complete = (series: GraphiteSeries[]): boolean =>
      last.every((target) => series.find((s) => s.target === target)?.datapoints.filter(([v, t]) => v !== null && t >= clock.labEpoch && t < clock.epochAt(buckets * BUCKET)).length === buckets);
    const window = { from: clock.labEpoch - 1, until: clock.epochAt(buckets * BUCKET) - 1 };
    const rendered = await graphite.waitForSeries(`${prefix}.*.points_received`, complete, 20_000, window);

    for (let b = 0; b < buckets; b++) {
      // Each connection owes rate x 10 s x 0.1 lines per bucket: whole numbers here, so exact.
      expect(sum(sinks.loads(b))).toBeCloseTo(sum(rates), 6);
      names.forEach((name, s) => {
        const point = rendered.find((x) => x.target === `${prefix}.${name}.points_received`)?.datapoints.find(([, t]) => t === clock.epochAt(b * BUCKET));
        expect(point?.[0]).toBeCloseTo(sinks.loads(b)[s] ?? NaN, 3);
      });
    }
    expect(generator.stats().linesDropped).toBe(0);

    // The weighter's relative window goes through the proxy onto the lab clock: the last ten
    // minutes of lab time hold every bucket, the last ten minutes of wall clock none of them.
    const proxy = await startGraphiteProxy(graphite.url, clock);
    onCleanup(() => proxy.stop());
    const valuesVia = async (base: string): Promise<(number | null)[]> => {
      const url = new URL('/render', base);
      url.searchParams.set('target', `${prefix}.s01.points_received`);
      url.searchParams.set('from', '-10min');
      url.searchParams.set('format', 'json');
      const body: unknown = await (await fetch(url)).json();
      if (!Array.isArray(body)) throw new Error(`unexpected render reply ${JSON.stringify(body)}`);
      return body.flatMap((series: { datapoints?: [number | null, number][] }) => (series.datapoints ?? []).map(([v]) => v));
    };
    const viaProxy = (await valuesVia(proxy.url)).filter((v) => v !== null);
    expect(viaProxy).toEqual(Array.from({ length: buckets }, (_, b) => sinks.loads(b)[0]));
    expect((await valuesVia(graphite.url)).filter((v) => v !== null)).toEqual([]);
  });

  it('opens each scheduled connection at its arrival and closes it at its end', async () => {
    const clock = createLabClock({ speedup: SPEEDUP, horizonSeconds: 200 });
    const sinks = await startSinks({ names: ['s01'], clock, bucketSeconds: BUCKET, linesPerPoint: LINES_PER_POINT });
    onCleanup(() => sinks.stop());
    const schedule: Schedule = {
      initial: [
        { arrival: -5, rate: 100, end: 1e6 },
        { arrival: -4, rate: 200, end: 25 },
        { arrival: -3, rate: 300, end: 25 },
      ],
      arrivals: [
        { arrival: 12, rate: 1000, end: 1e6 },
        { arrival: 13, rate: 2000, end: 1e6 },
      ],
    };
    const generator = createGenerator({ targets: [{ name: 'sink', port: sinks.ports[0] ?? 0 }], schedule, clock, bucketSeconds: BUCKET, linesPerPoint: LINES_PER_POINT });
    onCleanup(async () => generator.stop());
    await generator.openInitial();
    await waitFor('the initial population at the sink', async () => (sinks.sessions()[0] === 3 ? true : undefined), { timeoutMs: 10_000 });
    clock.start();
    await generator.run(50, new AbortController().signal);
    await waitFor('departures seen by the sink', async () => (sinks.sessions()[0] === 3 ? true : undefined), { timeoutMs: 10_000 });

    expect(generator.open()).toEqual([3]);
    expect(sinks.accepted()).toEqual([5]);
    // Bucket [0, 10): the three initial clients; [10, 20): plus 1000 for 8 s and 2000 for 7 s;
    // [20, 30): two clients leave at 25; [40, 50): the three that stay.
    expect(sinks.loads(0)[0]).toBeCloseTo(600, 6);
    expect(sinks.loads(1)[0]).toBeCloseTo(600 + 800 + 1400, 6);
    expect(sinks.loads(2)[0]).toBeCloseTo(3100 + 250, 6);
    expect(sinks.loads(4)[0]).toBeCloseTo(3100, 6);
  });

  it('starts two HAProxy stacks from the same placement when each connection waits to be placed', async () => {
    const names = ['s01', 's02', 's03'];
    const clock = createLabClock({ speedup: SPEEDUP, horizonSeconds: 200 });
    const stacks = await Promise.all(
      [0, 1].map(async () => {
        const sinks = await startSinks({ names, clock, bucketSeconds: BUCKET, linesPerPoint: LINES_PER_POINT });
        onCleanup(() => sinks.stop());
        const haproxy = await startHaproxy({
          backends: [{ name: 'be_ingest', balance: 'leastconn', frontend: true, servers: names.map((name, i) => ({ name, address: `127.0.0.1:${sinks.ports[i] ?? 0}` })) }],
        });
        onCleanup(() => haproxy.stop());
        return { sinks, port: haproxy.frontendPorts['be_ingest'] ?? 0 };
      }),
    );
    // Distinct rates: equal per-server sums mean the same connections on the same servers.
    const rates = Array.from({ length: 600 }, (_, i) => i + 1);
    const generator = createGenerator({
      targets: stacks.map((s, i) => ({ name: `stack${i}`, port: s.port, placed: (count: number) => s.sinks.whenAccepted(count) })),
      schedule: steady(rates),
      clock,
      bucketSeconds: BUCKET,
      linesPerPoint: LINES_PER_POINT,
    });
    onCleanup(async () => generator.stop());
    await generator.openInitial();
    clock.start();
    await generator.run(2 * BUCKET, new AbortController().signal);

    // Lines per server over every bucket, once all that was written has arrived: which bucket a
    // line lands in depends on how fast this machine keeps up, where it lands does not.
    const totals = (sinks: (typeof stacks)[number]['sinks']): number[] =>
      Array.from({ length: 100 }, (_, b) => sinks.loads(b)).reduce((acc, row) => acc.map((v, i) => v + (row[i] ?? 0)), names.map(() => 0));
    const { linesWritten, linesDropped } = generator.stats();
    expect(linesDropped).toBe(0);
    expect(linesWritten).toBeGreaterThan(0);
    const [first, second] = await waitFor(
      'every line written at its sink',
      async () => {
        const seen = stacks.map((s) => totals(s.sinks).map((load) => load * BUCKET * LINES_PER_POINT));
        return seen.every((t) => Math.round(sum(t)) === linesWritten / 2) ? seen : undefined;
      },
      { timeoutMs: 30_000 },
    );
    expect(first?.every((lines) => lines > 0)).toBe(true);
    expect(second).toEqual(first);
  });

  it('runs the real CLI weighter on the lab clock, which takes weight away from the busiest server', async () => {
    const prefix = uniquePrefix('lab_real_weighter');
    const names = ['s01', 's02', 's03'];
    const clock = createLabClock({ speedup: SPEEDUP, horizonSeconds: 400 });
    const sinks = await startSinks({ names, clock, bucketSeconds: BUCKET, linesPerPoint: LINES_PER_POINT, carbon: { url: graphite.url, carbonPort: graphite.carbonPort, prefix } });
    onCleanup(() => sinks.stop());
    const haproxy = await startHaproxy({
      backends: [{ name: 'be_ingest', balance: 'leastconn', frontend: true, servers: names.map((name, i) => ({ name, address: `127.0.0.1:${sinks.ports[i] ?? 0}` })) }],
    });
    onCleanup(() => haproxy.stop());
    const proxy = await startGraphiteProxy(graphite.url, clock);
    onCleanup(() => proxy.stop());
    const dir = mkdtempSync(join(tmpdir(), 'hw-lab-real-test-'));
    onCleanup(async () => rmSync(dir, { recursive: true, force: true }));
    const example = loadExampleSettings(join(REPO_ROOT, 'infra', 'example-config.yaml'));
    const weighter = startWeighter({
      repoRoot: REPO_ROOT,
      configPath: join(dir, 'weighter.json'),
      config: weighterConfig({ graphiteUrl: proxy.url, adminSocket: haproxy.adminSocket, backendName: 'be_ingest', prefix, example }),
      backendName: 'be_ingest',
      intervalWallSeconds: example.intervalSeconds / SPEEDUP,
    });
    onCleanup(() => weighter.stop());
    // One heavy client and five light ones: whichever server gets the heavy one is the busiest.
    const generator = createGenerator({
      targets: [{ name: 'lab', port: haproxy.frontendPorts['be_ingest'] ?? 0 }],
      schedule: steady([3000, 100, 100, 100, 100, 100]),
      clock,
      bucketSeconds: BUCKET,
      linesPerPoint: LINES_PER_POINT,
    });
    onCleanup(async () => generator.stop());
    await generator.openInitial();
    await waitFor('every connection at a sink', async () => (sum(sinks.sessions()) === 6 ? true : undefined), { timeoutMs: 10_000 });
    await waitFor('the weighter cycling', async () => (weighter.cycles().length > 0 ? true : undefined), { timeoutMs: 30_000 });

    const start = alignedClockStart(weighter.cycles()[0]?.startedMs ?? Date.now(), (example.intervalSeconds / SPEEDUP) * 1000, 5, SPEEDUP, Date.now() + 100);
    await new Promise((r) => setTimeout(r, Math.max(0, start - Date.now())));
    clock.start(start);
    sinks.startReporting(40);
    const abort = new AbortController();
    const running = generator.run(400, abort.signal);
    onCleanup(async () => {
      abort.abort();
      await running;
    });
    const planned = await waitFor('a weighter cycle that planned from lab data', async () => weighter.cycles().find((c) => c.startedMs > start && c.plan === 'planned' && c.serversChanged > 0), {
      timeoutMs: 30_000,
    });
    const busiest = names[sinks.loads(2).indexOf(Math.max(...sinks.loads(2)))] ?? '';
    const weights = await Promise.all(names.map((name) => haproxy.getWeight('be_ingest', name)));
    const lowest = names[weights.findIndex((w) => w.current === Math.min(...weights.map((x) => x.current)))];
    expect(planned.imbalance).toBeGreaterThan(1.5);
    expect(lowest).toBe(busiest);
  });
});

describe('real lab clock and proxy arithmetic', () => {
  it.each([
    ['-60s', 1_000_000_000 - 60],
    ['-5min', 1_000_000_000 - 300],
    ['-1h', 1_000_000_000 - 3600],
    ['now', 1_000_000_000],
    ['1700000000', 1_700_000_000],
    ['yesterday', null],
  ])('puts the Graphite time %s on the lab clock as %s', (spec, expected) => {
    expect(labTimeSpec(spec, 1_000_000_000.7)).toBe(expected);
  });

  it('rewrites only the window of a render request', () => {
    const url = rewriteRenderUrl('http://127.0.0.1:1', '/render?target=a.*&from=-60s&format=json', 1_000_000_000);
    expect(url.searchParams.get('from')).toBe('999999940');
    expect(url.searchParams.get('until')).toBe('1000000000');
    expect(url.searchParams.get('target')).toBe('a.*');
  });

  it('moves the timestamps of a render reply onto the wall clock, and leaves other bodies alone', () => {
    // Lab epoch 1,000,000,000 is wall second 1,700,000,000; 20x: 10 lab s are 0.5 wall s.
    const toWall = (epoch: number) => 1_700_000_000 + (epoch - 1_000_000_000) / 20;
    const body = JSON.stringify([{ target: 's1', datapoints: [[5, 1_000_000_000], [null, 1_000_000_010]] }]);
    expect(JSON.parse(wallClockTimestamps(body, toWall))).toEqual([{ target: 's1', datapoints: [[5, 1_700_000_000], [null, 1_700_000_000.5]] }]);
    expect(wallClockTimestamps('not json', toWall)).toBe('not json');
    expect(wallClockTimestamps('{"a":1}', toWall)).toBe('{"a":1}');
  });

  it.each([
    // rate, seconds, lines per point, carry in -> lines, carry out
    [100, 10, 0.1, 0, 100, 0],
    [5, 10, 0.1, 0, 5, 0],
    [3, 1, 0.1, 0, 0, 0.3],
    [3, 1, 0.1, 0.8, 1, 0.1],
  ])('owes %s points/s for %s s at %s lines per point (carry %s) as %s lines, carry %s', (rate, seconds, lpp, carry, lines, rest) => {
    const owed = owedLines(rate, seconds, lpp, carry);
    expect(owed.lines).toBe(lines);
    expect(owed.carry).toBeCloseTo(rest, 9);
  });

  it.each([
    // first cycle, interval, lead (lab s), speedup, earliest -> clock start
    [10_000, 3_000, 5, 20, 10_000, 10_250],
    [10_000, 3_000, 5, 20, 10_300, 13_250],
    [10_000, 3_000, 0, 20, 16_000, 16_000],
  ])('starts the clock so that cycles at %s + n x %s ms run %s lab s before the minute (%sx, not before %s): %s', (first, interval, lead, speedup, earliest, expected) => {
    expect(alignedClockStart(first, interval, lead, speedup, earliest)).toBe(expected);
  });
});
