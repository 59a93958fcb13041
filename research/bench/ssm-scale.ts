/**
 * Fleet-scale benchmark of the SSM path: one apply cycle (every weight changes) through the local
 * SSM endpoint with realistic latency (API calls 10-40 ms, a command 1-3 s to complete, seeded),
 * for 1, 5 and 20 backends of 500 servers on 3 and on 50 load balancers, with the code on main
 * before this work (BEFORE, taken from git) and the code of this tree (AFTER, with the S3 output
 * bucket), run in the same process, scenario by scenario, so both see the same machine.
 *
 * What it measures is the SSM path: Graphite is replaced by an in-process metric source that
 * returns one fixed series per server (every load differs, so every weight changes). HAProxy is
 * real: 50 emulated instances share 3 HAProxy processes to save CPU (instance i uses process
 * i mod 3), but the document runs once per instance, with bash, socat, awk and gzip, as the agent
 * would run it. All of that runs on this machine's cores, where on AWS each instance has its own.
 *
 * Per relay call (observe, write, read-back) it prints where the time went: when each command was
 * sent after the call began (a command waits for a slot when more than relay.maxConcurrentCommands
 * are due), the latest an instance's document ended, and the latest the emulated command latency
 * allowed an invocation to be final; and the CPU this process spent outside relay calls (the
 * weighter's own planning and parsing, no emulation).
 *
 * --diagnostic-shared-runs is a DIAGNOSTIC, not a figure of the product: instances that share a
 * HAProxy process share one run of each command's document, so that the instances' document CPU
 * (on AWS each instance's own) mostly leaves this machine's 2 cores. It shows what the cycle
 * takes when that CPU is not the bottleneck.
 *
 * --max-concurrent-commands sets relay.maxConcurrentCommands (the product's default otherwise).
 *
 * Usage: npm run bench:ssm -- [--before <commit>] [--scenarios 1x3,5x3,20x3,1x50,5x50,20x50] [--only before|after] [--diagnostic-shared-runs] [--max-concurrent-commands <n>] [--out <file.md>]
 */
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { RuntimeRelay, MetricSource, Series } from '../../functions/core/types.js';
import type { BackendSpec } from '../../test/harness/haproxy.js';
import { startSsmFleet, type SsmFleet } from '../../test/ssm-endpoint/fleet.js';
import { extractRevision } from './git-tree.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SERVERS = 500;
/** The commit main was at when this work started: the BEFORE code. */
const DEFAULT_BEFORE = '73857c5';

const { values } = parseArgs({
  options: {
    before: { type: 'string', default: DEFAULT_BEFORE },
    scenarios: { type: 'string', default: '1x3,5x3,20x3,1x50,5x50,20x50' },
    only: { type: 'string' },
    out: { type: 'string' },
    'diagnostic-shared-runs': { type: 'boolean', default: false },
    'max-concurrent-commands': { type: 'string' },
  },
});

interface Scenario {
  readonly backends: number;
  readonly loadBalancers: number;
}

const scenarios: Scenario[] = (values.scenarios ?? '').split(',').map((s) => {
  const m = /^(\d+)x(\d+)$/.exec(s.trim());
  if (m === null) throw new Error(`scenario ${s}: expected <backends>x<load balancers>`);
  return { backends: Number(m[1]), loadBalancers: Number(m[2]) };
});

interface CodeUnderTest {
  readonly label: 'before' | 'after';
  readonly root: string;
  readonly useOutputBucket: boolean;
}

interface Figures {
  readonly wallMs: number;
  /** CPU of this process (the weighter, the emulated SSM and S3 APIs, the SDK clients). */
  readonly selfCpuS: number;
  /** CPU of the documents run for the emulated instances (bash, socat, awk, gzip...): on AWS, each instance's own. */
  readonly instanceCpuS: number;
  readonly outcome: string;
  readonly serversChanged: number;
  /** CPU of this process outside relay calls: the weighter's own work (planning, parsing, reports), no emulation. */
  readonly weighterCpuS: number;
  readonly observeSends: number;
  readonly writeSends: number;
  readonly lists: number;
  readonly polls: number;
  readonly otherSsm: number;
  readonly s3Gets: number;
  readonly throttled: number;
  readonly problems: readonly string[];
  readonly phases: readonly string[];
}

