import { parseArgs } from 'node:util';
import { displaySafeLines } from '../core/display.js';
import { ConfigError, WeighterError, describeError } from '../core/errors.js';

export const HELP = `haproxy-weighter: set HAProxy server weights from Graphite load metrics

Usage:
  haproxy-weighter plan   --config FILE [--json | --changes] [--backend NAME]...
  haproxy-weighter apply  --config FILE [--json | --changes] [--backend NAME]... [--force]
  haproxy-weighter run    --config FILE [--json | --changes] [--backend NAME]... [--force] [--interval SECONDS]
  haproxy-weighter doctor --config FILE [--json] [--backend NAME]...
  haproxy-weighter --version

Commands:
  plan    Observe every load balancer and Graphite, decide the weights, write nothing.
  apply   One rebalance cycle: observe, measure, decide, write one batch per load balancer.
  run     A cycle every interval (config intervalSeconds, or --interval) until SIGINT or
          SIGTERM; the cycle in flight is finished before exiting.
  doctor  Check, without changing anything, every piece a cycle needs (Graphite, credentials,
          each target's coverage, each runtime socket and its level, each backend), and say
          for each what is wrong and how to fix it.

Options:
  -c, --config FILE     YAML or JSON configuration (see infra/example-config.yaml).
      --json            Print the report as JSON (one object per cycle, one line each in run).
      --changes         Human report with only the servers whose weight changes, and failures
                        and skips that matter (one summary line per backend stays).
  -b, --backend NAME    Only this backend (repeatable).
      --force           Write every eligible weight even when unchanged (after a reload).
      --interval SEC    Seconds between cycles for run.
  -V, --version         Print the version.
  -h, --help            This help.

Exit codes:
  0  all good (run: stopped by a signal; doctor: nothing failed)
  1  the cycle failed and nothing was written (doctor: a check failed)
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
  readonly command: 'plan' | 'apply' | 'run' | 'doctor';
  readonly configPath: string;
  readonly json: boolean;
  readonly changes: boolean;
  readonly backends: readonly string[] | undefined;
  readonly force: boolean;
  readonly interval: number | undefined;
}

const COMMANDS = ['plan', 'apply', 'run', 'doctor'] as const;
const isCommand = (word: string | undefined): word is Parsed['command'] => COMMANDS.some((c) => c === word);

function parseCli(argv: readonly string[]): Parsed | 'help' | 'version' {
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
      changes: { type: 'boolean', default: false },
      version: { type: 'boolean', short: 'V', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help === true) return 'help';
  if (values.version === true) return 'version';
  const [command, ...extra] = positionals;
  if (!isCommand(command)) {
    throw new ConfigError(command === undefined ? 'Missing command: plan, apply, run or doctor' : `Unknown command ${JSON.stringify(command)}: use plan, apply, run or doctor`);
  }
  if (extra.length > 0) throw new ConfigError(`Unexpected argument(s): ${extra.join(' ')}`);
  if (values.config === undefined) throw new ConfigError('Missing --config FILE');
  if ((command === 'plan' || command === 'doctor') && values.force === true) throw new ConfigError(`--force has no meaning with ${command}`);
  if (command !== 'run' && values.interval !== undefined) throw new ConfigError(`--interval has no meaning with ${command}`);
  if (values.changes === true && (command === 'doctor' || values.json === true)) {
    throw new ConfigError(command === 'doctor' ? '--changes has no meaning with doctor' : '--changes shapes the human report: it has no meaning with --json');
  }
  let interval: number | undefined;
  if (values.interval !== undefined) {
    interval = Number(values.interval);
    if (!Number.isFinite(interval) || interval < 0.1 || interval > 86_400) throw new ConfigError(`--interval must be seconds between 0.1 and 86400 (got ${JSON.stringify(values.interval)})`);
  }
  return { command, configPath: values.config, json: values.json === true, changes: values.changes === true, backends: values.backend, force: values.force === true, interval };
}

/** Runs the CLI and resolves with its exit code. Everything outside (stdio, env, clock, signals) is injected. */
export async function main(argv: readonly string[], cliIo: CliIo): Promise<number> {
  // The last guard on both streams: whatever reaches the terminal has no control, bidi or invisible character but its line breaks.
  const io: CliIo = { ...cliIo, stdout: (text) => cliIo.stdout(displaySafeLines(text)), stderr: (text) => cliIo.stderr(displaySafeLines(text)) };
  let parsed: Parsed | 'help' | 'version';
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
  if (parsed === 'version') {
    // The one import --version needs: the version is bundled in from package.json.
    const { VERSION } = await import('../version.js');
    io.stdout(VERSION);
    return 0;
  }
  if (parsed.command === 'doctor') {
    const { runDoctorCommand } = await import('./doctor-command.js');
    return runDoctorCommand(parsed, io);
  }
  // What a cycle needs (the configuration schema, the Graphite client, the relay, the core) is
  // loaded only now: --help and a usage error start without it.
  const { runCycleCommand } = await import('./cycle-command.js');
  return runCycleCommand(parsed, io);
}
