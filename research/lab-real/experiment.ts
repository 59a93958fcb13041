import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { imbalanceOf } from '../../functions/core/plan.js';
import { mean } from '../lab/metrics.js';
import { serverName } from '../lab/setup.js';
import type { WeightCycle } from '../lab/simulator.js';
import { generateTraffic, type Traffic } from '../lab/traffic.js';
import { connectGraphite, startGraphite, type GraphiteEndpoint, type GraphiteHandle } from '../../test/harness/graphite.js';
import { startHaproxy, type HaproxyHandle } from '../../test/harness/haproxy.js';
import { makeTempDir, removeTempDir } from '../../test/harness/processes.js';
import { alignedClockStart, createLabClock, type LabClock } from './clock.js';
import { asSimResult, runFigures, type RunFigures } from './figures.js';
import { createGenerator, type Generator, type GeneratorStats } from './generator.js';
import { startGraphiteProxy, type GraphiteProxy } from './graphite-proxy.js';
import { durationOf, poolSize, scenarioFor, simSetupFor, type RealLabSettings } from './settings.js';
import { startSinks, type Sinks } from './sinks.js';
import { loadExampleSettings, startWeighter, weighterConfig, type ExampleSettings, type Weighter, type WeighterCycle } from './weighter.js';

/**
 * One real-lab experiment: the same schedule of long-lived connections replayed at the same time
 * through two independent stacks (each its own HAProxy, leastconn over its own sinks):
 * "alone" has no weighter, "weighted" has `haproxy-weighter run` setting its weights every minute
 * of lab time. Both stacks report to one Graphite under different prefixes. Running them side by
 * side halves the wall time and gives both the same machine load at every moment.
 */

export const BACKEND = 'be_ingest';

/** Thrown when the run is aborted (Ctrl-C): everything has been stopped by the time it surfaces. */
export class LabInterrupted extends Error {
  constructor() {
    super('the real lab was interrupted');
    this.name = 'LabInterrupted';
  }
}

/**
 * The weighter's cycles start this many lab seconds before each lab minute: they then see the same
 * Graphite buckets as the simulator's weighter, which runs on the minute (see alignedClockStart).
 * The CLI's cycles drift later by a few milliseconds each (timer lateness, more on a busy
 * machine: up to 350 ms = 7 lab s over a run was seen), and they see the same buckets as long as
 * they start between 9 lab s before the minute and the report delay (~1 lab s) after it.
 */
const CYCLE_LEAD_SECONDS = 8;

export interface ExperimentOptions {
  readonly settings: RealLabSettings;
  readonly repoRoot: string;
  /** The example config whose weighting the weighter runs (infra/example-config.yaml). */
  readonly examplePath: string;
  /** A running Graphite to use (e.g. the tests' shared one); a private one is started otherwise. */
  readonly graphite?: GraphiteEndpoint;
  /** Metric prefixes; `lab` matches the example config's target. */
  readonly prefixes?: { readonly alone: string; readonly weighted: string };
  /** Lab seconds between progress lines (none when absent). */
  readonly progressEverySeconds?: number;
  readonly onProgress?: (line: string) => void;
  readonly signal: AbortSignal;
}

export interface StackRun {
  /** loads[bucket][server]: the sinks' received rate, points per lab second. */
  readonly loads: readonly (readonly number[])[];
  readonly figures: RunFigures;
}

export interface ExperimentResult {
  readonly settings: RealLabSettings;
  readonly example: ExampleSettings;
  readonly servers: readonly string[];
  readonly traffic: Traffic;
  /** What happened to both stacks during the run (soft reload, server added), in order. */
  readonly events: readonly string[];
  readonly labEpoch: number;
  /** Wall-clock milliseconds of lab second 0. */
  readonly clockStartMs: number;
  readonly alone: StackRun;
  readonly weighted: StackRun;
  /** Weights of the weighted stack as HAProxy reports them, before the run and at its end. */
  readonly weightsBefore: Readonly<Record<string, number>>;
  readonly weightsAfter: Readonly<Record<string, number>>;
  /** Connections per server at the end, per stack (HAProxy `scur`). */
  readonly sessionsAfter: { readonly alone: readonly number[]; readonly weighted: readonly number[] };
  readonly cycles: readonly WeighterCycle[];
  /** When the weighter's cycles ran relative to each multiple of the interval, in lab seconds (negative: before). */
  readonly cycleOffsets: { readonly mean: number; readonly min: number; readonly max: number };
  /** Mean delay from a bucket's end to carbon's ack, in lab seconds. */
  readonly reportDelaySeconds: number;
  /** Graphite's view checked against the sinks' counts. */
  readonly graphiteCheck: { readonly compared: number; readonly missing: number; readonly maxRelativeDifference: number };
  readonly generator: GeneratorStats;
  readonly resources: { readonly labProcessCores: number; readonly haproxyCores: number; readonly eventLoopP99Ms: number; readonly eventLoopMaxMs: number };
  readonly wallSeconds: { readonly setup: number; readonly run: number };
}