/** CPU seconds of this process's finished children (cutime + cstime of /proc/self/stat, 100 ticks a second). */
function childrenCpuS(): number {
  const fields = readFileSync('/proc/self/stat', 'utf8').replace(/^.*\) /, '').split(' ');
  return (Number(fields[13]) + Number(fields[14])) / 100;
}

/** The BEFORE tree: `git archive` of the commit into a temp dir, sharing this tree's node_modules. */
function checkout(commit: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'hw-bench-before-'));
  extractRevision(ROOT, commit, dir, ['functions', 'infra']);
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  return dir;
}

const serverNames = Array.from({ length: SERVERS }, (_, i) => `ingest-${String(i + 1).padStart(3, '0')}.eu-west-1.internal`);

/** One series per server; loads 1000..1499 give weights far from the configured 100. */
function metricsSource(): MetricSource {
  return {
    render: async (): Promise<readonly Series[]> => serverNames.map((name, i) => ({ name, values: [1000 + i] })),
  };
}

async function runOne(code: CodeUnderTest, scenario: Scenario): Promise<Figures> {
  const backends: BackendSpec[] = Array.from({ length: scenario.backends }, (_, b) => ({ name: `be_${b}`, balance: 'leastconn', servers: serverNames.map((name) => ({ name })) }));
  const fleet: SsmFleet = await startSsmFleet(scenario.loadBalancers, backends, {
    haproxies: Math.min(3, scenario.loadBalancers),
    s3: code.useOutputBucket,
    documentPath: join(code.root, 'infra/ssm-document.yaml'),
    latency: { apiMs: [10, 40], commandMs: [1_000, 3_000], seed: 42 },
    maxAttempts: 6,
    diagnosticShareRuns: values['diagnostic-shared-runs'] === true,
  });
  try {
    const load = async <T>(path: string): Promise<T> => (await import(pathToFileURL(join(code.root, path)).href)) as T;
    const { parseConfig } = await load<{ parseConfig: (input: unknown) => { relay: unknown } }>('functions/core/config.ts');
    const { runCycle } = await load<{
      runCycle: (deps: unknown, options: unknown) => Promise<{ outcome: string; serversChanged: number; problems: readonly unknown[]; loadBalancers: readonly { error?: string | null }[] }>;
    }>('functions/core/cycle.ts');
    const { createSsmRelayFor } = await load<{ createSsmRelayFor: (settings: unknown, ids: readonly string[], options: unknown) => RuntimeRelay }>('functions/adapters/ssm-relay.ts');
    const config = parseConfig({
      graphite: { url: 'http://127.0.0.1:9/' },
      // The product's defaults (poll every second, growing to 8 s), not the tests' fast polling.
      relay: {
        type: 'ssm',
        documentName: fleet.settings.documentName,
        socketPath: fleet.settings.socketPath,
        targets: { instanceIds: [...fleet.instanceIds] },
        ...(values['max-concurrent-commands'] === undefined ? {} : { maxConcurrentCommands: Number(values['max-concurrent-commands']) }),
      },
      backends: backends.map((b) => ({ name: b.name, target: `${b.name}.*.load`, weighting: { function: 'limited-proportions' } })),
    });
    const concurrency = (config.relay as { maxConcurrentCommands?: number }).maxConcurrentCommands;
    const inner = createSsmRelayFor(config.relay, fleet.instanceIds, {
      api: fleet.api,
      ...(code.useOutputBucket && fleet.output !== undefined ? { output: fleet.output } : {}),
      ...(concurrency === undefined ? {} : { maxConcurrentCommands: concurrency }),
    });
    // Timed per call (observe, write, read-back...), to see where a cycle spends its time.
    const phases: string[] = [];
    let relayCpuUs = 0;
    const relay: RuntimeRelay = {
      ...inner,
      loadBalancers: inner.loadBalancers,
      run: async (requests, options) => {
        const t = Date.now();
        const cpu = process.cpuUsage();
        const out = await inner.run(requests, options);
        const used = process.cpuUsage(cpu);
        relayCpuUs += used.user + used.system;
        const end = Date.now();
        const kind = requests.some((r) => r.commands.some((c) => c.startsWith('show stat '))) ? 'observe' : 'write';
        const mine = fleet.endpoint.invocations().filter((i) => i.sentAt >= t && i.sentAt <= end);
        const sentAt = new Map<string, number>();
        for (const i of mine) sentAt.set(i.commandId, Math.min(sentAt.get(i.commandId) ?? i.sentAt, i.sentAt));
        const sends = [...sentAt.values()].sort((a, b) => a - b).map((at) => ((at - t) / 1000).toFixed(1));
        const at = (ms: number): string => `${((ms - t) / 1000).toFixed(1)} s`;
        const docsEnd = Math.max(t, ...mine.map((i) => i.endedAt ?? end));
        const floor = Math.max(t, ...mine.map((i) => i.readyAt));
        phases.push(`${kind} ${((end - t) / 1000).toFixed(1)} s (commands sent at ${sends.join(', ')} s; last document ended at ${at(docsEnd)}; latency allowed the last at ${at(floor)})`);
        return out;
      },
    };
    const before = fleet.endpoint.calls.length;
    const s3Before = fleet.s3?.requests.length ?? 0;
    const cpuBefore = process.cpuUsage();
    const childrenBefore = childrenCpuS() + fleet.endpoint.agentsCpuSeconds();
    const started = performance.now();
    const report = await runCycle({ config, metrics: metricsSource(), relay, now: Date.now, version: 'bench' }, { mode: 'apply' });
    const wallMs = performance.now() - started;
    const cpu = process.cpuUsage(cpuBefore);
    const selfCpuS = (cpu.user + cpu.system) / 1e6;
    const weighterCpuS = selfCpuS - relayCpuUs / 1e6;
    const instanceCpuS = childrenCpuS() + fleet.endpoint.agentsCpuSeconds() - childrenBefore;
    const calls = fleet.endpoint.calls.slice(before);
    const sends = calls.filter((c) => c.operation === 'SendCommand' && c.status === 200);
    // Observation is the commands that hold `show stat`; the state reads that lead writes belong to the writes.
    const isWrite = (body: unknown): boolean => !JSON.stringify(body).includes('show stat ');
    return {
      wallMs,
      selfCpuS,
      instanceCpuS,
      weighterCpuS,
      outcome: report.outcome,
      serversChanged: report.serversChanged,
      observeSends: sends.filter((c) => !isWrite(c.body)).length,
      writeSends: sends.filter((c) => isWrite(c.body)).length,
      lists: calls.filter((c) => c.operation === 'ListCommandInvocations').length,
      polls: calls.filter((c) => c.operation === 'GetCommandInvocation').length,
      otherSsm: calls.filter((c) => !['GetCommandInvocation', 'ListCommandInvocations'].includes(c.operation) && !(c.operation === 'SendCommand' && c.status === 200)).length,
      s3Gets: (fleet.s3?.requests.slice(s3Before) ?? []).filter((r) => r.method === 'GET').length,
      throttled: calls.filter((c) => c.error === 'ThrottlingException').length,
      phases,
      problems: [...report.problems.map((p) => (typeof p === 'string' ? p : JSON.stringify(p))), ...new Set(report.loadBalancers.flatMap((l) => (typeof l.error === 'string' ? [l.error.replace(/i-[0-9a-f]+/g, 'i-…').replace(/[0-9a-f-]{36}/g, '<id>')] : [])))],
    };
  } finally {
    await fleet.stop();
  }
}

