import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { parseConfig, type BackendConfig } from '../../functions/core/config.js';
import { cycleReportSchema } from '../../functions/core/report-schema.js';

/**
 * The weighter of the real lab is the CLI itself, `haproxy-weighter run --json`, as a child
 * process: local mode, talking to HAProxy's admin socket and to Graphite (through the lab-clock
 * proxy). Its backend settings (window, aggregation, weighting function and factors, quorum) are
 * taken from `infra/example-config.yaml`, i.e. the shipped defaults, with times read as lab
 * seconds.
 */

export interface ExampleSettings {
  /** The first backend of the example config, as validated by the real schema. */
  readonly backend: BackendConfig;
  /** Seconds between cycles (lab seconds in the lab). */
  readonly intervalSeconds: number;
}

export function loadExampleSettings(path: string): ExampleSettings {
  const config = parseConfig(parseYaml(readFileSync(path, 'utf8')), path);
  const backend = config.backends[0];
  if (backend === undefined) throw new Error(`${path} has no backend`);
  return { backend, intervalSeconds: config.intervalSeconds };
}

/** Pure: seconds of a relative Graphite `from` such as `-60s` or `-5min`. */
export function windowSecondsOf(from: string): number {
  const m = /^-(\d{1,6})(s|sec|seconds?|min|minutes?|h|hours?|d|days?)$/.exec(from);
  if (m === null || m[1] === undefined || m[2] === undefined) throw new Error(`the lab needs a relative render window, got from: ${from}`);
  const unit = m[2];
  return Number(m[1]) * (unit.startsWith('mi') ? 60 : unit.startsWith('h') ? 3600 : unit.startsWith('d') ? 86_400 : 1);
}

export interface WeighterConfigInput {
  readonly graphiteUrl: string;
  readonly adminSocket: string;
  readonly backendName: string;
  /** Metric prefix of the sinks: the target is `aliasByNode(<prefix>.*.points_received, <server node>)`. */
  readonly prefix: string;
  readonly example: ExampleSettings;
}

/** Pure: the CLI configuration for the lab, as a plain object (JSON is YAML). */
export function weighterConfig(input: WeighterConfigInput): Record<string, unknown> {
  const serverNode = input.prefix.split('.').length;
  return {
    graphite: { url: input.graphiteUrl, auth: { type: 'none' }, timeoutMs: 2_000, retries: 1 },
    relay: { type: 'socket', loadBalancers: [{ name: 'lab', endpoint: input.adminSocket }], connectTimeoutMs: 1_000, readTimeoutMs: 2_000 },
    intervalSeconds: input.example.intervalSeconds,
    backends: [{ ...input.example.backend, name: input.backendName, target: `aliasByNode(${input.prefix}.*.points_received, ${serverNode})` }],
  };
}

export interface WeighterCycle {
  /** Wall-clock milliseconds the cycle started. */
  readonly startedMs: number;
  readonly outcome: string;
  readonly serversChanged: number;
  /** `planned`, or the reason the backend was skipped (e.g. `no-quorum` before data exists). */
  readonly plan: string;
  /** Weights in force after the cycle, by server. */
  readonly weights: Readonly<Record<string, number>>;
  /** The imbalance the weighter itself measured from Graphite. */
  readonly imbalance: number | null;
  /** The reload the weighter's report named, or null. */
  readonly reload: string | null;
  /** The rule that decided each server's weight. */
  readonly rules: Readonly<Record<string, string>>;
}

/** Pure: one line of `run --json` output as a cycle summary, or null for a line that is not a report. */
function parseCycleLine(line: string, backendName: string): WeighterCycle | null {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    return null;
  }
  const parsed = cycleReportSchema.safeParse(raw);
  if (!parsed.success) return null;
  const backend = parsed.data.backends.find((b) => b.backend === backendName);
  const plan = backend?.loadBalancers[0]?.plan;
  const weights: Record<string, number> = {};
  const rules: Record<string, string> = {};
  for (const action of plan?.actions ?? []) {
    weights[action.server] = action.kind === 'set-weight' && action.weight !== null ? action.weight : action.current;
    if (action.rule !== null) rules[action.server] = action.rule;
  }
  return {
    startedMs: Date.parse(parsed.data.startedAt),
    outcome: parsed.data.outcome,
    serversChanged: parsed.data.serversChanged,
    plan: plan === undefined ? 'none' : (plan.reason ?? plan.status),
    weights,
    imbalance: backend?.imbalance ?? null,
    reload: plan?.reload ?? null,
    rules,
  };
}

export interface Weighter {
  readonly pid: number;
  cycles(): readonly WeighterCycle[];
  /** The last lines of stderr, to explain a failure. */
  stderr(): string;
  hasExited(): boolean;
  /** SIGTERM (the CLI finishes its cycle), SIGKILL after 5 s; resolves with the exit code. */
  stop(): Promise<number | null>;
}

export interface StartWeighterOptions {
  readonly repoRoot: string;
  readonly configPath: string;
  readonly config: Record<string, unknown>;
  readonly backendName: string;
  /** Wall-clock seconds between cycles (the lab interval divided by the speedup). */
  readonly intervalWallSeconds: number;
}

const SETPRIV = '/usr/bin/setpriv';
const running = new Set<ChildProcess>();
let exitHook = false;

export function startWeighter(options: StartWeighterOptions): Weighter {
  writeFileSync(options.configPath, `${JSON.stringify(options.config, null, 2)}\n`, { mode: 0o600 });
  const args = ['--import', 'tsx', join(options.repoRoot, 'functions/cli/bin.ts'), 'run', '--config', options.configPath, '--interval', String(options.intervalWallSeconds), '--json'];
  // setpriv makes the kernel kill the weighter if the lab dies without cleaning up.
  const wrapped = existsSync(SETPRIV);
  const child = spawn(wrapped ? SETPRIV : process.execPath, wrapped ? ['--pdeathsig', 'KILL', '--', process.execPath, ...args] : args, {
    cwd: options.repoRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (child.pid === undefined) throw new Error('could not start the weighter CLI');
  running.add(child);
  if (!exitHook) {
    exitHook = true;
    process.once('exit', () => {
      for (const c of running) c.kill('SIGKILL');
    });
  }
  const cycles: WeighterCycle[] = [];
  let pending = '';
  let errTail = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    pending += chunk.toString('utf8');
    let nl = pending.indexOf('\n');
    while (nl !== -1) {
      const cycle = parseCycleLine(pending.slice(0, nl), options.backendName);
      if (cycle !== null) cycles.push(cycle);
      pending = pending.slice(nl + 1);
      nl = pending.indexOf('\n');
    }
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    errTail = (errTail + chunk.toString('utf8')).slice(-4_000);
  });
  child.on('error', (error) => {
    errTail = `${errTail}\n${error.message}`.slice(-4_000);
  });
  let code: number | null | undefined;
  const exited = new Promise<number | null>((resolve) => {
    child.once('close', (c) => {
      code = c;
      running.delete(child);
      resolve(c);
    });
  });
  return {
    pid: child.pid,
    cycles: () => cycles,
    stderr: () => errTail,
    hasExited: () => code !== undefined,
    stop: async () => {
      if (code !== undefined) return code;
      child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const killed = new Promise<null>((resolve) => {
        timer = setTimeout(() => {
          child.kill('SIGKILL');
          resolve(null);
        }, 5_000);
      });
      await Promise.race([exited, killed]);
      clearTimeout(timer);
      return exited;
    },
  };
}