/** HAProxy's user weights of a backend's servers, by name. */
async function weightsOf(haproxy: HaproxyHandle): Promise<Record<string, number>> {
  const rows = await haproxy.showStat(BACKEND);
  return Object.fromEntries(rows.map((r) => [r['svname'] ?? '?', Number(r['uweight'] ?? r['weight'] ?? NaN)]));
}

async function sessionsOf(haproxy: HaproxyHandle, servers: readonly string[]): Promise<number[]> {
  const rows = await haproxy.showStat(BACKEND);
  return servers.map((s) => Number(rows.find((r) => r['svname'] === s)?.['scur'] ?? NaN));
}

/** CPU seconds (user + system) a process has used so far, from /proc; 0 when unreadable. */
function cpuSecondsOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime are fields 14 and 15 of stat(5); here indices 11 and 12 after the state.
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/** Mean of each server's load over buckets [from, to). */
function meanLoads(sinks: Sinks, from: number, to: number, n: number): number[] {
  const sums = new Array<number>(n).fill(0);
  for (let b = Math.max(0, from); b < to; b++) sinks.loads(b).forEach((v, s) => (sums[s] = (sums[s] ?? 0) + v));
  return sums.map((v) => v / Math.max(1, to - Math.max(0, from)));
}

function weightCycles(cycles: readonly WeighterCycle[], clock: LabClock, servers: readonly string[]): WeightCycle[] {
  const startMs = clock.wallMsAt(0);
  return cycles.map((c) => ({ time: ((c.startedMs - startMs) / 1000) * clock.speedup, weights: [servers.map((s) => c.weights[s] ?? NaN)] }));
}

