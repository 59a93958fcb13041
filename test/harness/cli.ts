/**
 * The real CLI in tests: run from source as `haproxy-weighter` would run, as a one-shot command or
 * a long-running `run`, and the JSON report it prints checked against the shipped schema (a report
 * that does not validate is a failure too). Used by the CLI integration tests, the fault matrix and the soak.
 */
import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { main } from '../../functions/cli/main.js';
import type { CycleReport } from '../../functions/core/cycle.js';
import { REPO_ROOT } from './paths.js';
import { makeTempDir, runCommand, type CommandResult } from './processes.js';
import { checkedReport } from './report.js';

// ---------------------------------------------------------------------------------------------
// The real CLI as a child process
// ---------------------------------------------------------------------------------------------

export { REPO_ROOT };
const CLI_ENTRY = join(REPO_ROOT, 'functions', 'cli', 'bin.ts');
const SETPRIV = '/usr/bin/setpriv';

/** Set by the integration tests' global setup: the path of a CLI bundle built from the current source. */
export const CLI_BUNDLE_ENV = 'HAPROXY_WEIGHTER_TEST_CLI_BUNDLE';

/**
 * The node argv that runs the CLI as `haproxy-weighter` would run: the bundle the global setup
 * built when there is one, from source through tsx otherwise (the soak, scripts). Extra node
 * options need tsx (they may `--import` TypeScript), so they always run from source.
 */
export function cliArgv(args: readonly string[], nodeOptions: readonly string[] = []): string[] {
  const bundle = process.env[CLI_BUNDLE_ENV];
  if (bundle !== undefined && bundle !== '' && nodeOptions.length === 0) return [bundle, ...args];
  return ['--import', 'tsx', ...nodeOptions, CLI_ENTRY, ...args];
}

let runtimeDir: string | undefined;

/**
 * The XDG_RUNTIME_DIR every CLI of this test process runs with (unless a test sets another): a
 * private directory removed at exit, so that the run lock files of throw-away sockets do not pile
 * up in the shared temporary directory, while the CLIs of one test still share their locks.
 */
export function cliRuntimeDir(): string {
  runtimeDir ??= makeTempDir('hw-cli-runtime');
  return runtimeDir;
}

/** The run lock's directory of a spawned CLI: a private temporary one, never the user's own. */
function cliDirs(): { XDG_RUNTIME_DIR: string } {
  return { XDG_RUNTIME_DIR: cliRuntimeDir() };
}

/** Runs one CLI command to completion (killed after `timeoutMs`). */
export function runCli(args: readonly string[], options: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<CommandResult> {
  return runCommand(process.execPath, cliArgv(args), { cwd: REPO_ROOT, env: { ...process.env, ...cliDirs(), ...options.env }, timeoutMs: options.timeoutMs ?? 60_000 });
}

/**
 * Runs the CLI's `main` in-process, with stdio captured, the environment given (and the run lock
 * in cliRuntimeDir() unless it says otherwise) and no signal: for the cases that end before any
 * cycle (argument and configuration rejections), and for long series of cycles, where spawning
 * a process per case would only measure Node.js start-up.
 */
export async function runMain(argv: readonly string[], env: Readonly<Record<string, string>> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, {
    stdout: (text) => (stdout += `${text}\n`),
    stderr: (text) => (stderr += `${text}\n`),
    env: { XDG_RUNTIME_DIR: cliRuntimeDir(), ...env },
    now: () => Date.now(),
    stopSignal: new Promise<string>(() => undefined),
  });
  return { code, stdout, stderr };
}

export interface CliProcess {
  readonly pid: number;
  /** Complete stdout lines so far. */
  readonly lines: () => readonly string[];
  readonly stderr: () => string;
  /** Resolves once `count` stdout lines have arrived (rejects if the process exits first). */
  waitForLines(count: number): Promise<readonly string[]>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal: NodeJS.Signals): void;
  /** SIGKILL if still running, and wait for the exit. */
  stop(): Promise<void>;
}

/**
 * Starts a long-running CLI command (e.g. `run`). Under Linux it runs under `setpriv --pdeathsig
 * KILL`, which execs in place (same pid, signals reach node directly) and kills it with us.
 */
export function startCli(args: readonly string[], options: { env?: Record<string, string>; nodeOptions?: readonly string[] } = {}): CliProcess {
  const argv = cliArgv(args, options.nodeOptions);
  const wrapped = existsSync(SETPRIV);
  const child = spawn(wrapped ? SETPRIV : process.execPath, wrapped ? ['--pdeathsig', 'KILL', '--', process.execPath, ...argv] : argv, {
    cwd: REPO_ROOT,
    env: { ...process.env, ...cliDirs(), ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error('could not start the CLI');
  const lines: string[] = [];
  let partial = '';
  let stderr = '';
  let done = false;
  const waiters = new Set<() => void>();
  const wake = (): void => {
    for (const waiter of waiters) waiter();
  };
  child.stdout.on('data', (chunk: Buffer) => {
    const parts = (partial + chunk.toString('utf8')).split('\n');
    partial = parts.pop() ?? '';
    lines.push(...parts.filter((l) => l !== ''));
    wake();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('close', (code, signal) => {
      if (partial !== '') lines.push(partial);
      partial = '';
      done = true;
      wake();
      resolve({ code, signal });
    });
  });
  return {
    pid,
    lines: () => lines,
    stderr: () => stderr,
    waitForLines: (count) =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          if (lines.length >= count) {
            waiters.delete(check);
            resolve(lines);
          } else if (done) {
            waiters.delete(check);
            reject(new Error(`the CLI exited after ${lines.length} line(s), ${count} expected; stderr: ${stderr.slice(-2000)}`));
          }
        };
        waiters.add(check);
        check();
      }),
    exited,
    kill: (signal) => {
      if (!done) child.kill(signal);
    },
    stop: async () => {
      if (!done) child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Writes a configuration object as YAML into `dir` and returns its path. */
export function writeConfigFile(dir: string, config: unknown, name = 'config.yaml'): string {
  const path = join(dir, name);
  writeFileSync(path, stringify(config));
  return path;
}

// ---------------------------------------------------------------------------------------------
// The report the CLI prints, validated
// ---------------------------------------------------------------------------------------------

/** One JSON report line of `--json`, validated whole against the shipped schema; throws on anything else. */
export function parseCycleReport(line: string): CycleReport {
  return checkedReport(JSON.parse(line));
}

/** Every report of a `--json` stdout (one per line). */
export function parseReports(stdout: string): CycleReport[] {
  return stdout
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map(parseCycleReport);
}

/** The one report of a single `plan`/`apply --json` run. */
export function singleReport(stdout: string): CycleReport {
  const reports = parseReports(stdout);
  const [only] = reports;
  if (reports.length !== 1 || only === undefined) throw new Error(`expected exactly one report, got ${reports.length}: ${stdout.slice(0, 500)}`);
  return only;
}

/** Every server weight a report says a load balancer holds after the cycle, per backend/server. */
export function weightsAfter(report: CycleReport, loadBalancer: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const b of report.backends) {
    const entry = b.loadBalancers.find((l) => l.loadBalancer === loadBalancer);
    if (entry === undefined) continue;
    const failed = new Set(entry.apply.failed.map((f) => f.server));
    const written = entry.apply.status === 'applied' || entry.apply.status === 'failed';
    for (const a of entry.plan.actions) out.set(`${b.backend}/${a.server}`, written && a.weight !== null && !failed.has(a.server) ? a.weight : a.current);
  }
  return out;
}
