/**
 * Soak: the real CLI (`haproxy-weighter run --json`) for at least a thousand cycles at a short
 * interval against a real lab: 3 HAProxy processes (two backends each), each behind a socket proxy
 * that drops, hangs, cuts or closes a few connections, a real Graphite behind the fault proxy
 * (errors, slowness, resets, garbage), HAProxy reloads, and loads that change every few seconds.
 * Every fault decision comes from a seeded generator (the interleaving of the processes is not
 * reproducible, the fault mix is).
 *
 * Checked, and printed to stdout and research/soak/results.md:
 * - every cycle reported: cycles run (Graphite requests of the first backend: one per cycle,
 *   retries are off) equal the reports printed, and every report parses whole;
 * - weights lost or wrongly changed: each report's observed weights must equal what the previous
 *   report said each HAProxy holds (excused only across a reload of that HAProxy, which resets
 *   weights to the configuration), and at the end every HAProxy holds exactly what the last
 *   report says;
 * - open file descriptors and sockets of the CLI process (/proc/<pid>/fd), its RSS
 *   (/proc/<pid>/status) and its live heap after a full GC (research/soak/heap-probe.ts, loaded with
 *   --import), at the start and at the end.
 *
 * Usage: npx tsx research/soak/run.ts [--cycles 1000] [--seed 1] [--interval 0.1] [--out FILE]
 * Exits 0 when every invariant holds, 1 otherwise.
 */
import { existsSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import type { CycleReport } from '../../functions/core/cycle.js';
import {
  REPO_ROOT,
  parseCycleReport,
  rewriteSeries,
  startCli,
  startGraphiteFaultProxy,
  startSocketProxy,
  writeConfigFile,
  type CliProcess,
  type ConnectionFault,
  type GraphiteFault,
  type GraphiteFaultProxy,
  type SocketProxy,
} from '../../test/harness/faults.js';
import { startGraphite, uniquePrefix, writeAndWait, type GraphiteHandle } from '../../test/harness/graphite.js';
import { startHaproxyFleet, stopAll, type BackendSpec, type HaproxyHandle } from '../../test/harness/haproxy.js';
import { makeTempDir, removeTempDir } from '../../test/harness/processes.js';
import { uniform, type Uniform } from '../lab/random.js';

const { values: opts } = parseArgs({
  options: {
    cycles: { type: 'string', default: '1000' },
    seed: { type: 'string', default: '1' },
    // The CLI's shortest interval.
    interval: { type: 'string', default: '0.1' },
    out: { type: 'string', default: join(REPO_ROOT, 'research', 'soak', 'results.md') },
  },
});
const CYCLES = Number(opts.cycles);
const SEED = Number(opts.seed);
const INTERVAL = Number(opts.interval);
if (!Number.isInteger(CYCLES) || CYCLES < 1 || !Number.isInteger(SEED) || !(INTERVAL >= 0.1)) {
  throw new Error('usage: --cycles N (>= 1) --seed N --interval SECONDS (>= 0.1)');
}

const LOAD_BALANCERS = 3;
const BACKENDS: readonly BackendSpec[] = [
  { name: 'be_a', balance: 'leastconn', servers: ['a1', 'a2', 'a3', 'a4'].map((name) => ({ name })) },
  { name: 'be_b', balance: 'roundrobin', servers: ['b1', 'b2', 'b3'].map((name) => ({ name, weight: 50 })) },
];
/** Cycles before the start figures are taken: module loading and JIT are not leaks. */
const WARM_UP_CYCLES = Math.min(50, Math.floor(CYCLES / 10));
/** Consecutive clean cycles wanted after the faults stop, before SIGTERM. */
const SETTLE_CYCLES = 5;

// ---------------------------------------------------------------------------------------------
// Fault schedules (seeded)
// ---------------------------------------------------------------------------------------------

function pick<T>(u: Uniform, table: readonly (readonly [number, T])[]): T {
  const total = table.reduce((sum, [w]) => sum + w, 0);
  let x = u() * total;
  for (const [w, value] of table) {
    x -= w;
    if (x < 0) return value;
  }
  const last = table[table.length - 1];
  if (last === undefined) throw new Error('empty table');
  return last[1];
}

const truncate = (body: string): string => body.slice(0, Math.floor(body.length / 2));
const nullAll = (body: string): string => rewriteSeries(body, (s) => s.map((x) => ({ ...x, datapoints: x.datapoints.map(([, t]) => [null, t]) })));

const GRAPHITE_FAULTS: readonly (readonly [number, GraphiteFault])[] = [
  [50, { kind: 'pass' }],
  [8, { kind: 'status', status: 500, count: 3 }],
  [5, { kind: 'status', status: 502, count: 2 }],
  [5, { kind: 'status', status: 429, count: 2 }],
  [8, { kind: 'delay', ms: 900 }],
  [7, { kind: 'delay', ms: 150 }],
  [4, { kind: 'reset' }],
  [4, { kind: 'body', body: '<html><body>maintenance</body></html>', contentType: 'text/html' }],
  [5, { kind: 'rewrite', rewrite: truncate }],
  [4, { kind: 'rewrite', rewrite: nullAll }],
];

function connectionPolicy(u: Uniform): (request: string) => ConnectionFault {
  return () =>
    pick<ConnectionFault>(u, [
      [88, { kind: 'pass' }],
      [3, { kind: 'drop' }],
      [2, { kind: 'hang' }],
      [3, { kind: 'close-before-reply' }],
      [2, { kind: 'close-after-reply-bytes', bytes: Math.floor(u() * 200) }],
      [2, { kind: 'cut-request', commands: 1 }],
    ]);
}

// ---------------------------------------------------------------------------------------------
// Process figures from /proc
// ---------------------------------------------------------------------------------------------

interface ProcSample {
  readonly at: number;
  readonly reports: number;
  readonly fds: number;
  readonly sockets: number;
  readonly rssKb: number;
}

function procSample(pid: number, reports: number): ProcSample | undefined {
  try {
    const entries = readdirSync(`/proc/${pid}/fd`);
    let sockets = 0;
    for (const fd of entries) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:')) sockets++;
      } catch {
        // The descriptor closed between listing and reading it.
      }
    }
    const rss = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return { at: Date.now(), reports, fds: entries.length, sockets, rssKb: Number(rss?.[1] ?? NaN) };
  } catch {
    return undefined;
  }
}

