import { readFileSync } from 'node:fs';
import { createGraphiteSource, type GraphiteSource } from '../adapters/graphite.js';
import { createHistorySink } from '../adapters/history-sink.js';
import type { RunLock } from '../adapters/run-lock.js';
import { createSocketRelay } from '../adapters/socket-relay.js';
import { parseConfigText, type Config, type SocketRelayConfig } from '../core/config.js';
import { createControlMemory } from '../core/control-memory.js';
import { createStaticMemory, exitCodeFor, runCycle, type CycleDeps, type CycleReport } from '../core/cycle.js';
import { displaySafeDeep } from '../core/display.js';
import { ConfigError, describeError } from '../core/errors.js';
import { recordHistory, type HistorySink } from '../core/history.js';
import { VERSION } from '../version.js';
import { formatReport } from './format.js';
import type { CliIo, Parsed } from './main.js';

/**
 * The CLI's plan, apply and run once the arguments are read (main.ts): the configuration, the
 * Graphite client and the socket relay, one cycle or a cycle every interval, the report.
 */

/** Reads and validates the configuration file, and refuses the ssm relay: the CLI talks to the sockets. */
export async function loadConfig(path: string): Promise<Config & { readonly relay: SocketRelayConfig }> {
  let text: string;
  try {
    // Read at once, before any cycle starts: node:fs/promises (and the readline it loads) would be
    // a millisecond or two of every start-up that nothing else in plan needs.
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new ConfigError(`Cannot read config file ${path}: ${describeError(cause)}`, [], { cause });
  }
  const config = await parseConfigText(text, path);
  const relay = config.relay;
  if (relay.type !== 'socket') {
    throw new ConfigError(`relay.type is ${JSON.stringify(relay.type)}: the CLI talks to runtime sockets directly; use relay.type "socket" (the ssm relay is for the Lambda)`);
  }
  return { ...config, relay };
}

function emit(io: CliIo, report: CycleReport, cli: Pick<Parsed, 'json' | 'changes'>): void {
  // Every string of the report made visible text first: a name or message can neither split a
  // line of the table nor reorder what the terminal shows, in either form.
  const shown = displaySafeDeep(report);
  io.stdout(cli.json ? JSON.stringify(shown) : formatReport(shown, { changesOnly: cli.changes }));
}

/** Loads the configuration and runs the command; resolves with the exit code. */
export async function runCycleCommand(cli: Parsed, io: CliIo): Promise<number> {
  let config: Config & { readonly relay: SocketRelayConfig };
  try {
    config = await loadConfig(cli.configPath);
  } catch (error) {
    io.stderr(`haproxy-weighter: ${describeError(error)}`);
    return 2;
  }
  let metrics: GraphiteSource;
  let deps: CycleDeps;
  let history: History | undefined;
  try {
    metrics = createGraphiteSource(config.graphite, { env: io.env });
    deps = { config, metrics, relay: createSocketRelay(config.relay), now: io.now, version: VERSION };
    const sink = createHistorySink(config.history, { env: io.env, intervalSeconds: cli.interval ?? config.intervalSeconds });
    history = sink === undefined || config.history === undefined ? undefined : { sink, prefix: config.history.prefix };
  } catch (error) {
    io.stderr(`haproxy-weighter: ${describeError(error)}`);
    return 2;
  }
  try {
    return await runCommand(cli, deps, config.relay.loadBalancers.map((lb) => lb.endpoint), io, history);
  } finally {
    // The Graphite client's connections are the only thing left open: closed, the process ends on its own.
    await metrics.close();
  }
}

/** Where the weight history goes, when the configuration has a `history` section. */
interface History {
  readonly sink: HistorySink;
  readonly prefix: string;
}

async function runCommand(cli: Parsed, deps: CycleDeps, endpoints: readonly string[], io: CliIo, history: History | undefined): Promise<number> {
  const cycleOptions = { mode: cli.command === 'plan' ? ('plan' as const) : ('apply' as const), backends: cli.backends, force: cli.force };
  const staticMemory = createStaticMemory();
  // What the control loop remembers between the cycles of `run` (a one-shot apply starts empty).
  const controlMemory = createControlMemory();
  const once = async (): Promise<number> => {
    // Writers take a lock per runtime endpoint so two runs never interleave their batches.
    let lock: RunLock | undefined;
    try {
      if (cycleOptions.mode === 'apply') {
        // Loaded by writers only: the lock's node:child_process and node:crypto are a tenth of a plan's start-up.
        const { acquireRunLock } = await import('../adapters/run-lock.js');
        lock = await acquireRunLock(endpoints, { env: io.env });
      }
    } catch (error) {
      io.stderr(`haproxy-weighter: nothing written: ${describeError(error)}`);
      return 1;
    }
    let report: CycleReport;
    try {
      report = await runCycle(deps, { ...cycleOptions, knownStatic: staticMemory.current(io.now()), memory: controlMemory });
      staticMemory.remember(report.staticRefusals, io.now());
    } finally {
      await lock?.release();
    }
    // After the lock: the history touches no load balancer. Its failure is a warning in the report.
    if (history !== undefined) report = await recordHistory(report, history.sink, history.prefix);
    emit(io, report, cli);
    return exitCodeFor(report);
  };

  try {
    if (cli.command !== 'run') return await once();

    let stopping: string | null = null;
    void io.stopSignal.then((signal) => {
      stopping = signal;
    });
    const intervalMs = (cli.interval ?? deps.config.intervalSeconds) * 1000;
    for (;;) {
      const started = io.now();
      await once();
      if (stopping !== null) break;
      const wait = Math.max(0, intervalMs - (io.now() - started));
      let timer: NodeJS.Timeout | undefined;
      const signal = await Promise.race([io.stopSignal, new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), wait)))]);
      clearTimeout(timer);
      if (signal !== null || stopping !== null) break;
    }
    if (!cli.json) io.stderr(`haproxy-weighter: stopped by ${String(stopping ?? 'signal')} after finishing the cycle in flight`);
    return 0;
  } catch (error) {
    // Only a bad request (e.g. an unknown --backend) can escape runCycle.
    io.stderr(`haproxy-weighter: ${describeError(error)}`);
    return error instanceof ConfigError ? 2 : 1;
  }
}
