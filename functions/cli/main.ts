import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { createGraphiteSource, type GraphiteSource } from '../adapters/graphite.js';
import { acquireRunLock } from '../adapters/run-lock.js';
import { createSocketRelay } from '../adapters/socket-relay.js';
import { parseConfigText, type Config } from '../core/config.js';
import { createControlMemory } from '../core/control-memory.js';
import { createStaticMemory, exitCodeFor, runCycle, type CycleDeps, type CycleReport } from '../core/cycle.js';
import { displaySafeDeep, displaySafeLines } from '../core/display.js';
import { ConfigError, WeighterError, describeError } from '../core/errors.js';
import { VERSION } from '../version.js';
import { formatReport } from './format.js';

export const HELP = `haproxy-weighter: set HAProxy server weights from Graphite load metrics

Usage:
  haproxy-weighter plan  --config FILE [--json] [--backend NAME]...
  haproxy-weighter apply --config FILE [--json] [--backend NAME]... [--force]
  haproxy-weighter run   --config FILE [--json] [--backend NAME]... [--force] [--interval SECONDS]

Commands:
  plan    Observe every load balancer and Graphite, decide the weights, write nothing.
  apply   One rebalance cycle: observe, measure, decide, write one batch per load balancer.
  run     A cycle every interval (config intervalSeconds, or --interval) until SIGINT or
          SIGTERM; the cycle in flight is finished before exiting.

Options:
  -c, --config FILE     YAML or JSON configuration (see infra/example-config.yaml).
      --json            Print the report as JSON (one object per cycle, one line each in run).
  -b, --backend NAME    Only this backend (repeatable).
      --force           Write every eligible weight even when unchanged (after a reload).
      --interval SEC    Seconds between cycles for run.
  -h, --help            This help.

Exit codes:
  0  all good (run: stopped by a signal)
  1  the cycle failed and nothing was written
  2  usage or configuration error
  3  partial: some weights written, something failed (see the report)

Secrets (Graphite key, password or token) are read from the environment variables the config
names (keyEnv, passwordEnv, valueEnv), never from the file.`;

export interface CliIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly now: () => number;
  /** Resolves when SIGINT/SIGTERM arrives; `run` stops after the cycle in flight. */
  readonly stopSignal: Promise<string>;
}

interface Parsed {
  readonly command: 'plan' | 'apply' | 'run';
  readonly configPath: string;
  readonly json: boolean;
  readonly backends: readonly string[] | undefined;
  readonly force: boolean;
  readonly interval: number | undefined;
}

function parseCli(argv: readonly string[]): Parsed | 'help' {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    strict: true,
    options: {
      config: { type: 'string', short: 'c' },
      json: { type: 'boolean', default: false },
      backend: { type: 'string', short: 'b', multiple: true },
      force: { type: 'boolean', default: false },
      interval: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help === true) return 'help';
  const [command, ...extra] = positionals;
  if (command !== 'plan' && command !== 'apply' && command !== 'run') {
    throw new ConfigError(command === undefined ? 'Missing command: plan, apply or run' : `Unknown command ${JSON.stringify(command)}: use plan, apply or run`);
  }
  if (extra.length > 0) throw new ConfigError(`Unexpected argument(s): ${extra.join(' ')}`);
  if (values.config === undefined) throw new ConfigError('Missing --config FILE');
  if (command === 'plan' && values.force === true) throw new ConfigError('--force has no meaning with plan');
  let interval: number | undefined;
  if (values.interval !== undefined) {
    interval = Number(values.interval);
    if (!Number.isFinite(interval) || interval < 0.1 || interval > 86_400) throw new ConfigError(`--interval must be seconds between 0.1 and 86400 (got ${JSON.stringify(values.interval)})`);
  }
  return { command, configPath: values.config, json: values.json === true, backends: values.backend, force: values.force === true, interval };
}

async function loadConfig(path: string): Promise<Config> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw new ConfigError(`Cannot read config file ${path}: ${describeError(cause)}`, [], { cause });
  }
  return parseConfigText(text, path);
}

function emit(io: CliIo, report: CycleReport, json: boolean): void {
  // Every string of the report made visible text first: a name or message can neither split a
  // line of the table nor reorder what the terminal shows, in either form.
  const shown = displaySafeDeep(report);
  io.stdout(json ? JSON.stringify(shown) : formatReport(shown));
}

/** Runs the CLI and resolves with its exit code. Everything outside (stdio, env, clock, signals) is injected. */
export async function main(argv: readonly string[], cliIo: CliIo): Promise<number> {
  // The last guard on both streams: whatever reaches the terminal has no control, bidi or invisible character but its line breaks.
  const io: CliIo = { ...cliIo, stdout: (text) => cliIo.stdout(displaySafeLines(text)), stderr: (text) => cliIo.stderr(displaySafeLines(text)) };
  let parsed: Parsed | 'help';
  let config: Config;
  try {
    parsed = parseCli(argv);
    if (parsed === 'help') {
      io.stdout(HELP);
      return 0;
    }
    config = await loadConfig(parsed.configPath);
    if (config.relay.type !== 'socket') {
      throw new ConfigError(`relay.type is ${JSON.stringify(config.relay.type)}: the CLI talks to runtime sockets directly; use relay.type "socket" (the ssm relay is for the Lambda)`);
    }
  } catch (error) {
    io.stderr(`haproxy-weighter: ${describeError(error)}${error instanceof WeighterError ? '' : `\n\n${HELP}`}`);
    return 2;
  }
  const cli = parsed;
  let metrics: GraphiteSource;
  let deps: CycleDeps;
  try {
    metrics = createGraphiteSource(config.graphite, { env: io.env });
    deps = { config, metrics, relay: createSocketRelay(config.relay), now: io.now, version: VERSION };
  } catch (error) {
    io.stderr(`haproxy-weighter: ${describeError(error)}`);
    return 2;
  }
  try {
    return await runCommand(cli, deps, config.relay.loadBalancers.map((lb) => lb.endpoint), io);
  } finally {
    // The Graphite client's connections are the only thing left open: closed, the process ends on its own.
    await metrics.close();
  }
}

async function runCommand(cli: Parsed, deps: CycleDeps, endpoints: readonly string[], io: CliIo): Promise<number> {
  const cycleOptions = { mode: cli.command === 'plan' ? ('plan' as const) : ('apply' as const), backends: cli.backends, force: cli.force };
  const staticMemory = createStaticMemory();
  // What the control loop remembers between the cycles of `run` (a one-shot apply starts empty).
  const controlMemory = createControlMemory();
  const once = async (): Promise<number> => {
    // Writers take a lock per runtime endpoint so two runs never interleave their batches.
    let lock;
    try {
      lock = cycleOptions.mode === 'apply' ? await acquireRunLock(endpoints, { env: io.env }) : undefined;
    } catch (error) {
      io.stderr(`haproxy-weighter: nothing written: ${describeError(error)}`);
      return 1;
    }
    try {
      const report = await runCycle(deps, { ...cycleOptions, knownStatic: staticMemory.current(io.now()), memory: controlMemory });
      staticMemory.remember(report.staticRefusals, io.now());
      emit(io, report, cli.json);
      return exitCodeFor(report);
    } finally {
      await lock?.release();
    }
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