interface HeapSample {
  readonly at: number;
  readonly heapUsed: number;
  readonly rss: number;
}

function readHeapSamples(file: string): HeapSample[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .flatMap((l) => {
      const doc: unknown = JSON.parse(l);
      if (typeof doc !== 'object' || doc === null) return [];
      const at: unknown = Reflect.get(doc, 'at');
      const heapUsed: unknown = Reflect.get(doc, 'heapUsed');
      const rss: unknown = Reflect.get(doc, 'rss');
      return typeof at === 'number' && typeof heapUsed === 'number' && typeof rss === 'number' ? [{ at, heapUsed, rss }] : [];
    });
}

// ---------------------------------------------------------------------------------------------
// The weight invariant
// ---------------------------------------------------------------------------------------------

/** Weights a report saw on a load balancer before acting (only where it observed them). */
function observedWeights(report: CycleReport, lb: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const b of report.backends) {
    const entry = b.loadBalancers.find((l) => l.loadBalancer === lb);
    for (const a of entry?.plan.actions ?? []) out.set(`${b.backend}/${a.server}`, a.current);
  }
  return out;
}

/** What a report says a load balancer holds after the cycle; null where it cannot know. */
function heldWeights(report: CycleReport, lb: string): Map<string, number | null> {
  const out = new Map<string, number | null>();
  for (const b of report.backends) {
    const entry = b.loadBalancers.find((l) => l.loadBalancer === lb);
    if (entry === undefined) continue;
    const failed = new Map(entry.apply.failed.map((f) => [f.server, f] as const));
    const written = entry.apply.status === 'applied' || entry.apply.status === 'failed';
    for (const a of entry.plan.actions) {
      const key = `${b.backend}/${a.server}`;
      if (!written || a.kind !== 'set-weight' || a.weight === null) {
        out.set(key, a.current);
        continue;
      }
      const failure = failed.get(a.server);
      if (failure === undefined) {
        out.set(key, a.weight);
        continue;
      }
      // HAProxy refused the weight: it kept the current one. A batch that failed as a whole: what
      // the read-back found, if anything.
      out.set(key, failure.code === 'weight-refused' ? a.current : failure.heldWeight);
    }
  }
  return out;
}