export async function runExperiment(options: ExperimentOptions): Promise<ExperimentResult> {
  const { settings, signal } = options;
  const wallStart = Date.now();
  const progress = options.onProgress ?? (() => undefined);
  const example = loadExampleSettings(options.examplePath);
  const duration = durationOf(settings);
  const buckets = Math.floor(duration / settings.bucketSeconds);
  // Every server the run will have; the one added during the run is not in the HAProxy configuration.
  const servers = Array.from({ length: poolSize(settings) }, (_, i) => serverName(i));
  const configured = servers.slice(0, settings.servers);
  const addedAt = settings.addServer?.at ?? Infinity;
  const prefixes = options.prefixes ?? { alone: 'lab_alone', weighted: 'lab' };
  // The traffic does not depend on the metrics pipeline: any delay gives the same schedule.
  const setup = simSetupFor(settings, example, 0);
  const traffic = generateTraffic(setup, scenarioFor(settings, setup), settings.seed);
  const clock = createLabClock({ speedup: settings.speedup, horizonSeconds: duration + 600 });

  const stoppers: (() => Promise<unknown>)[] = [];
  const dir = makeTempDir('hw-lab-real');
  stoppers.push(async () => removeTempDir(dir));
  let generator: Generator | undefined;
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  const checkAbort = (): void => {
    if (signal.aborted) throw new LabInterrupted();
  };

  try {
    let graphite: GraphiteEndpoint;
    if (options.graphite === undefined) {
      progress('starting Graphite (carbon-cache + graphite-web)...');
      const own: GraphiteHandle = await startGraphite();
      stoppers.push(() => own.stop());
      graphite = own;
    } else {
      graphite = options.graphite;
    }
    checkAbort();
    const silentUntil = servers.map((_, i) => (i < settings.servers || settings.addServer === null ? -Infinity : settings.addServer.at + settings.addServer.metricsAfterSeconds));
    const sinkOptions = { names: servers, clock, bucketSeconds: settings.bucketSeconds, linesPerPoint: settings.linesPerPoint, silentUntil };
    const sinksAlone = await startSinks({ ...sinkOptions, carbon: { ...graphite, prefix: prefixes.alone } });
    stoppers.push(() => sinksAlone.stop());
    const sinksWeighted = await startSinks({ ...sinkOptions, carbon: { ...graphite, prefix: prefixes.weighted } });
    stoppers.push(() => sinksWeighted.stop());

    const backendOf = (sinks: Sinks) => ({
      name: BACKEND,
      balance: 'leastconn' as const,
      frontend: true,
      servers: configured.map((name, i) => ({ name, weight: 100, address: `127.0.0.1:${sinks.ports[i] ?? 0}` })),
    });
    progress('starting two HAProxy 2.6 (leastconn), one per stack...');
    const [haAlone, haWeighted] = await Promise.all([startHaproxy({ backends: [backendOf(sinksAlone)] }), startHaproxy({ backends: [backendOf(sinksWeighted)] })]);
    stoppers.push(() => haAlone.stop(), () => haWeighted.stop());
    const portAlone = haAlone.frontendPorts[BACKEND];
    const portWeighted = haWeighted.frontendPorts[BACKEND];
    if (portAlone === undefined || portWeighted === undefined) throw new Error('HAProxy started without a frontend port');
    checkAbort();

    const proxy: GraphiteProxy = await startGraphiteProxy(graphite.url, clock);
    stoppers.push(() => proxy.stop());
    const config = weighterConfig({ graphiteUrl: proxy.url, adminSocket: haWeighted.adminSocket, backendName: BACKEND, prefix: prefixes.weighted, example });
    const intervalWall = example.intervalSeconds / settings.speedup;
    progress(`starting the weighter: haproxy-weighter run --interval ${intervalWall} --json (every ${example.intervalSeconds} lab seconds)...`);
    const weighter: Weighter = startWeighter({ repoRoot: options.repoRoot, configPath: join(dir, 'weighter.json'), config, backendName: BACKEND, intervalWallSeconds: intervalWall });
    stoppers.push(() => weighter.stop());

    generator = createGenerator({
      targets: [
        { name: 'alone', port: portAlone, placed: (count) => sinksAlone.whenAccepted(count) },
        { name: 'weighted', port: portWeighted, placed: (count) => sinksWeighted.whenAccepted(count) },
      ],
      schedule: traffic,
      clock,
      bucketSeconds: settings.bucketSeconds,
      linesPerPoint: settings.linesPerPoint,
    });
    const gen = generator;
    stoppers.push(async () => gen.stop());
    progress(`opening ${traffic.initial.length} long-lived connections on each stack...`);
    await generator.openInitial();
    const total = (list: readonly number[]): number => list.reduce((a, b) => a + b, 0);
    for (let i = 0; i < 200 && (total(sinksAlone.sessions()) < traffic.initial.length || total(sinksWeighted.sessions()) < traffic.initial.length); i++) {
      checkAbort();
      await sleep(50);
    }
    if (total(sinksAlone.sessions()) < traffic.initial.length || total(sinksWeighted.sessions()) < traffic.initial.length) {
      throw new Error(`only ${total(sinksAlone.sessions())} and ${total(sinksWeighted.sessions())} of ${traffic.initial.length} connections reached the sinks`);
    }
    // The weighter must be cycling before the clock starts, as it would be in production.
    for (let i = 0; i < 300 && weighter.cycles().length === 0 && !weighter.hasExited(); i++) {
      checkAbort();
      await sleep(50);
    }
    if (weighter.cycles().length === 0) throw new Error(`the weighter produced no cycle report: ${weighter.stderr()}`);
    const weightsBefore = await weightsOf(haWeighted);
    const firstCycle = weighter.cycles()[0]?.startedMs ?? Date.now();
    const clockStart = alignedClockStart(firstCycle, intervalWall * 1000, CYCLE_LEAD_SECONDS, settings.speedup, Date.now() + 200);
    await sleep(Math.max(0, clockStart - Date.now()));

    const setupSeconds = (Date.now() - wallStart) / 1000;
    const cpuBefore = process.cpuUsage();
    // A soft reload starts new processes: every HAProxy process of the run is counted.
    const haPids = new Set([haAlone.pid, haWeighted.pid]);
    const haCpuBefore = cpuSecondsOf(haAlone.pid) + cpuSecondsOf(haWeighted.pid);
    const runStart = Date.now();
    loopDelay.enable();
    clock.start(clockStart);
    sinksAlone.startReporting(buckets);
    sinksWeighted.startReporting(buckets);
    progress(`lab clock started: ${duration} lab seconds (${(duration / settings.speedup).toFixed(0)} s of wall clock), ${settings.speedup}x faster than real time`);

    const every = options.progressEverySeconds;
    const reporter = (async () => {
      if (every === undefined) return;
      let next = every;
      while (next <= duration && !signal.aborted && generator !== undefined) {
        const wait = clock.wallMsAt(next) + 60 - Date.now();
        if (wait > 0) await sleep(wait, undefined, { signal }).catch(() => undefined);
        if (signal.aborted) return;
        const last = Math.floor(next / settings.bucketSeconds);
        const window = Math.max(1, Math.round(60 / settings.bucketSeconds));
        const inPool = next >= addedAt ? servers.length : settings.servers;
        const a = imbalanceOf(meanLoads(sinksAlone, last - window, last, servers.length).slice(0, inPool)) ?? NaN;
        const w = imbalanceOf(meanLoads(sinksWeighted, last - window, last, servers.length).slice(0, inPool)) ?? NaN;
        const cycle = weighter.cycles().at(-1);
        const weights = servers.map((s) => String(cycle?.weights[s] ?? '?').padStart(3)).join(' ');
        progress(`  lab minute ${(next / 60).toFixed(0).padStart(3)}: imbalance (last lab minute) leastconn alone ${a.toFixed(2)} | with weighter ${w.toFixed(2)} | weights ${weights}`);
        next += every;
      }
    })();

    // The run's events, on both stacks at the same lab second.
    const events: string[] = [];
    const atLabSecond = async (t: number): Promise<void> => {
      const wait = clock.wallMsAt(t) - Date.now();
      if (wait > 0) await sleep(wait, undefined, { signal }).catch(() => undefined);
    };
    const happenings = (async () => {
      const plan: [number, () => Promise<void>][] = [];
      if (settings.reloadAt !== null) {
        plan.push([
          settings.reloadAt,
          async () => {
            await Promise.all([haAlone.softReload(), haWeighted.softReload()]);
            haPids.add(haAlone.pid).add(haWeighted.pid);
            events.push(`soft reload (haproxy -sf) of both stacks at lab second ${clock.now().toFixed(0)}`);
            progress(`  ${events.at(-1) ?? ''}`);
          },
        ]);
      }
      const added = servers[settings.servers];
      if (settings.addServer !== null && added !== undefined) {
        plan.push([
          settings.addServer.at,
          async () => {
            for (const [ha, sinks] of [
              [haAlone, sinksAlone],
              [haWeighted, sinksWeighted],
            ] as const) {
              const reply = await ha.runtime(`add server ${BACKEND}/${added} 127.0.0.1:${sinks.ports[settings.servers] ?? 0}`);
              if (!reply.includes('New server registered')) throw new Error(`add server ${added} failed: ${reply.trim()}`);
              const enabled = await ha.runtime(`enable server ${BACKEND}/${added}`);
              if (enabled.trim() !== '') throw new Error(`enable server ${added} failed: ${enabled.trim()}`);
            }
            events.push(`server ${added} added to both stacks (add server, weight 1) at lab second ${clock.now().toFixed(0)}; its metrics reach Graphite from lab second ${addedAt + (settings.addServer?.metricsAfterSeconds ?? 0)}`);
            progress(`  ${events.at(-1) ?? ''}`);
          },
        ]);
      }
      for (const [t, act] of plan.sort((a, b) => a[0] - b[0])) {
        await atLabSecond(t);
        if (signal.aborted) return;
        await act();
      }
    })();

    await Promise.all([generator.run(duration, signal), happenings]);
    checkAbort();
    // The last bucket is reported shortly after the clock passes its end.
    await sleep(Math.max(0, clock.wallMsAt(duration) + 300 - Date.now()));
    await reporter;
    const runSeconds = (Date.now() - runStart) / 1000;
    loopDelay.disable();
    const cpu = process.cpuUsage(cpuBefore);
    const haCpu = [...haPids].reduce((sum, pid) => sum + cpuSecondsOf(pid), 0) - haCpuBefore;
    const weightsAfter = await weightsOf(haWeighted);
    const sessionsAfter = { alone: await sessionsOf(haAlone, servers), weighted: await sessionsOf(haWeighted, servers) };
    generator.stop();
    await weighter.stop();
    // The cycle just before lab time 0 saw no data yet; the run's cycles are those after it.
    const cycles = weighter.cycles().filter((c) => c.startedMs >= clockStart);
    const genStats = generator.stats();

    // A server not yet in the pool has no load at all (not 0): the imbalance leaves it out.
    const loadsOf = (sinks: Sinks): number[][] =>
      Array.from({ length: buckets }, (_, b) => sinks.loads(b).map((v, i) => (i >= settings.servers && b * settings.bucketSeconds < addedAt ? NaN : v)));
    const aloneLoads = loadsOf(sinksAlone);
    const weightedLoads = loadsOf(sinksWeighted);
    const from = settings.warmupSeconds;
    const alone: StackRun = { loads: aloneLoads, figures: runFigures(asSimResult(servers, aloneLoads, settings.bucketSeconds), from, duration) };
    const weighted: StackRun = {
      loads: weightedLoads,
      figures: runFigures(asSimResult(servers, weightedLoads, settings.bucketSeconds, weightCycles(cycles, clock, servers)), from, duration),
    };

    const graphiteCheck = await checkGraphite(graphite, clock, prefixes.weighted, servers, weightedLoads, settings.bucketSeconds);
    const offsets = cycles.map((c) => {
      const t = ((c.startedMs - clock.wallMsAt(0)) / 1000) * settings.speedup;
      return t - Math.round(t / example.intervalSeconds) * example.intervalSeconds;
    });
    const reports = [sinksAlone.reports(), sinksWeighted.reports()];
    const lagMs = reports.reduce((s, r) => s + r.meanLagMs * r.reported, 0) / Math.max(1, reports.reduce((s, r) => s + r.reported, 0));
    if (reports.some((r) => r.failed > 0)) progress(`warning: ${reports.map((r) => r.failed).join(' + ')} carbon reports failed: ${reports.map((r) => r.lastError ?? '').join(' ')}`);

    return {
      settings,
      example,
      servers,
      traffic,
      events,
      labEpoch: clock.labEpoch,
      clockStartMs: clockStart,
      alone,
      weighted,
      weightsBefore,
      weightsAfter,
      sessionsAfter,
      cycles,
      cycleOffsets: {
        mean: mean(offsets),
        min: Math.min(...offsets),
        max: Math.max(...offsets),
      },
      reportDelaySeconds: (lagMs / 1000) * settings.speedup,
      graphiteCheck,
      generator: genStats,
      resources: {
        labProcessCores: (cpu.user + cpu.system) / 1e6 / runSeconds,
        haproxyCores: haCpu / runSeconds,
        eventLoopP99Ms: loopDelay.percentile(99) / 1e6,
        eventLoopMaxMs: loopDelay.max / 1e6,
      },
      wallSeconds: { setup: setupSeconds, run: runSeconds },
    };
  } finally {
    loopDelay.disable();
    generator?.stop();
    // Stop in reverse order of start: the weighter before HAProxy, the sinks before Graphite.
    for (const stop of stoppers.reverse()) {
      await stop().catch((error: unknown) => progress(`cleanup: ${error instanceof Error ? error.message : String(error)}`));
    }
  }
}