const codes: CodeUnderTest[] = [];
let beforeRoot: string | undefined;
if (values.only !== 'after') {
  beforeRoot = checkout(values.before ?? DEFAULT_BEFORE);
  codes.push({ label: 'before', root: beforeRoot, useOutputBucket: false });
}
if (values.only !== 'before') codes.push({ label: 'after', root: resolve(ROOT), useOutputBucket: true });

const rows: string[] = [];
const header =
  '| backends × 500 servers | load balancers | code | cycle wall time (s) | SendCommand observe | SendCommand write | ListCommandInvocations | GetCommandInvocation | other SSM calls | S3 GetObject | throttled | outcome | servers changed | weighter + emulated APIs CPU (s) | of which outside relay calls (s) | instance documents CPU (s) |';
rows.push(header, `|${'---|'.repeat(16)}`);
const walls = new Map<string, number>();
/** Per run: the time of each relay call (observe, write, read-back) and what went wrong, if anything. */
const notes: string[] = [];
try {
  for (const scenario of scenarios) {
    for (const code of codes) {
      const f = await runOne(code, scenario);
      walls.set(`${scenario.backends}x${scenario.loadBalancers}/${code.label}`, f.wallMs);
      const row = `| ${scenario.backends} | ${scenario.loadBalancers} | ${code.label} | ${(f.wallMs / 1000).toFixed(1)} | ${f.observeSends} | ${f.writeSends} | ${f.lists} | ${f.polls} | ${f.otherSsm} | ${f.s3Gets} | ${f.throttled} | ${f.outcome} | ${f.serversChanged} | ${f.selfCpuS.toFixed(1)} | ${f.weighterCpuS.toFixed(1)} | ${f.instanceCpuS.toFixed(1)} |`;
      rows.push(row);
      console.log(row);
      console.log(`    phases: ${f.phases.join(', ')}`);
      if (f.problems.length > 0) console.log(`    problems: ${f.problems.slice(0, 3).join(' | ').slice(0, 400)}`);
      notes.push(`- ${scenario.backends}x${scenario.loadBalancers} ${code.label}: ${f.phases.join(', ')}${f.problems.length > 0 ? `; ${f.problems.slice(0, 2).join(' | ').slice(0, 300)}` : ''}`);
    }
  }
} finally {
  if (beforeRoot !== undefined) rmSync(beforeRoot, { recursive: true, force: true });
}

