/**
 * Starts real HAProxy processes (Debian haproxy 2.6) for tests, one per emulated load balancer,
 * each in its own temp directory with an admin socket, an operator socket and optionally a TCP
 * runtime API. Every runtime command goes through the real `socat` binary, as in production.
 */
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import type { AdminState } from '../../functions/core/types.js';
import { freePorts, makeTempDir, removeTempDir, runCommand, spawnService, waitFor, type ServiceProcess } from './processes.js';

export const HAPROXY_BIN = '/usr/sbin/haproxy';
export const SOCAT_BIN = '/usr/bin/socat';

/** Balance algorithms a tcp-mode backend accepts; `source` is static unless `hashType` is consistent. */
export type HaproxyBalance = 'roundrobin' | 'static-rr' | 'leastconn' | 'first' | 'source' | 'random';

export interface ServerSpec {
  readonly name: string;
  /** Configured weight, 0..256 (default 100). */
  readonly weight?: number;
  /** `maint` is the `disabled` keyword; `drain` is set through the runtime API after every start. */
  readonly state?: AdminState;
  /** Where traffic goes (`host:port`); by default a loopback port nothing listens on (no checks). */
  readonly address?: string;
}

export interface BackendSpec {
  readonly name: string;
  readonly balance: HaproxyBalance;
  readonly hashType?: 'map-based' | 'consistent';
  readonly servers: readonly ServerSpec[];
  /** Also accept client connections: the backend becomes a `listen` section on a free loopback port. */
  readonly frontend?: boolean;
}

export interface HaproxyOptions {
  readonly backends: readonly BackendSpec[];
  /** Expose the runtime API at level admin on a free loopback TCP port as well. */
  readonly tcpRuntime?: boolean;
}

/** Which runtime endpoint a command is sent to. */
export type RuntimeSocket = 'admin' | 'operator' | 'tcp';

export interface ServerWeight {
  readonly current: number;
  readonly initial: number;
}

export interface HaproxyHandle {
  readonly dir: string;
  readonly configPath: string;
  readonly adminSocket: string;
  readonly operatorSocket: string;
  /** `127.0.0.1:<port>` of the admin-level TCP runtime API, when `tcpRuntime` was asked for. */
  readonly tcpEndpoint: string | undefined;
  /** Client port of every backend started with `frontend: true`, by backend name. */
  readonly frontendPorts: Readonly<Record<string, number>>;
  /** Pid of the current process; changes on reload(). */
  readonly pid: number;
  /** Sends one line (commands may be joined with `; `) through socat and returns the raw reply. */
  runtime(command: string, socket?: RuntimeSocket): Promise<string>;
  /** `get weight <backend>/<server>`, parsed strictly. */
  getWeight(backend: string, server: string): Promise<ServerWeight>;
  /** The server rows of `show stat <backend> 4 -1` by column name (`svname`, `status`, `weight`...). */
  showStat(backend: string): Promise<Record<string, string>[]>;
  /**
   * Stops and restarts HAProxy with the same sockets and ports, as a reload does: runtime weights
   * go back to the configuration and DRAIN servers are drained again. New `backends` replace the
   * configuration first (e.g. a server removed by a deploy).
   */
  reload(options?: { readonly backends?: readonly BackendSpec[] }): Promise<void>;
  /**
   * A soft reload, as an operator does it: `haproxy -sf <pid>` starts a new process that takes the
   * sockets and every new connection; the old one stops listening and keeps its connections until
   * they end. Resolves once the admin socket answers from the new process (its `show info` pid).
   */
  softReload(): Promise<void>;
  /** Kills HAProxy, waits for its exit and removes the temp directory. Safe to call twice. */
  stop(): Promise<void>;
}

/** Names end up in the config file and in runtime commands: HAProxy's own name characters, any length it takes. */
const NAME = /^[A-Za-z0-9_.:-]+$/;
const ADDRESS = /^[A-Za-z0-9_.-]+:\d{1,5}$/;
const START_ATTEMPTS = 3;
const SOCAT_TIMEOUT_MS = 10_000;

function checkName(kind: string, name: string): void {
  if (!NAME.test(name)) throw new Error(`invalid ${kind} name for the test HAProxy: ${JSON.stringify(name)}`);
}