/** Renders the weighted stack's series and compares every bucket with the sinks' own counts. */
async function checkGraphite(
  endpoint: GraphiteEndpoint,
  clock: LabClock,
  prefix: string,
  servers: readonly string[],
  loads: readonly (readonly number[])[],
  bucketSeconds: number,
): Promise<ExperimentResult['graphiteCheck']> {
  const graphite = connectGraphite(endpoint);
  const from = clock.epochAt(0) - 1;
  const until = clock.epochAt(loads.length * bucketSeconds) - 1;
  const series = await graphite.render(`${prefix}.*.points_received`, { from, until });
  let compared = 0;
  let missing = 0;
  let maxRelativeDifference = 0;
  servers.forEach((server, s) => {
    const found = series.find((x) => x.target === `${prefix}.${server}.points_received`);
    loads.forEach((row, b) => {
      const want = row[s] ?? NaN;
      const point = found?.datapoints.find(([, t]) => t === clock.epochAt(b * bucketSeconds));
      const got = point?.[0];
      if (got === null || got === undefined) {
        missing++;
        return;
      }
      compared++;
      maxRelativeDifference = Math.max(maxRelativeDifference, Math.abs(got - want) / Math.max(1e-9, Math.abs(want)));
    });
  });
  return { compared, missing, maxRelativeDifference };
}
