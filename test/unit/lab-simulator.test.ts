import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../functions/core/errors.js';
import { DEFAULT_SETUP, serverAddedScenario, serverLeavesScenario, steadyScenario, type LabSetup, type Scenario } from '../../research/lab/setup.js';
import { renderPoints, simulate, type Policy, type SimResult } from '../../research/lab/simulator.js';
import { generateTraffic, type Traffic } from '../../research/lab/traffic.js';
import { figures } from '../../research/lab/metrics.js';

/** A small pool so that a whole run takes milliseconds. */
const SMALL: LabSetup = { ...DEFAULT_SETUP, servers: 4, arrivalsPerSecond: 0.5, meanLifetimeSeconds: 600 };

const LEASTCONN: Policy = { kind: 'haproxy', name: 'leastconn', algorithm: 'leastconn' };
const ROUNDROBIN: Policy = { kind: 'haproxy', name: 'roundrobin', algorithm: 'roundrobin' };
const CLAIRVOYANT: Policy = { kind: 'clairvoyant', name: 'clairvoyant' };
const LIMITED: Policy = { kind: 'haproxy', name: 'lp', algorithm: 'leastconn', weighting: { function: 'limited-proportions' } };
const FEEDBACK: Policy = { kind: 'haproxy', name: 'fb', algorithm: 'leastconn', weighting: { function: 'feedback', gain: 0.5, deadband: 0.02 } };

function short(scenario: Scenario, seconds: number): Scenario {
  return { ...scenario, durationSeconds: seconds, measureTo: seconds };
}

function loadsAt(result: SimResult, sample: number): number[] {
  const n = result.servers.length;
  return Array.from(result.loads.subarray(sample * n, (sample + 1) * n));
}

/** p95 imbalance of a whole run (the figure's own computation). */
function percentileOf(result: SimResult): number {
  return figures(result, 0, Infinity).p95;
}

function totals(result: SimResult): number[] {
  return Array.from(result.sampleTimes, (_, k) => loadsAt(result, k).reduce((a, v) => a + (Number.isNaN(v) ? 0 : v), 0));
}

/** Largest relative difference between two equally long series (one assertion instead of thousands). */
function largestDifference(a: readonly number[], b: readonly number[]): number {
  expect(a).toHaveLength(b.length);
  return Math.max(...a.map((v, k) => Math.abs(v - (b[k] ?? NaN)) / Math.max(1, Math.abs(v))));
}

/** Long-lived clients with the given rates, all connected at time 0 in this order. */
function fixedTraffic(rates: readonly number[], arrivals: Traffic['arrivals'] = []): Traffic {
  return { initial: rates.map((rate, i) => ({ arrival: -rates.length + i, rate, end: 1e9, loadBalancer: 0 })), arrivals };
}

