/**
 * Process plumbing shared by the service harnesses: free loopback ports, per-run temp directories,
 * child processes that cannot outlive the test run, and polling. Test code only; no vitest
 * dependency, so the lab and the demo can start the same real services.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** How much of a child's output is kept to explain a failed start. */
const OUTPUT_TAIL_CHARS = 8_000;

/** Time a service gets to exit after SIGTERM before it is killed. */
const STOP_GRACE_MS = 5_000;

const SETPRIV = '/usr/bin/setpriv';

const liveChildren = new Set<ChildProcess>();
const liveDirs = new Set<string>();
let exitHookInstalled = false;

function cleanUpNow(): void {
  for (const child of liveChildren) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true });
  liveDirs.clear();
}

/**
 * Last line of defence: whatever a test left running dies with this process. Only synchronous
 * work is possible here, which is why this kills and never waits. vitest ends its workers with
 * SIGTERM, which skips 'exit' hooks unless someone listens for it; when nobody else does, we
 * exit the way SIGTERM would have.
 */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', cleanUpNow);
  const onSigterm = (): void => {
    cleanUpNow();
    if (process.listenerCount('SIGTERM') === 0) process.exit(128 + 15);
  };
  process.once('SIGTERM', onSigterm);
}

/** Creates a private directory under the OS temp dir; it is removed at exit if nobody else does. */
export function makeTempDir(prefix: string): string {
  installExitHook();
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
  liveDirs.add(dir);
  return dir;
}

export function removeTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  liveDirs.delete(dir);
}

/** A loopback port the OS just handed out. Another process may grab it before we bind it, so
 * callers that bind it later retry their start when the bind fails. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const address = server.address();
      server.close(() => {
        if (address !== null && typeof address === 'object') resolve(address.port);
        else reject(new Error(`could not read the free port from ${String(address)}`));
      });
    });
  });
}

/** Distinct free ports: asking one at a time can return the same port twice once it is closed. */
export async function freePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}

export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface ServiceProcess {
  readonly name: string;
  readonly pid: number;
  /** Resolves when the process has exited (and has been reaped). */
  readonly exited: Promise<Exit>;
  readonly hasExited: () => boolean;
  /** The last few kilobytes of stdout and stderr, interleaved. */
  readonly output: () => string;
  /** SIGTERM, then SIGKILL after a grace period; resolves once the process is gone. */
  readonly stop: () => Promise<Exit>;
}

export interface SpawnOptions {
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
}

/**
 * Starts a long-running service as a direct child. Under Linux the child is wrapped in
 * `setpriv --pdeathsig KILL`, which execs the command in place (same pid) and makes the kernel
 * kill it if this process dies without running its exit hooks (a killed test worker).
 */
export function spawnService(name: string, command: string, args: readonly string[], options: SpawnOptions = {}): ServiceProcess {
  installExitHook();
  let tail = '';
  const wrapped = existsSync(SETPRIV);
  const child = spawn(wrapped ? SETPRIV : command, wrapped ? ['--pdeathsig', 'KILL', '--', command, ...args] : [...args], {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // Without a listener a failed spawn would crash the test process instead of failing the start.
  child.on('error', (error) => {
    tail = `${tail}\n${name}: ${error.message}`.slice(-OUTPUT_TAIL_CHARS);
  });
  const pid = child.pid;
  if (pid === undefined) {
    throw new Error(`${name}: could not spawn ${command}`);
  }
  liveChildren.add(child);

  const keep = (chunk: Buffer): void => {
    tail = (tail + chunk.toString('utf8')).slice(-OUTPUT_TAIL_CHARS);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);

  let done = false;
  const exited = new Promise<Exit>((resolve) => {
    // 'close' rather than 'exit': the output is complete by then, so a failed start can quote it.
    child.once('close', (code, signal) => {
      done = true;
      liveChildren.delete(child);
      resolve({ code, signal });
    });
  });

  const stop = async (): Promise<Exit> => {
    if (!done) {
      child.kill('SIGTERM');
      // The grace timer is cancelled on exit so that it never holds the event loop open.
      const grace = new AbortController();
      const timedOut = sleep(STOP_GRACE_MS, true, { signal: grace.signal }).catch(() => false);
      const graceful = await Promise.race([exited.then(() => false), timedOut]);
      grace.abort();
      if (graceful && !done) child.kill('SIGKILL');
    }
    return exited;
  };

  return { name, pid, exited, hasExited: () => done, output: () => tail, stop };
}

export interface CommandResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions extends SpawnOptions {
  readonly input?: string;
  readonly timeoutMs?: number;
}

/** Runs a short command to completion and collects its output; never rejects on a non-zero exit. */
export async function runCommand(command: string, args: readonly string[], options: RunOptions = {}): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, [...args], {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
      timeout: options.timeoutMs ?? 30_000,
      killSignal: 'SIGKILL',
    });
    liveChildren.add(child);
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    child.once('error', (error) => {
      liveChildren.delete(child);
      reject(new Error(`could not run ${command}: ${error.message}`, { cause: error }));
    });
    child.once('close', (code, signal) => {
      liveChildren.delete(child);
      resolve({ code, signal, stdout: Buffer.concat(stdout).toString('utf8'), stderr: Buffer.concat(stderr).toString('utf8') });
    });
    // A command that exits before reading its input must not crash us with EPIPE.
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.input ?? '');
  });
}

export interface WaitOptions {
  readonly timeoutMs?: number;
  readonly intervalMs?: number;
  /** Checked on every round: a reason to give up at once (e.g. the service exited). */
  readonly abortIf?: () => string | undefined;
}

/**
 * Polls `probe` until it returns a value other than `undefined`. Errors thrown by the probe count
 * as "not yet"; the last one is reported when time runs out.
 */
export async function waitFor<T>(description: string, probe: () => Promise<T | undefined>, options: WaitOptions = {}): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const intervalMs = options.intervalMs ?? 100;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    const abort = options.abortIf?.();
    if (abort !== undefined) throw new Error(`${description}: ${abort}`, { cause: lastError });
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() >= deadline) {
      const why = lastError instanceof Error ? `: ${lastError.message}` : '';
      throw new Error(`${description}: still not true after ${timeoutMs} ms${why}`, { cause: lastError });
    }
    await sleep(intervalMs);
  }
}

/**
 * Whether a process with this pid exists and is not a zombie. Reads /proc so that a pid that was
 * reaped and never reused reads as gone without relying on signals.
 */
export function isProcessRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The state letter follows the command name, which is in parentheses and may contain spaces.
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** Socket inodes of the TCP listeners on a port, from /proc/net/tcp (IPv4) and tcp6. */
function listeningInodes(port: number): Set<string> {
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      const local = fields[1];
      const state = fields[3];
      const inode = fields[9];
      if (local === undefined || state !== '0A' || inode === undefined) continue;
      if (Number.parseInt(local.slice(local.lastIndexOf(':') + 1), 16) === port) inodes.add(inode);
    }
  }
  return inodes;
}

/**
 * Whether this very process listens on a TCP port. A port that merely answers could belong to
 * someone else who took it between our choosing it and the service binding it.
 */
export function processListensOn(pid: number, port: number): boolean {
  const inodes = listeningInodes(port);
  if (inodes.size === 0) return false;
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return false;
  }
  return fds.some((fd) => {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      return target.startsWith('socket:[') && inodes.has(target.slice(8, -1));
    } catch {
      return false;
    }
  });
}