function validate(backends: readonly BackendSpec[]): void {
  const seen = new Set<string>();
  for (const backend of backends) {
    checkName('backend', backend.name);
    if (seen.has(backend.name)) throw new Error(`duplicate backend ${backend.name}`);
    seen.add(backend.name);
    const servers = new Set<string>();
    for (const server of backend.servers) {
      checkName('server', server.name);
      if (servers.has(server.name)) throw new Error(`duplicate server ${backend.name}/${server.name}`);
      servers.add(server.name);
      const weight = server.weight ?? 100;
      if (!Number.isInteger(weight) || weight < 0 || weight > 256) throw new Error(`weight of ${backend.name}/${server.name} must be an integer in 0..256, got ${weight}`);
      if (server.address !== undefined && !ADDRESS.test(server.address)) throw new Error(`invalid address for ${backend.name}/${server.name}: ${server.address}`);
    }
  }
}

/** Loopback ports chosen for one HAProxy; they stay the same across reloads. */
export interface HaproxyPorts {
  readonly tcpRuntime: number | undefined;
  readonly frontends: Readonly<Record<string, number>>;
}

/** Pure: the configuration text for one HAProxy process. */
export function renderHaproxyConfig(dir: string, backends: readonly BackendSpec[], ports: HaproxyPorts): string {
  const lines = [
    'global',
    // Without this, two processes can share a loopback port silently (SO_REUSEPORT): a port taken
    // by someone else between choosing and binding it must fail the start instead.
    '    noreuseport',
    `    stats socket ${join(dir, 'admin.sock')} mode 600 level admin`,
    `    stats socket ${join(dir, 'operator.sock')} mode 600 level operator`,
  ];
  if (ports.tcpRuntime !== undefined) lines.push(`    stats socket ipv4@127.0.0.1:${ports.tcpRuntime} level admin`);
  lines.push(
    '    stats timeout 30s',
    '',
    'defaults',
    '    mode tcp',
    '    timeout connect 2s',
    // Long-lived connections are the subject of this product: idle timeouts must not end them.
    '    timeout client 1h',
    '    timeout server 1h',
  );
  let nextDeadPort = 1;
  for (const backend of backends) {
    const frontendPort = ports.frontends[backend.name];
    lines.push('', `${frontendPort === undefined ? 'backend' : 'listen'} ${backend.name}`);
    if (frontendPort !== undefined) lines.push(`    bind 127.0.0.1:${frontendPort}`);
    lines.push(`    balance ${backend.balance}`);
    if (backend.hashType !== undefined) lines.push(`    hash-type ${backend.hashType}`);
    for (const server of backend.servers) {
      const address = server.address ?? `127.0.0.1:${nextDeadPort++}`;
      const disabled = server.state === 'maint' ? ' disabled' : '';
      lines.push(`    server ${server.name} ${address} weight ${server.weight ?? 100}${disabled}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

const WEIGHT_REPLY = /^(\d{1,3}) \(initial (\d{1,3})\)\n\n?$/;

/** Pure: the reply of `get weight`, or an error that quotes it. */
export function parseGetWeight(reply: string): ServerWeight {
  const match = WEIGHT_REPLY.exec(reply);
  if (match === null || match[1] === undefined || match[2] === undefined) {
    throw new Error(`unexpected reply to get weight: ${JSON.stringify(reply)}`);
  }
  return { current: Number.parseInt(match[1], 10), initial: Number.parseInt(match[2], 10) };
}

/**
 * Pure: the server rows of `show stat <backend> 4 -1`, keyed by the CSV header's column names, so
 * that tests assert on what HAProxy reports without going through the product's own parser.
 */
export function parseShowStat(reply: string): Record<string, string>[] {
  const lines = reply.split('\n').filter((line) => line !== '');
  const header = lines[0];
  if (header === undefined || !header.startsWith('# ')) throw new Error(`unexpected reply to show stat: ${JSON.stringify(reply.slice(0, 200))}`);
  const columns = header.slice(2).split(',');
  return lines.slice(1).map((line) => {
    const cells = line.split(',');
    return Object.fromEntries(columns.map((column, i) => [column, cells[i] ?? '']));
  });
}

/** Sends one command to the Unix socket; resolves true once it answers a reply `accepts`, undefined otherwise. */
async function answers(path: string, command: string, accepts: (reply: string) => boolean): Promise<true | undefined> {
  return new Promise((resolve) => {
    const socket = connect({ path });
    let reply = '';
    socket.setTimeout(1_000, () => socket.destroy());
    socket.on('data', (chunk: Buffer) => {
      reply += chunk.toString('utf8');
    });
    socket.once('error', () => resolve(undefined));
    socket.once('close', () => resolve(accepts(reply) ? true : undefined));
    socket.end(`${command}\n`);
  });
}

/** Resolves once the Unix socket answers `show info` from the process with this pid. */
const answersAsPid = (path: string, pid: number): Promise<true | undefined> => answers(path, 'show info', (reply) => new RegExp(`^Pid: ${pid}$`, 'm').test(reply));

/** Resolves once the Unix socket accepts a connection and answers a command. */
const socketAnswers = (path: string): Promise<true | undefined> => answers(path, 'show version', (reply) => reply.includes('HAProxy') || /^\d/.test(reply));

/** Sends commands through `socat -t2 stdio <address>`; never `socat stdio <path>` (DESIGN §4). */
async function socat(address: string, command: string): Promise<string> {
  const result = await runCommand(SOCAT_BIN, ['-t2', 'stdio', address], { input: `${command}\n`, timeoutMs: SOCAT_TIMEOUT_MS });
  if (result.code !== 0) {
    throw new Error(`socat ${address} failed (exit ${String(result.code ?? result.signal)}): ${result.stderr.trim()}`);
  }
  return result.stdout;
}

export async function startHaproxy(options: HaproxyOptions): Promise<HaproxyHandle> {
  validate(options.backends);
  const dir = makeTempDir('hw-haproxy');
  const configPath = join(dir, 'haproxy.cfg');
  const adminSocket = join(dir, 'admin.sock');
  const operatorSocket = join(dir, 'operator.sock');
  let backends = options.backends;
  let ports: HaproxyPorts = { tcpRuntime: undefined, frontends: {} };
  let service: ServiceProcess | undefined;
  /** Processes a soft reload left holding their connections. */
  const retired: ServiceProcess[] = [];
  let stopped = false;

  const pickPorts = async (): Promise<HaproxyPorts> => {
    const names = backends.filter((b) => b.frontend === true).map((b) => b.name);
    const wanted = names.length + (options.tcpRuntime === true ? 1 : 0);
    const free = await freePorts(wanted);
    const frontends: Record<string, number> = {};
    names.forEach((name, i) => {
      const port = free[i];
      if (port !== undefined) frontends[name] = port;
    });
    return { tcpRuntime: options.tcpRuntime === true ? free[names.length] : undefined, frontends };
  };

  const drainServers = async (): Promise<void> => {
    const commands = backends.flatMap((b) => b.servers.filter((s) => s.state === 'drain').map((s) => `set server ${b.name}/${s.name} state drain`));
    if (commands.length === 0) return;
    const reply = await socat(`UNIX-CONNECT:${adminSocket}`, commands.join('; '));
    if (reply.trim() !== '') throw new Error(`could not drain servers: ${JSON.stringify(reply)}`);
  };

  /** One start with the current ports; resolves with the running process or rejects with its output. */
  const launch = async (): Promise<ServiceProcess> => {
    writeFileSync(configPath, renderHaproxyConfig(dir, backends, ports));
    const started = spawnService('haproxy', HAPROXY_BIN, ['-db', '-f', configPath], { cwd: dir });
    try {
      await waitFor(`HAProxy admin socket ${adminSocket}`, () => socketAnswers(adminSocket), {
        timeoutMs: 15_000,
        intervalMs: 25,
        abortIf: () => (started.hasExited() ? `haproxy exited during start:\n${started.output()}` : undefined),
      });
      await drainServers();
      return started;
    } catch (error) {
      await started.stop();
      throw error;
    }
  };

  /** Retries with fresh ports when another process took one of ours between choosing and binding. */
  const launchWithFreshPorts = async (): Promise<ServiceProcess> => {
    let lastError: unknown;
    for (let attempt = 0; attempt < START_ATTEMPTS; attempt++) {
      ports = await pickPorts();
      try {
        return await launch();
      } catch (error) {
        lastError = error;
        if (!(error instanceof Error) || !error.message.includes('cannot bind')) break;
      }
    }
    throw lastError;
  };

  try {
    service = await launchWithFreshPorts();
  } catch (error) {
    removeTempDir(dir);
    throw error;
  }

  const current = (): ServiceProcess => {
    if (stopped || service === undefined) throw new Error(`HAProxy in ${dir} is not running`);
    return service;
  };

  const addressOf = (socket: RuntimeSocket): string => {
    if (socket === 'admin') return `UNIX-CONNECT:${adminSocket}`;
    if (socket === 'operator') return `UNIX-CONNECT:${operatorSocket}`;
    if (ports.tcpRuntime === undefined) throw new Error('this HAProxy was started without tcpRuntime');
    return `TCP:127.0.0.1:${ports.tcpRuntime}`;
  };

  const handle: HaproxyHandle = {
    dir,
    configPath,
    adminSocket,
    operatorSocket,
    get tcpEndpoint() {
      return ports.tcpRuntime === undefined ? undefined : `127.0.0.1:${ports.tcpRuntime}`;
    },
    get frontendPorts() {
      return ports.frontends;
    },
    get pid() {
      return current().pid;
    },
    runtime: async (command, socket = 'admin') => socat(addressOf(socket), command),
    getWeight: async (backend, server) => {
      checkName('backend', backend);
      checkName('server', server);
      return parseGetWeight(await socat(addressOf('admin'), `get weight ${backend}/${server}`));
    },
    showStat: async (backend) => {
      checkName('backend', backend);
      return parseShowStat(await socat(addressOf('admin'), `show stat ${backend} 4 -1`));
    },
    reload: async (reloadOptions) => {
      const running = current();
      if (reloadOptions?.backends !== undefined) {
        validate(reloadOptions.backends);
        const frontendsBefore = backends.filter((b) => b.frontend === true).map((b) => b.name).join(',');
        const frontendsAfter = reloadOptions.backends.filter((b) => b.frontend === true).map((b) => b.name).join(',');
        if (frontendsBefore !== frontendsAfter) throw new Error('reload cannot add or remove frontends');
        backends = reloadOptions.backends;
      }
      await running.stop();
      service = undefined;
      service = await launch();
    },
    softReload: async () => {
      const old = current();
      const next = spawnService('haproxy', HAPROXY_BIN, ['-db', '-f', configPath, '-sf', String(old.pid)], { cwd: dir });
      try {
        await waitFor(`HAProxy admin socket answering from the new process ${next.pid}`, () => answersAsPid(adminSocket, next.pid), {
          timeoutMs: 15_000,
          intervalMs: 25,
          abortIf: () => (next.hasExited() ? `the new haproxy exited during a soft reload:\n${next.output()}` : undefined),
        });
      } catch (error) {
        await next.stop();
        throw error;
      }
      retired.push(old);
      service = next;
    },
    stop: async () => {
      if (stopped) return;
      stopped = true;
      await Promise.all([service?.stop(), ...retired.map((p) => p.stop())]);
      service = undefined;
      removeTempDir(dir);
    },
  };
  return handle;
}

/** n emulated load balancers with the same configuration, each its own process and sockets. */
export async function startHaproxyFleet(count: number, options: HaproxyOptions): Promise<HaproxyHandle[]> {
  const results = await Promise.allSettled(Array.from({ length: count }, () => startHaproxy(options)));
  const handles = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failure !== undefined) {
    await Promise.all(handles.map((h) => h.stop()));
    throw failure.reason;
  }
  return handles;
}

/** Stops every handle even when some fail to stop; rethrows the first failure. */
export async function stopAll(handles: readonly { stop(): Promise<void> }[]): Promise<void> {
  const results = await Promise.allSettled(handles.map((h) => h.stop()));
  const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failure !== undefined) throw failure.reason;
}

/** The current weight of each of `servers` in `backend`, by server name. */
export async function currentWeights(handle: HaproxyHandle, backend: string, servers: readonly string[]): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const s of servers) out[s] = (await handle.getWeight(backend, s)).current;
  return out;
}

/** Sets each of `servers` in `backend` back to weight 100 on every handle: the state a test starts from. */
export async function resetWeights(handles: readonly HaproxyHandle[], backend: string, servers: readonly string[]): Promise<void> {
  await Promise.all(handles.map((h) => h.runtime(servers.map((s) => `set server ${backend}/${s} weight 100`).join('; '))));
}