describe('simulate', () => {
  it('gives identical results for the same seed and different ones for another seed', () => {
    const scenario = short(steadyScenario(SMALL), 3600);
    const a = simulate(SMALL, scenario, FEEDBACK, 7);
    const b = simulate(SMALL, scenario, FEEDBACK, 7);
    const c = simulate(SMALL, scenario, FEEDBACK, 8);
    expect(Array.from(a.loads)).toEqual(Array.from(b.loads));
    expect(a.cycles).toEqual(b.cycles);
    expect(a.writes).toBe(b.writes);
    expect(a.writes).toBeGreaterThan(0);
    expect(Array.from(c.loads)).not.toEqual(Array.from(a.loads));
  });

  it('replays the same clients for every policy: only where they land differs', () => {
    const scenario = short(steadyScenario(SMALL), 3600);
    const traffic = generateTraffic(SMALL, scenario, 3);
    const runs = [LEASTCONN, ROUNDROBIN, CLAIRVOYANT, LIMITED, FEEDBACK].map((p) => simulate(SMALL, scenario, p, 3, { traffic }));
    const reference = totals(runs[0] ?? simulate(SMALL, scenario, LEASTCONN, 3, { traffic }));
    for (const run of runs) expect(largestDifference(totals(run), reference)).toBeLessThan(1e-9);
    // ...and the placement does differ between leastconn and the clairvoyant bound.
    expect(Array.from(runs[2]?.loads ?? [])).not.toEqual(Array.from(runs[0]?.loads ?? []));
  });

  it('sends each client of the clairvoyant bound to the least loaded server', () => {
    const setup: LabSetup = { ...SMALL, servers: 3 };
    const scenario = short(steadyScenario(setup), 60);
    // 100 → s1, 50 → s2, 10 → s3, 5 → s3 (10 is least), 80 → s3 (15 is least)
    const result = simulate(setup, scenario, CLAIRVOYANT, 1, { traffic: fixedTraffic([100, 50, 10, 5, 80]) });
    expect(loadsAt(result, 0)).toEqual([100, 50, 95]);
  });

  it('places the same clients by connection count under leastconn, blind to their rates', () => {
    const setup: LabSetup = { ...SMALL, servers: 3 };
    const scenario = short(steadyScenario(setup), 60);
    // one each (idle servers first), then the two whose key 2 is oldest: s1, s2
    const result = simulate(setup, scenario, LEASTCONN, 1, { traffic: fixedTraffic([100, 50, 10, 5, 80]) });
    expect(loadsAt(result, 0)).toEqual([105, 130, 10]);
  });

  it.each([{ delay: 0, first: 110 }, { delay: 20, first: 130 }, { delay: 40, first: 150 }])(
    'lets the weighter see a load change only $delay s after its 10 s bucket ends (first reaction at $first s)',
    ({ delay, first }) => {
      const setup: LabSetup = { ...SMALL, servers: 2, weighterIntervalSeconds: 10, metrics: { ...SMALL.metrics, resolutionSeconds: 10, delaySeconds: delay, windowSeconds: 60 } };
      const scenario: Scenario = {
        name: 'delay',
        title: 'delay',
        initialServers: [0, 1],
        durationSeconds: 200,
        measureFrom: 0,
        measureTo: 200,
        events: [{ at: 100, kind: 'shock', clients: [{ rate: 1000, lifetimeSeconds: 1e6 }] }],
      };
      const result = simulate(setup, scenario, LIMITED, 1, { traffic: fixedTraffic([100, 100]) });
      expect(result.shock?.servers).toEqual([0]);
      const changed = result.cycles.find((c) => c.weights[0]?.[0] !== 256);
      expect(changed?.time).toBe(first);
      expect(changed?.weights[0]?.[0]).toBeLessThan(changed?.weights[0]?.[1] ?? 0);
    },
  );

  it('keeps every client when a server goes down: they reconnect to the servers still up', () => {
    const leaves = serverLeavesScenario(SMALL);
    const steady = { ...steadyScenario(SMALL), durationSeconds: leaves.durationSeconds, measureTo: leaves.measureTo };
    const traffic = generateTraffic(SMALL, steady, 5);
    const withFailure = simulate(SMALL, leaves, LEASTCONN, 5, { traffic });
    const without = simulate(SMALL, steady, LEASTCONN, 5, { traffic });
    expect(largestDifference(totals(withFailure), totals(without))).toBeLessThan(1e-9);
    const down = withFailure.sampleTimes.findIndex((t) => t > 3600 && t <= 5400);
    expect(loadsAt(withFailure, down)[0]).toBeNaN();
    const back = withFailure.sampleTimes.findIndex((t) => t > 5400 + 600);
    expect(loadsAt(withFailure, back)[0]).toBeGreaterThan(0);
  });

  it('brings an added server into service: absent before, loaded after', () => {
    const scenario = serverAddedScenario(SMALL);
    const result = simulate(SMALL, scenario, FEEDBACK, 2);
    const added = SMALL.servers - 1;
    const before = result.sampleTimes.findIndex((t) => t >= 1800);
    const after = result.sampleTimes.findIndex((t) => t >= 3600 + 1800);
    expect(loadsAt(result, before)[added]).toBeNaN();
    expect(loadsAt(result, after)[added]).toBeGreaterThan(0);
    expect(result.cycles.at(-1)?.weights[0]?.[added]).toBeGreaterThanOrEqual(1);
  });

  it('validates the weighting through the real configuration schema', () => {
    const bad: Policy = { kind: 'haproxy', name: 'bad', algorithm: 'leastconn', weighting: { function: 'limited-proportions', limitingFactor: 0.5 } };
    expect(() => simulate(SMALL, short(steadyScenario(SMALL), 60), bad, 1)).toThrow(ConfigError);
  });

  it('rejects a setup it cannot simulate, naming the setting', () => {
    expect(() => simulate({ ...SMALL, servers: 0 }, short(steadyScenario(SMALL), 60), LEASTCONN, 1)).toThrow('servers');
  });
});

describe('renderPoints', () => {
  // Buckets of 10 s; at t = 60 with a 60 s window Graphite returns the buckets starting at 0..50.
  const reported = [0, 1, 2, 3, 4, 5, 6, 7];
  it.each([
    // bucket k is visible once (k + 1) · 10 + delay <= t
    { t: 60, delay: 0, window: 60, expected: [0, 1, 2, 3, 4, 5] },
    { t: 60, delay: 10, window: 60, expected: [0, 1, 2, 3, 4, null] },
    { t: 65, delay: 10, window: 60, expected: [1, 2, 3, 4, null, null] },
    { t: 70, delay: 15, window: 30, expected: [4, null, null] },
    { t: 20, delay: 0, window: 60, expected: [0, 1] },
  ])('at t=$t with delay $delay s and window $window s returns $expected', ({ t, delay, window, expected }) => {
    expect(renderPoints(reported, t, { resolutionSeconds: 10, delaySeconds: delay, windowSeconds: window })).toEqual(expected);
  });
});

