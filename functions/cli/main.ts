import { parseArgs } from 'node:util';
import { displaySafeLines } from '../core/display.js';
import { ConfigError, WeighterError, describeError } from '../core/errors.js';

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

export interface Parsed {
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

/** Runs the CLI and resolves with its exit code. Everything outside (stdio, env, clock, signals) is injected. */
export async function main(argv: readonly string[], cliIo: CliIo): Promise<number> {
  // The last guard on both streams: whatever reaches the terminal has no control, bidi or invisible character but its line breaks.
  const io: CliIo = { ...cliIo, stdout: (text) => cliIo.stdout(displaySafeLines(text)), stderr: (text) => cliIo.stderr(displaySafeLines(text)) };
  let parsed: Parsed | 'help';
  try {
    parsed = parseCli(argv);
  } catch (error) {
    io.stderr(`haproxy-weighter: ${describeError(error)}${error instanceof WeighterError ? '' : `\n\n${HELP}`}`);
    return 2;
  }
  if (parsed === 'help') {
    io.stdout(HELP);
    return 0;
  }
  // What a cycle needs (the configuration schema, the Graphite client, the relay, the core) is
  // loaded only now: --help and a usage error start without it.
  const { runCycleCommand } = await import('./cycle-command.js');
  return runCycleCommand(parsed, io);
}
