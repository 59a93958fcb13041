import { predictionScenario } from '../lab/predict.js';
import { setupWithOverrides, type LabSetup, type Scenario, type ScenarioEvent } from '../lab/setup.js';
import type { Policy, WeightingSpec } from '../lab/simulator.js';
import { windowSecondsOf, type ExampleSettings } from './weighter.js';

/**
 * The real lab's setup, in lab seconds (see clock.ts), and the same setup as the simulator sees it.
 *
 * Sizing, for 2 shared cores: 6 servers holding ~300 connections each (so that one 5,000 points/s
 * client is about half a server's load, as in the simulator's default), rates bounded Pareto
 * 5..5,000 points/s with α = 1, lifetimes of 15 minutes on average (half the simulator's default,
 * so that the population turns over within the run), the weighter every minute reading the last
 * minute, as in the example config. Time runs 20x faster than the wall clock: a 10 s Graphite
 * bucket lasts 0.5 s, the weighter runs every 3 s, an hour of lab time takes 3 minutes. One real
 * line stands for 10 points: ~250,000 lines/s in all for the two stacks.
 */
export interface RealLabSettings {
  readonly seed: number;
  readonly servers: number;
  readonly connectionsPerServer: number;
  readonly meanLifetimeSeconds: number;
  readonly rate: { readonly min: number; readonly max: number; readonly alpha: number };
  readonly speedup: number;
  readonly linesPerPoint: number;
  readonly bucketSeconds: number;
  /** Before the measured window: the weighter already runs, the figures do not count yet. */
  readonly warmupSeconds: number;
  readonly measureSeconds: number;
  /**
   * Lab second of a soft reload of both stacks' HAProxy (`haproxy -sf`): the old process keeps its
   * connections, the new one takes every new connection. Null: none.
   */
  readonly reloadAt: number | null;
  /**
   * A server added to both stacks at run time (`add server` + `enable server`, weight 1), its
   * metrics reaching Graphite `metricsAfterSeconds` later. Null: none.
   */
  readonly addServer: { readonly at: number; readonly metricsAfterSeconds: number } | null;
}

export const FULL_LAB: RealLabSettings = {
  seed: 1,
  servers: 6,
  connectionsPerServer: 300,
  meanLifetimeSeconds: 900,
  rate: { min: 5, max: 5000, alpha: 1 },
  speedup: 20,
  linesPerPoint: 0.1,
  bucketSeconds: 10,
  warmupSeconds: 600,
  measureSeconds: 3000,
  // 2 lab seconds before the cycle the weighter runs about 8 lab seconds before each lab minute:
  // the new process then holds a couple of sessions, the worst case for a policy that trusts them.
  reloadAt: 1490,
  addServer: { at: 2400, metricsAfterSeconds: 300 },
};

/** The README's quick demo: the same lab, 50 s of wall clock, without the events. */
export const QUICK_LAB: RealLabSettings = { ...FULL_LAB, warmupSeconds: 200, measureSeconds: 800, reloadAt: null, addServer: null };

/** Servers in the pool at the end: the configured ones, and the one added during the run. */
export function poolSize(settings: RealLabSettings): number {
  return settings.servers + (settings.addServer === null ? 0 : 1);
}

export function durationOf(settings: RealLabSettings): number {
  return settings.warmupSeconds + settings.measureSeconds;
}

/**
 * The simulator's setup for the real lab. `delaySeconds` is the measured delay between the end of
 * a bucket and its point reaching carbon, in lab seconds.
 */
export function simSetupFor(settings: RealLabSettings, example: ExampleSettings, delaySeconds: number): LabSetup {
  return setupWithOverrides(
    {
      servers: poolSize(settings),
      loadBalancers: 1,
      arrivalsPerSecond: (settings.servers * settings.connectionsPerServer) / settings.meanLifetimeSeconds,
      rate: settings.rate,
      meanLifetimeSeconds: settings.meanLifetimeSeconds,
      initialWeight: 100,
      weighterIntervalSeconds: example.intervalSeconds,
      metrics: {
        resolutionSeconds: settings.bucketSeconds,
        delaySeconds: Math.max(0, delaySeconds),
        windowSeconds: windowSecondsOf(example.backend.from),
        aggregation: example.backend.aggregation,
        noise: 0,
      },
    },
    'the real lab',
  );
}

/** The scenario the simulator predicts the real lab with: its window, its reload and its added server. */
export function scenarioFor(settings: RealLabSettings, setup: LabSetup): Scenario {
  const steady = predictionScenario(setup, { warmupSeconds: settings.warmupSeconds, measureSeconds: settings.measureSeconds });
  const events: ScenarioEvent[] = [];
  if (settings.reloadAt !== null) events.push({ at: settings.reloadAt, kind: 'reload' });
  if (settings.addServer !== null) events.push({ at: settings.addServer.at, kind: 'add-server', server: settings.servers, metricsAfterSeconds: settings.addServer.metricsAfterSeconds });
  return { ...steady, initialServers: Array.from({ length: settings.servers }, (_, i) => i), events };
}

/** The weighting of the example config in the simulator's terms. */
function weightingOf(example: ExampleSettings): WeightingSpec {
  return { ...example.backend.weighting };
}

export function policiesFor(example: ExampleSettings): { readonly alone: Policy; readonly weighted: Policy } {
  const maxChange = example.backend.maxChangePerCycle;
  return {
    alone: { kind: 'haproxy', name: 'leastconn', algorithm: 'leastconn' },
    weighted: {
      kind: 'haproxy',
      name: `leastconn + ${example.backend.weighting.function}`,
      algorithm: 'leastconn',
      weighting: weightingOf(example),
      aggregation: example.backend.aggregation,
      ...(maxChange === undefined ? {} : { maxChangePerCycle: maxChange }),
    },
  };
}