interface Mismatch {
  readonly report: number;
  readonly loadBalancer: string;
  readonly server: string;
  readonly expected: number;
  readonly observed: number;
}

class WeightLedger {
  private readonly expected = new Map<string, Map<string, number | null>>();
  private previousStart: number | undefined;
  comparisons = 0;
  excusedByReload = 0;
  unknownAfterFailure = 0;
  readonly mismatches: Mismatch[] = [];

  constructor(private readonly loadBalancers: readonly string[]) {}

  add(report: CycleReport, index: number, reloads: readonly Reload[]): void {
    const start = Date.parse(report.startedAt);
    const end = start + report.durationMs;
    const windowStart = this.previousStart ?? start;
    for (const lb of this.loadBalancers) {
      const mine = this.expected.get(lb) ?? new Map<string, number | null>();
      this.expected.set(lb, mine);
      const reloaded = reloads.some((r) => r.loadBalancer === lb && r.start <= end && (r.end ?? Infinity) >= windowStart);
      if (reloaded) {
        this.excusedByReload++;
        mine.clear();
      } else {
        for (const [server, observed] of observedWeights(report, lb)) {
          const expected = mine.get(server);
          if (expected === undefined) continue;
          if (expected === null) {
            this.unknownAfterFailure++;
            continue;
          }
          this.comparisons++;
          if (expected !== observed) this.mismatches.push({ report: index, loadBalancer: lb, server, expected, observed });
        }
      }
      for (const [server, held] of heldWeights(report, lb)) mine.set(server, held);
    }
    this.previousStart = start;
  }
}