const ratios = scenarios.flatMap((s) => {
  const b = walls.get(`${s.backends}x${s.loadBalancers}/before`);
  const a = walls.get(`${s.backends}x${s.loadBalancers}/after`);
  return b === undefined || a === undefined ? [] : [`| ${s.backends} | ${s.loadBalancers} | ${(b / a).toFixed(1)}× |`];
});
const text = [
  `# bench:ssm — ${new Date().toISOString().slice(0, 10)}`,
  '',
  `\`npm run bench:ssm\` (${process.argv.slice(2).join(' ') || 'defaults'})${values['diagnostic-shared-runs'] === true ? ' — DIAGNOSTIC: instances sharing a HAProxy process share one run of each document, so the instances\' document CPU is mostly absent; not a figure of the product' : ''}: one apply cycle in which every weight changes, through the local SSM endpoint with realistic latency (API calls 10-40 ms, a command 1-3 s, seed 42), real HAProxy 2.6 (50 instances share 3 processes; the document runs once per instance), Graphite replaced by fixed loads. BEFORE = git ${values.before ?? DEFAULT_BEFORE}, AFTER = this tree with the S3 output bucket. Measured on ${cpus().length} cores shared with other work (load average ${loadavg()[0]?.toFixed(1) ?? '?'} at the end).`,
  '',
  ...rows,
  '',
  ...(ratios.length > 0 ? ['| backends | load balancers | before / after wall time |', '|---|---|---|', ...ratios, ''] : []),
  'Time per relay call (a write after an unknown outcome is followed by a read-back, which shows as another observe):',
  '',
  ...notes,
  '',
].join('\n');
console.log(`\n${text}`);
if (values.out !== undefined) writeFileSync(values.out, `${text}\n`);