describe('simulate: the fleet events of issue 11', () => {
  const DEFAULT: Policy = { kind: 'haproxy', name: 'default', weighting: { function: 'feedback' } };

  it('keeps a soft-reloaded process\'s connections where they are and starts the new one empty, at the configured weights', () => {
    const steady = short(steadyScenario(SMALL), 2400);
    const reload: Scenario = { ...steady, name: steady.name, events: [{ at: 1200, kind: 'reload' }] };
    const traffic = generateTraffic(SMALL, steady, 4);
    const without = simulate(SMALL, steady, LEASTCONN, 4, { traffic });
    const withReload = simulate(SMALL, reload, LEASTCONN, 4, { traffic });
    // Same clients, same loads in all: nobody was disconnected by the reload.
    expect(largestDifference(totals(withReload), totals(without))).toBeLessThan(1e-9);
    const weighted = simulate(SMALL, reload, DEFAULT, 4, { traffic });
    expect(weighted.reloadsSeen).toBe(1);
    // The cycle right after the reload sees the new process: its weights were reset to 256 and
    // are set again from the loads, not from its one or two sessions.
    const after = weighted.cycles.find((c) => c.time > 1200);
    expect(after?.weights[0]?.some((w) => w !== 256)).toBe(true);
  });

  it('lets a sinkhole hold connections while Graphite reads 0 from it, and leaves it out of the figures', () => {
    const scenario: Scenario = { ...short(steadyScenario(SMALL), 2400), measureFrom: 0, events: [{ at: 600, kind: 'sinkhole', server: 0 }] };
    const reported: number[] = [];
    const truth: number[] = [];
    const result = simulate(SMALL, scenario, { kind: 'haproxy', name: 'lp', weighting: { function: 'limited-proportions' } }, 3, {
      onDecision: (t, explanations, loads) => {
        if (t <= 700) return;
        reported.push(explanations.get('s01')?.load ?? NaN);
        truth.push(loads[0] ?? NaN);
      },
    });
    // Its clients still send (what it is sent is lost, not carried): out of the imbalance, like a
    // server down; the share of new connections it took is reported instead.
    expect(truth.every((v) => v > 0)).toBe(true);
    expect(loadsAt(result, 50)[0]).toBeGreaterThan(0);
    expect(loadsAt(result, 200)[0]).toBeNaN();
    expect(loadsAt(result, 200).slice(1).every((v) => v > 0)).toBe(true);
    expect(result.sinkholeShare).toBeGreaterThan(0);
    expect(reported.length).toBeGreaterThan(0);
    expect(reported.every((v) => v === 0)).toBe(true);
    expect(simulate(SMALL, short(steadyScenario(SMALL), 600), LEASTCONN, 3).sinkholeShare).toBeNull();
    // The bound knows it is broken: it sends it nothing while another server is up.
    expect(simulate(SMALL, scenario, CLAIRVOYANT, 3).sinkholeShare).toBe(0);
  });

  it('gives the bound with a refresh only the loads of the last refresh, and it balances worse than the bound that knows every rate', () => {
    // The full pool (a small one is dominated by single heavy clients, which no one can place well), two seeds.
    const scenario = short(steadyScenario(DEFAULT_SETUP), 7200);
    const traffic = [1, 2].map((seed) => generateTraffic(DEFAULT_SETUP, scenario, seed));
    const p95 = (policy: Policy): number => traffic.reduce((a, t, i) => a + percentileOf(simulate(DEFAULT_SETUP, scenario, policy, i + 1, { traffic: t })), 0) / traffic.length;
    const live = p95(CLAIRVOYANT);
    const refreshed = p95({ kind: 'clairvoyant', name: 'every 60 s', refreshSeconds: 60 });
    expect(refreshed).toBeGreaterThan(live);
    expect(refreshed).toBeLessThan(p95(LEASTCONN));
  });

  it('tells the weighter exact loads instead of Graphite\'s points when a view asks for them', () => {
    const setup: LabSetup = { ...SMALL, metrics: { ...SMALL.metrics, resolutionSeconds: 300, delaySeconds: 60 } };
    const scenario: Scenario = { ...short(steadyScenario(setup), 2400), setup };
    const seen = (view?: 'exact-now' | 'exact-at-point-end'): { load: number; truth: number }[] => {
      const out: { load: number; truth: number }[] = [];
      simulate(setup, scenario, { ...FEEDBACK, ...(view === undefined ? {} : { view }) }, 2, {
        onDecision: (t, explanations, loads) => {
          if (t > 1200) out.push({ load: explanations.get('s01')?.load ?? NaN, truth: loads[0] ?? NaN });
        },
      });
      return out;
    };
    const exact = seen('exact-now');
    expect(exact.length).toBeGreaterThan(0);
    expect(exact.every((x) => Math.abs(x.load - x.truth) <= 1e-9 * x.truth)).toBe(true);
    // Graphite's 5-minute means, a minute late, are not the load now; nor is the load at their end.
    expect(seen().some((x) => Math.abs(x.load - x.truth) > 0.01 * x.truth)).toBe(true);
    const atEnd = seen('exact-at-point-end');
    expect(atEnd.some((x) => Math.abs(x.load - x.truth) > 0.01 * x.truth)).toBe(true);
    expect(atEnd.map((x) => x.load)).not.toEqual(seen().map((x) => x.load));
  });

  it('gives Graphite no series for an added server until its metrics arrive, yet puts it in service at once', () => {
    const scenario: Scenario = { ...serverAddedScenario(SMALL), events: [{ at: 3600, kind: 'add-server', server: SMALL.servers - 1, metricsAfterSeconds: 900 }] };
    const result = simulate(SMALL, scenario, { ...DEFAULT, name: 'default' }, 2);
    const added = SMALL.servers - 1;
    const soon = result.sampleTimes.findIndex((t) => t > 3600 + 60);
    expect(loadsAt(result, soon)[added]).toBeGreaterThanOrEqual(0);
    // Its weight is never left at the bottom while it has no metrics: it gets a share of the mean.
    const cycle = result.cycles.find((c) => c.time > 3600 && c.time < 3600 + 900);
    const weights = cycle?.weights[0] ?? [];
    const mean = weights.slice(0, added).reduce((a, b) => a + b, 0) / added;
    expect((weights[added] ?? 0) / mean).toBeGreaterThan(0.5);
  });

  it('measures utilisation where capacities differ: a half-capacity server at the same load counts double', () => {
    const setup: LabSetup = { ...SMALL, servers: 2, capacities: [0.5, 1] };
    const result = simulate(setup, short(steadyScenario(setup), 60), LEASTCONN, 1, { traffic: fixedTraffic([100, 100]) });
    expect(loadsAt(result, 0)).toEqual([200, 100]);
  });

  it('draws bursts as one client opening several connections at once through one load balancer, all ending together', () => {
    const setup: LabSetup = { ...SMALL, burst: { size: 5 } };
    const traffic = generateTraffic(setup, short(steadyScenario(setup), 3600), 1);
    const byArrival = new Map<number, Traffic['arrivals'][number][]>();
    for (const c of traffic.arrivals) byArrival.set(c.arrival, [...(byArrival.get(c.arrival) ?? []), c]);
    expect([...byArrival.values()].every((group) => group.length === 5 && new Set(group.map((c) => c.end)).size === 1 && new Set(group.map((c) => c.loadBalancer)).size === 1)).toBe(true);
    // The connections keep their rate: about as many arrive as without bursts.
    const plain = generateTraffic(SMALL, short(steadyScenario(SMALL), 3600), 1);
    expect(traffic.arrivals.length / plain.arrivals.length).toBeGreaterThan(0.7);
    expect(traffic.arrivals.length / plain.arrivals.length).toBeLessThan(1.3);
  });

  it('draws lognormal rates with the bounded Pareto\'s mean, capped at its maximum', () => {
    const setup: LabSetup = { ...DEFAULT_SETUP, rate: { ...DEFAULT_SETUP.rate, lognormalSigma: 1.5 } };
    const rates = generateTraffic(setup, short(steadyScenario(setup), 3600), 1).initial.map((c) => c.rate);
    const mean = rates.reduce((a, b) => a + b, 0) / rates.length;
    expect(mean / 34.6).toBeGreaterThan(0.85);
    expect(mean / 34.6).toBeLessThan(1.15);
    expect(Math.max(...rates)).toBeLessThanOrEqual(setup.rate.max);
  });

  it('writes the same weights to every load balancer when planning fleet-wide', () => {
    const setup: LabSetup = { ...SMALL, loadBalancers: 3 };
    const result = simulate(setup, short(steadyScenario(setup), 3600), { ...DEFAULT, planning: 'fleet' }, 1);
    expect(result.cycles.every((c) => c.weights.every((row) => row.join() === c.weights[0]?.join()))).toBe(true);
    const perLb = simulate(setup, short(steadyScenario(setup), 3600), DEFAULT, 1);
    expect(perLb.cycles.some((c) => c.weights.some((row) => row.join() !== c.weights[0]?.join()))).toBe(true);
  });
});