interface Reload {
  readonly loadBalancer: string;
  readonly start: number;
  end: number | undefined;
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

async function feedLoads(graphite: GraphiteHandle, prefix: string, u: Uniform, wait: boolean): Promise<void> {
  const now = Math.floor(Date.now() / 1000);
  const points = BACKENDS.flatMap((b) => b.servers.map((s) => ({ path: `${prefix}.${b.name}.${s.name}.load`, value: Math.round(500 + u() * 4500), timestamp: now })));
  if (wait) await writeAndWait(graphite, points, `${prefix}.*.*.load`);
  else await graphite.write(points);
}

interface Figures {
  readonly lines: string[];
  readonly ok: boolean;
}

async function main(): Promise<Figures> {
  const dir = makeTempDir('hw-soak');
  const started = Date.now();
  let graphite: GraphiteHandle | undefined;
  let fleet: HaproxyHandle[] = [];
  const proxies: SocketProxy[] = [];
  let gproxy: GraphiteFaultProxy | undefined;
  let cli: CliProcess | undefined;
  try {
    process.stderr.write(`soak: starting Graphite and ${LOAD_BALANCERS} HAProxy\n`);
    [graphite, fleet] = await Promise.all([startGraphite(), startHaproxyFleet(LOAD_BALANCERS, { backends: BACKENDS })]);
    const prefix = uniquePrefix('soak');
    const loadsRandom = uniform(SEED, 'loads');
    await feedLoads(graphite, prefix, loadsRandom, true);
    gproxy = await startGraphiteFaultProxy(graphite.url);
    for (const [i, h] of fleet.entries()) {
      const proxy = await startSocketProxy(h.adminSocket);
      proxy.setFault(connectionPolicy(uniform(SEED, `sockets-${i}`)));
      proxies.push(proxy);
    }
    const lbNames = proxies.map((_, i) => `lb${i + 1}`);
    const depth = `${prefix}.be_x`.split('.').length - 1;
    const config = writeConfigFile(dir, {
      graphite: { url: gproxy.url, timeoutMs: 500, retries: 0 },
      relay: { type: 'socket', loadBalancers: proxies.map((p, i) => ({ name: lbNames[i], endpoint: p.path })), connectTimeoutMs: 300, readTimeoutMs: 500 },
      backends: [
        { name: 'be_a', target: `aliasByNode(${prefix}.be_a.*.load, ${depth + 1})`, from: '-1min', aggregation: 'leading-edge', weighting: { function: 'limited-proportions' } },
        { name: 'be_b', target: `aliasByNode(${prefix}.be_b.*.load, ${depth + 1})`, from: '-1min', aggregation: 'leading-edge', weighting: { function: 'normalised-exponential', aggressiveness: 2 } },
      ],
    });
    const targetA = `aliasByNode(${prefix}.be_a.*.load, ${depth + 1})`;
    const heapFile = join(dir, 'heap.jsonl');

    const running = startCli(['run', '--json', '--interval', String(INTERVAL), '--config', config], {
      env: { HW_SOAK_HEAP_FILE: heapFile },
      nodeOptions: ['--expose-gc', '--import', join(REPO_ROOT, 'research', 'soak', 'heap-probe.ts')],
    });
    cli = running;
    process.stderr.write(`soak: CLI pid ${running.pid}, ${CYCLES} cycles at ${INTERVAL} s, seed ${SEED}\n`);

    const ledger = new WeightLedger(lbNames);
    const reports: CycleReport[] = [];
    const invalidReports: string[] = [];
    const reloads: Reload[] = [];
    const samples: ProcSample[] = [];
    let faultsOn = true;
    let warmUpAt: number | undefined;
    let settleFrom: number | undefined;
    let cleanStreak = 0;
    let signalAt: number | undefined;

    const graphiteRandom = uniform(SEED, 'graphite');
    const reloadRandom = uniform(SEED, 'reloads');
    const stopFaults = new AbortController();
    const pause = (ms: number): Promise<void> => sleep(ms, undefined, { signal: stopFaults.signal }).catch(() => undefined);
    const graphiteSchedule = (async () => {
      while (faultsOn) {
        await gproxy?.setFault(pick(graphiteRandom, GRAPHITE_FAULTS));
        await pause(1_000 + graphiteRandom() * 2_000);
      }
      await gproxy?.setFault({ kind: 'pass' });
    })();
    const reloadSchedule = (async () => {
      await pause(3_000 + reloadRandom() * 3_000);
      while (faultsOn) {
        const index = Math.floor(reloadRandom() * fleet.length);
        const target = fleet[index];
        const name = lbNames[index];
        if (target !== undefined && name !== undefined) {
          const reload: Reload = { loadBalancer: name, start: Date.now(), end: undefined };
          reloads.push(reload);
          await target.reload();
          reload.end = Date.now();
        }
        await pause(4_000 + reloadRandom() * 4_000);
      }
    })();
    const loadSchedule = (async () => {
      while (signalAt === undefined) {
        await sleep(3_000);
        if (graphite !== undefined && signalAt === undefined) await feedLoads(graphite, prefix, loadsRandom, false);
      }
    })();

    let consumed = 0;
    let lastSample = 0;
    const consume = (): void => {
      const lines = running.lines();
      for (; consumed < lines.length; consumed++) {
        const line = lines[consumed] ?? '';
        let report: CycleReport;
        try {
          report = parseCycleReport(line);
        } catch (error) {
          invalidReports.push(`${error instanceof Error ? error.message.slice(0, 200) : String(error)}: ${line.slice(0, 200)}`);
          continue;
        }
        reports.push(report);
        ledger.add(report, reports.length, reloads);
        if (reports.length === WARM_UP_CYCLES) warmUpAt = Date.now();
        if (settleFrom !== undefined && Date.parse(report.startedAt) > settleFrom) cleanStreak = report.outcome === 'ok' ? cleanStreak + 1 : 0;
      }
    };

    let exited = false;
    void running.exited.then(() => (exited = true));
    while (!exited) {
      await sleep(100);
      consume();
      if (Date.now() - lastSample >= 1_000) {
        lastSample = Date.now();
        const sample = procSample(running.pid, reports.length);
        if (sample !== undefined && signalAt === undefined) samples.push(sample);
      }
      if (faultsOn && reports.length >= CYCLES) {
        faultsOn = false;
        stopFaults.abort();
        process.stderr.write(`soak: ${reports.length} cycles with faults; settling\n`);
        await Promise.all([graphiteSchedule, reloadSchedule]);
        for (const p of proxies) p.setFault({ kind: 'pass' });
        settleFrom = Date.now();
      }
      if (settleFrom !== undefined && signalAt === undefined && cleanStreak >= SETTLE_CYCLES) {
        signalAt = Date.now();
        running.kill('SIGTERM');
      }
      if (signalAt === undefined && Date.now() - started > 15 * 60_000) throw new Error(`soak: still running after 15 minutes with ${reports.length} reports`);
    }
    const exit = await running.exited;
    consume();
    await loadSchedule;

    // ----- figures -----
    const cyclesRun = gproxy.requests.filter((r) => r.target === targetA).length;
    const last = reports[reports.length - 1];
    const finalMismatches: string[] = [];
    let finalCompared = 0;
    if (last !== undefined) {
      for (const [i, h] of fleet.entries()) {
        const name = lbNames[i] ?? '';
        for (const [key, want] of heldWeights(last, name)) {
          const [backend = '', server = ''] = key.split('/');
          const got = (await h.getWeight(backend, server)).current;
          finalCompared++;
          if (want !== got) finalMismatches.push(`${name} ${key}: report says ${String(want)}, HAProxy holds ${got}`);
        }
      }
    }
    const outcomes = { ok: 0, partial: 0, failed: 0 };
    for (const r of reports) outcomes[r.outcome]++;
    const graphiteFaults = new Map<string, number>();
    for (const r of gproxy.requests) graphiteFaults.set(r.fault, (graphiteFaults.get(r.fault) ?? 0) + 1);
    const socketFaults = new Map<string, number>();
    let upstreamGone = 0;
    for (const p of proxies) {
      for (const c of p.connections) {
        socketFaults.set(c.fault ?? 'unset', (socketFaults.get(c.fault ?? 'unset') ?? 0) + 1);
        if (c.upstreamError !== undefined) upstreamGone++;
      }
    }
    const withFailedLb = reports.filter((r) => r.failedLoadBalancers.length > 0).length;
    const graphiteFailed = reports.filter((r) => r.backends.some((b) => !b.graphite.ok)).length;
    const serversChanged = reports.reduce((sum, r) => sum + r.serversChanged, 0);

    const afterWarmUp = samples.filter((s) => warmUpAt !== undefined && s.at >= warmUpAt);
    const startWindow = afterWarmUp.slice(0, 10);
    const endWindow = samples.slice(-10);
    const minOf = (xs: readonly ProcSample[], f: (s: ProcSample) => number): number => Math.min(...xs.map(f));
    const maxOf = (xs: readonly ProcSample[], f: (s: ProcSample) => number): number => Math.max(...xs.map(f));
    const heap = readHeapSamples(heapFile).filter((h) => signalAt === undefined || h.at <= signalAt);
    const heapStart = heap.find((h) => warmUpAt !== undefined && h.at >= warmUpAt);
    const heapEnd = heap[heap.length - 1];
    const mb = (bytes: number | undefined): string => (bytes === undefined ? 'n/a' : `${(bytes / 1024 / 1024).toFixed(1)} MB`);

    const checks: [string, boolean][] = [
      [`every cycle reported: ${cyclesRun} cycles run, ${reports.length} reports`, cyclesRun === reports.length && reports.length >= CYCLES],
      [`every report complete (parsed whole): ${invalidReports.length} invalid`, invalidReports.length === 0],
      [`weights lost or wrongly changed: ${ledger.mismatches.length + finalMismatches.length}`, ledger.mismatches.length + finalMismatches.length === 0],
      [`CLI exit after SIGTERM: ${String(exit.code)}`, exit.code === 0],
      [
        `no leaked descriptors: min fds ${startWindow.length > 0 ? minOf(startWindow, (s) => s.fds) : 'n/a'} after warm-up, ${endWindow.length > 0 ? minOf(endWindow, (s) => s.fds) : 'n/a'} at the end`,
        startWindow.length > 0 && endWindow.length > 0 && minOf(endWindow, (s) => s.fds) <= minOf(startWindow, (s) => s.fds) + 2,
      ],
      [
        `stable live heap (after full GC): ${mb(heapStart?.heapUsed)} after warm-up, ${mb(heapEnd?.heapUsed)} at the end`,
        heapStart !== undefined && heapEnd !== undefined && heapEnd.heapUsed <= heapStart.heapUsed * 1.25 + 2 * 1024 * 1024,
      ],
    ];

    const lines = [
      '# Soak results',
      '',
      `Generated by \`npx tsx research/soak/run.ts --cycles ${CYCLES} --seed ${SEED} --interval ${INTERVAL}\` on ${new Date().toISOString()}.`,
      '',
      `Lab: ${LOAD_BALANCERS} real HAProxy 2.6 processes (backends ${BACKENDS.map((b) => `${b.name}: ${b.balance}, ${b.servers.length} servers`).join('; ')}), each behind a fault-injecting socket proxy; real Graphite (carbon-cache + graphite-web) behind the fault proxy; loads rewritten every 3 s; the real CLI \`haproxy-weighter run --json --interval ${INTERVAL}\`.`,
      '',
      '## Invariants',
      '',
      '| check | result |',
      '| --- | --- |',
      ...checks.map(([what, ok]) => `| ${what} | ${ok ? 'PASS' : 'FAIL'} |`),
      '',
      '## Figures',
      '',
      '| figure | value |',
      '| --- | --- |',
      `| wall time | ${((Date.now() - started) / 1000).toFixed(0)} s |`,
      `| cycles run (Graphite requests of be_a) | ${cyclesRun} |`,
      `| reports printed | ${reports.length} (ok ${outcomes.ok}, partial ${outcomes.partial}, failed ${outcomes.failed}) |`,
      `| cycles with a failed load balancer / a Graphite failure | ${withFailedLb} / ${graphiteFailed} |`,
      `| weights written (sum of serversChanged) | ${serversChanged} |`,
      `| weight checks between consecutive reports | ${ledger.comparisons} compared, ${ledger.mismatches.length} mismatched, ${ledger.unknownAfterFailure} unknown after an unconfirmed batch, ${ledger.excusedByReload} load-balancer cycles across a reload |`,
      `| final check: HAProxy weights vs last report | ${finalCompared} compared, ${finalMismatches.length} mismatched |`,
      `| Graphite requests by fault | ${[...graphiteFaults].map(([k, v]) => `${k} ${v}`).join(', ')} |`,
      `| runtime connections by fault | ${[...socketFaults].map(([k, v]) => `${k} ${v}`).join(', ')}; ${upstreamGone} found HAProxy gone (reloading) |`,
      `| HAProxy reloads | ${reloads.length} |`,
      `| open fds of the CLI (after warm-up / end, min..max) | ${startWindow.length > 0 ? `${minOf(startWindow, (s) => s.fds)}..${maxOf(startWindow, (s) => s.fds)}` : 'n/a'} / ${endWindow.length > 0 ? `${minOf(endWindow, (s) => s.fds)}..${maxOf(endWindow, (s) => s.fds)}` : 'n/a'} (over all samples ${minOf(samples, (s) => s.fds)}..${maxOf(samples, (s) => s.fds)}) |`,
      `| open sockets of the CLI (after warm-up / end, min) | ${startWindow.length > 0 ? minOf(startWindow, (s) => s.sockets) : 'n/a'} / ${endWindow.length > 0 ? minOf(endWindow, (s) => s.sockets) : 'n/a'} |`,
      `| RSS of the CLI (/proc, after warm-up / end) | ${startWindow[0]?.rssKb ?? 'n/a'} kB / ${endWindow[endWindow.length - 1]?.rssKb ?? 'n/a'} kB |`,
      `| live heap after full GC (after warm-up / end) | ${mb(heapStart?.heapUsed)} / ${mb(heapEnd?.heapUsed)} (${heap.length} samples, min ${mb(Math.min(...heap.map((h) => h.heapUsed)))}, max ${mb(Math.max(...heap.map((h) => h.heapUsed)))}) |`,
      '',
    ];
    if (ledger.mismatches.length > 0 || finalMismatches.length > 0 || invalidReports.length > 0) {
      lines.push('## Details', '');
      for (const m of ledger.mismatches.slice(0, 20)) lines.push(`- report ${m.report}: ${m.loadBalancer} ${m.server} expected ${m.expected}, observed ${m.observed}`);
      for (const m of finalMismatches.slice(0, 20)) lines.push(`- final: ${m}`);
      for (const m of invalidReports.slice(0, 5)) lines.push(`- invalid report: ${m}`);
      lines.push('');
    }
    return { lines, ok: checks.every(([, ok]) => ok) };
  } finally {
    await cli?.stop();
    await gproxy?.close();
    for (const p of proxies) await p.close();
    await stopAll(fleet);
    await graphite?.stop();
    removeTempDir(dir);
  }
}

const figures = await main();
const text = figures.lines.join('\n');
process.stdout.write(`${text}\n`);
if (opts.out !== '') writeFileSync(opts.out, text);
process.exitCode = figures.ok ? 0 : 1;
