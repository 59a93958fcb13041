/**
 * The alarms of the packaged stack fire in the situations they are for, on each stage's schedule,
 * and stay quiet otherwise. Each alarm definition is taken from the CloudFormation template that
 * `serverless package` builds for prod (rate(1 minute)) and dev (rate(5 minutes)), and evaluated
 * with CloudWatch's documented rules (test/harness/cloudwatch-alarm.ts) on the metric series of a
 * run of cycles:
 *
 * - The handler's metrics are what it emits: each cycle's report goes through the real
 *   emitCycleMetrics into Powertools' EMF output; the datapoints carry the cycle's schedule tick
 *   (metricsTimestamp, as the handler stamps them) and reach CloudWatch when the cycle ends
 *   (logMetrics flushes them then).
 * - AWS/Lambda Errors and Throttles follow Lambda's documented behaviour for asynchronous
 *   invocations: a failed cycle counts one error; with reserved concurrency, a tick that finds a
 *   cycle running is throttled and retried with backoff (1, 2, 4 ... s) until maximumEventAge of
 *   the packaged EventInvokeConfig, then dropped; each throttled attempt counts one throttle.
 * - EventBridge fires each tick at a jittered offset within its minute; cycle durations vary.
 *
 * How many periods CloudWatch retrieves per evaluation (the evaluation range) is only documented
 * as "a higher number of data points than specified by Evaluation Periods", with one example (5
 * for 3); every scenario is checked with ranges of N + 1 to N + 5 periods and must give the same
 * verdict, so no verdict hangs on that number.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metricsTimestamp } from '../../functions/aws/payload.js';
import { REPORT_SCHEMA_VERSION, cycleReportSchema } from '../../functions/core/report-schema.js';
import { problem, type CycleReport } from '../../functions/core/report.js';
import { alarmFromTemplate, firstAlarm, simulateAlarm, type MetricAlarm, type MetricId, type Sample } from '../harness/cloudwatch-alarm.js';
import { emfDocumentsFor } from '../harness/emf.js';
import { copyService, isObject, ofType, type Packaged } from '../harness/serverless-package.js';

/** What a cycle ran into; `error` is an invocation that failed before it had a report. */
type CycleKind = 'good' | 'lb-failed' | 'graphite-one-backend' | 'graphite-every-backend' | 'imbalanced' | 'error';

interface Tick {
  readonly kind: CycleKind;
  /** How long the cycle takes, in schedule intervals (a slow cycle is > 1); a few seconds by default. */
  readonly intervals?: number;
}

interface Stage {
  readonly name: string;
  readonly alarms: readonly MetricAlarm[];
  /** Schedule interval, seconds. */
  readonly interval: number;
  readonly maximumEventAge: number;
  readonly namespace: string;
  readonly service: string;
  /** How the alarms name the function (its logical id, as the template references it). */
  readonly functionName: string;
}

const LOAD_BALANCERS = ['i-0aaaaaaaaaaaaaaa1', 'i-0aaaaaaaaaaaaaaa2', 'i-0aaaaaaaaaaaaaaa3'];
const BACKENDS = ['be_ingest', 'be_api'];

/**
 * A report of the given kind, as runCycle would return it for two backends on three load
 * balancers, checked against the report schema.
 */
function reportOf(kind: Exclude<CycleKind, 'error'>): CycleReport {
  const failedLbs = kind === 'lb-failed' ? [LOAD_BALANCERS[1] ?? ''] : [];
  const graphiteDown = kind === 'graphite-every-backend' ? BACKENDS : kind === 'graphite-one-backend' ? [BACKENDS[1] ?? ''] : [];
  const nothingWritten = graphiteDown.length === BACKENDS.length;
  const problems = [
    ...failedLbs.map((lb) => problem('observe-failed', { loadBalancer: lb }, 'SSM command ended Undeliverable')),
    ...graphiteDown.map((backend) => problem('graphite-http-status', { backend }, 'Graphite answered HTTP 503')),
  ];
  return cycleReportSchema.parse({
    schemaVersion: REPORT_SCHEMA_VERSION,
    version: '0.0.0-alarms',
    mode: 'apply',
    force: false,
    startedAt: '2026-11-30T00:00:00.000Z',
    durationMs: 4_000,
    outcome: nothingWritten ? 'failed' : problems.length > 0 ? 'partial' : 'ok',
    serversChanged: nothingWritten ? 0 : 4,
    failedLoadBalancers: failedLbs,
    staticRefusals: [],
    problems,
    backends: BACKENDS.map((backend, i) => {
      const down = graphiteDown.includes(backend);
      return {
        backend,
        graphite: { ok: !down, error: down ? 'HTTP 503' : null, unmapped: [], unknownServers: [] },
        loads: {},
        imbalance: down ? null : kind === 'imbalanced' && i === 0 ? 2.4 : 1.1,
        loadBalancers: [],
      };
    }),
    loadBalancers: LOAD_BALANCERS.map((name) =>
      failedLbs.includes(name)
        ? { name, observe: 'failed', apply: 'not-run', error: 'SSM command ended Undeliverable' }
        : { name, observe: 'ok', apply: nothingWritten ? 'not-needed' : 'ok', error: null },
    ),
  });
}

interface Emitted {
  readonly metric: MetricId;
  readonly value: number;
}

/** The metrics one report produces: emitCycleMetrics, then the flush logMetrics does, read back from the EMF lines. */
function emittedMetrics(report: CycleReport, stage: Stage): Emitted[] {
  const out: Emitted[] = [];
  for (const doc of emfDocumentsFor(report, { namespace: stage.namespace, serviceName: stage.service })) {
    if (!isObject(doc._aws) || !Array.isArray(doc._aws.CloudWatchMetrics)) continue;
    for (const directive of doc._aws.CloudWatchMetrics.filter(isObject)) {
      const names = Array.isArray(directive.Dimensions) && Array.isArray(directive.Dimensions[0]) ? directive.Dimensions[0].map(String) : [];
      const dimensions = Object.fromEntries(names.map((n) => [n, String(doc[n])]));
      for (const m of Array.isArray(directive.Metrics) ? directive.Metrics.filter(isObject) : []) {
        const values: unknown[] = [doc[String(m.Name)]].flat();
        for (const v of values) if (typeof v === 'number') out.push({ metric: { namespace: String(directive.Namespace), name: String(m.Name), dimensions }, value: v });
      }
    }
  }
  return out;
}

/** A small deterministic generator, so that every run sees the same jitter. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An hour boundary in 2026: realistic timestamps, aligned to every period. */
const T0 = Date.UTC(2026, 10, 30, 8) / 1000;

interface Run {
  readonly samples: Sample[];
  /** When each tick's cycle ended (seconds), or null when the tick was dropped. */
  readonly ends: readonly (number | null)[];
  readonly lastTick: number;
}

/**
 * Runs the ticks on the stage's schedule: tick k fires at T0 + k × interval plus up to 50 s of
 * jitter. With reserved concurrency 1, an attempt that finds a cycle running is throttled and
 * retried after 1, 2, 4 ... s while the event is younger than maximumEventAge.
 */
function runSchedule(stage: Stage, ticks: readonly Tick[], options: { readonly reserved: boolean; readonly seed: number }): Run {
  const rnd = random(options.seed);
  const lambda = (name: string): MetricId => ({ namespace: 'AWS/Lambda', name, dimensions: { FunctionName: stage.functionName } });
  const samples: Sample[] = [];
  const ends: (number | null)[] = ticks.map(() => null);
  const tickTimes = ticks.map((_, k) => T0 + k * stage.interval + Math.floor(rnd() * 50));
  const durations = ticks.map((t) => (t.intervals === undefined ? 2 + Math.floor(rnd() * 20) : Math.round(t.intervals * stage.interval)));
  // Pending attempts: [time, tick index, backoff of the next retry].
  const queue: [number, number, number][] = tickTimes.map((t, k) => [t, k, 1]);
  let busyUntil = -Infinity;
  while (queue.length > 0) {
    queue.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    const next = queue.shift();
    if (next === undefined) break;
    const [at, k, backoff] = next;
    const tickTime = tickTimes[k] ?? at;
    if (options.reserved && at < busyUntil) {
      samples.push({ metric: lambda('Throttles'), at, value: 1 });
      if (at + backoff - tickTime <= stage.maximumEventAge) queue.push([at + backoff, k, backoff * 2]);
      continue;
    }
    const end = at + (durations[k] ?? 5);
    busyUntil = Math.max(busyUntil, end);
    ends[k] = end;
    const tick = ticks[k];
    if (tick === undefined) continue;
    samples.push({ metric: lambda('Errors'), at: end, value: tick.kind === 'error' ? 1 : 0 });
    if (tick.kind === 'error') continue;
    const event = { source: 'aws.events', 'detail-type': 'Scheduled Event', time: new Date(tickTime * 1000).toISOString() };
    const stamp = metricsTimestamp(event, at * 1000) / 1000;
    for (const e of emittedFor(stage, tick.kind)) samples.push({ metric: e.metric, at: stamp, visibleAt: end, value: e.value });
  }
  return { samples, ends, lastTick: tickTimes[tickTimes.length - 1] ?? T0 };
}

const emittedCache = new Map<string, Emitted[]>();
function emittedFor(stage: Stage, kind: Exclude<CycleKind, 'error'>): Emitted[] {
  const key = `${stage.name}/${kind}`;
  const cached = emittedCache.get(key) ?? emittedMetrics(reportOf(kind), stage);
  emittedCache.set(key, cached);
  return cached;
}

const cycles = (n: number, kind: CycleKind = 'good', intervals?: number): Tick[] => Array.from({ length: n }, () => (intervals === undefined ? { kind } : { kind, intervals }));

interface Scenario {
  readonly name: string;
  readonly ticks: (stage: Stage) => readonly Tick[];
  /** Reserved concurrency 1 (the parameter set); off by default, as shipped. */
  readonly reserved?: boolean;
  /** The schedule stops after the ticks: evaluate well past the last one. */
  readonly stopped?: boolean;
  readonly fires: readonly string[];
  /** Alarms that may fire as well (e.g. no cycle completed while Graphite was down everywhere). */
  readonly mayAlsoFire?: readonly string[];
  /** The tick after whose end the alarm(s) must have fired within two of their periods. */
  readonly decisiveTick?: (stage: Stage) => number;
}

const WARM_UP = 15;
const imbalanceCycles = (stage: Stage): number => alarmNamed(stage, 'ImbalanceAlarm').evaluationPeriods;

const SCENARIOS: readonly Scenario[] = [
  { name: 'every cycle good', ticks: () => cycles(40), fires: [] },
  { name: 'every cycle good, with reserved concurrency', reserved: true, ticks: () => cycles(40), fires: [] },
  { name: 'one load balancer failing one cycle', ticks: () => [...cycles(WARM_UP), ...cycles(1, 'lb-failed'), ...cycles(15)], fires: [] },
  {
    name: 'one load balancer failing two cycles in a row',
    ticks: () => [...cycles(WARM_UP), ...cycles(2, 'lb-failed'), ...cycles(15)],
    fires: ['LoadBalancersFailedAlarm'],
    decisiveTick: () => WARM_UP + 1,
  },
  {
    name: 'one load balancer failing every other cycle',
    ticks: () => [...cycles(WARM_UP), { kind: 'lb-failed' }, { kind: 'good' }, { kind: 'lb-failed' }, ...cycles(15)],
    fires: ['LoadBalancersFailedAlarm'],
    decisiveTick: () => WARM_UP + 2,
  },
  {
    name: 'one load balancer failing two cycles in a row, the first one slower than the schedule interval (reserved concurrency: the next tick is throttled)',
    reserved: true,
    ticks: () => [...cycles(WARM_UP), { kind: 'lb-failed', intervals: 1.5 }, ...cycles(2, 'lb-failed'), ...cycles(15)],
    fires: ['LoadBalancersFailedAlarm'],
    decisiveTick: () => WARM_UP + 2,
  },
  { name: 'Graphite down for two cycles', ticks: () => [...cycles(WARM_UP), ...cycles(2, 'graphite-one-backend'), ...cycles(15)], fires: [] },
  {
    name: 'Graphite down for three cycles',
    ticks: () => [...cycles(WARM_UP), ...cycles(3, 'graphite-one-backend'), ...cycles(15)],
    fires: ['GraphiteFailuresAlarm'],
    decisiveTick: () => WARM_UP + 2,
  },
  {
    name: 'Graphite down for every backend for three cycles',
    ticks: () => [...cycles(WARM_UP), ...cycles(3, 'graphite-every-backend'), ...cycles(15)],
    fires: ['GraphiteFailuresAlarm'],
    mayAlsoFire: ['NoCycleAlarm'],
    decisiveTick: () => WARM_UP + 2,
  },
  { name: 'one cycle slower than the schedule interval', ticks: () => [...cycles(WARM_UP), ...cycles(1, 'good', 1.5), ...cycles(15)], fires: [] },
  { name: 'one cycle slower than the schedule interval, with reserved concurrency', reserved: true, ticks: () => [...cycles(WARM_UP), ...cycles(1, 'good', 1.5), ...cycles(15)], fires: [] },
  {
    name: 'every cycle slower than the schedule interval, with reserved concurrency',
    reserved: true,
    ticks: () => [...cycles(WARM_UP), ...cycles(12, 'good', 1.3), ...cycles(10)],
    fires: ['ThrottlesAlarm'],
    decisiveTick: () => WARM_UP + 6,
  },
  {
    name: 'the schedule stopped',
    stopped: true,
    ticks: () => cycles(WARM_UP + 10),
    fires: ['NoCycleAlarm'],
  },
  {
    name: 'persistent imbalance',
    ticks: (stage) => [...cycles(WARM_UP), ...cycles(imbalanceCycles(stage) + 2, 'imbalanced'), ...cycles(15)],
    fires: ['ImbalanceAlarm'],
    decisiveTick: (stage) => WARM_UP + imbalanceCycles(stage) - 1,
  },
  { name: 'imbalance for one cycle fewer than the alarm needs', ticks: (stage) => [...cycles(WARM_UP), ...cycles(imbalanceCycles(stage) - 1, 'imbalanced'), ...cycles(15)], fires: [] },
  { name: 'one failed invocation', ticks: () => [...cycles(WARM_UP), ...cycles(1, 'error'), ...cycles(15)], fires: ['ErrorsAlarm'], decisiveTick: () => WARM_UP },
  {
    name: 'every invocation failing',
    ticks: () => [...cycles(WARM_UP), ...cycles(20, 'error')],
    fires: ['ErrorsAlarm', 'NoCycleAlarm'],
    decisiveTick: () => WARM_UP,
  },
];

function alarmNamed(stage: Stage, name: string): MetricAlarm {
  const alarm = stage.alarms.find((a) => a.name === name);
  if (alarm === undefined) throw new Error(`${stage.name} has no ${name}`);
  return alarm;
}

interface Verdict {
  readonly fired: readonly string[];
  readonly firedAt: Readonly<Record<string, number>>;
}

function evaluate(stage: Stage, run: Run, until: number, rangeExtra: number): Verdict {
  const firedAt: Record<string, number> = {};
  for (const alarm of stage.alarms) {
    const at = firstAlarm(simulateAlarm(alarm, run.samples, { from: T0, to: until, rangePeriods: alarm.evaluationPeriods + rangeExtra }));
    if (at !== null) firedAt[alarm.name] = at;
  }
  return { fired: Object.keys(firedAt).sort(), firedAt };
}

function stageOf(name: string, p: Packaged): Stage {
  const alarms = ofType(p, 'AWS::CloudWatch::Alarm').map(([id, r]) => alarmFromTemplate(id, r.Properties));
  const fn = ofType(p, 'AWS::Lambda::Function')[0]?.[1].Properties;
  const variables = isObject(fn?.Environment) && isObject(fn.Environment.Variables) ? fn.Environment.Variables : {};
  const rate = /^rate\((\d+) minutes?\)$/.exec(String(ofType(p, 'AWS::Events::Rule')[0]?.[1].Properties.ScheduleExpression));
  const age = Number(ofType(p, 'AWS::Lambda::EventInvokeConfig')[0]?.[1].Properties.MaximumEventAgeInSeconds);
  if (rate === null || !Number.isFinite(age)) throw new Error(`${name}: no schedule rate or maximum event age in the template`);
  return {
    name,
    alarms,
    interval: Number(rate[1]) * 60,
    maximumEventAge: age,
    namespace: String(variables.POWERTOOLS_METRICS_NAMESPACE),
    service: String(variables.POWERTOOLS_SERVICE_NAME),
    functionName: '${RebalanceLambdaFunction}',
  };
}

describe('the packaged alarms, evaluated as CloudWatch evaluates them', () => {
  let base: string;
  const stages: Stage[] = [];

  beforeAll(async () => {
    base = mkdtempSync(join(tmpdir(), 'hw-alarms-'));
    // The template does not depend on the bundle's content.
    const service = await copyService(base, async (outfile) => writeFileSync(outfile, '// placeholder'));
    stages.push(stageOf('prod', await service.package('prod')), stageOf('dev', await service.package('dev')));
  }, 240_000);

  afterAll(() => {
    if (base !== undefined) rmSync(base, { recursive: true, force: true });
  });

  it('runs prod every minute and dev every 5 minutes, with the alarms this test knows', () => {
    expect(stages.map((s) => [s.name, s.interval])).toEqual([
      ['prod', 60],
      ['dev', 300],
    ]);
    for (const stage of stages) {
      expect(stage.alarms.map((a) => a.name).sort()).toEqual(['ErrorsAlarm', 'GraphiteFailuresAlarm', 'ImbalanceAlarm', 'LoadBalancersFailedAlarm', 'NoCycleAlarm', 'ThrottlesAlarm']);
    }
  });

  describe.each(['prod', 'dev'])('on the %s stage', (stageName) => {
    const stage = (): Stage => {
      const found = stages.find((s) => s.name === stageName);
      if (found === undefined) throw new Error(`no ${stageName} stage`);
      return found;
    };

    it.each(SCENARIOS.map((s) => [s.name, s] as const))('%s', (_name, scenario) => {
      const st = stage();
      const ticks = scenario.ticks(st);
      const run = runSchedule(st, ticks, { reserved: scenario.reserved === true, seed: 4711 });
      const longest = Math.max(...st.alarms.map((a) => a.period * a.evaluationPeriods));
      const until = scenario.stopped === true ? run.lastTick + 2 * longest + 3 * st.interval : run.lastTick;

      for (const extra of [1, 2, 3, 5]) {
        const verdict = evaluate(st, run, until, extra);
        const unexpected = verdict.fired.filter((a) => !scenario.fires.includes(a) && !(scenario.mayAlsoFire ?? []).includes(a));
        expect(unexpected, `alarms that fired but should not (evaluation range N+${extra})`).toEqual([]);
        for (const name of scenario.fires) {
          const at = verdict.firedAt[name];
          expect(at, `${name} (evaluation range N+${extra})`).toBeDefined();
          const decisive = scenario.decisiveTick?.(st);
          const end = decisive === undefined ? undefined : run.ends[decisive];
          if (end !== undefined && end !== null && at !== undefined) {
            // Fired at the latest two of its periods after the datapoint that completes the condition arrived.
            expect(at - end, `${name} fired ${at - end} s after the decisive cycle ended (evaluation range N+${extra})`).toBeLessThanOrEqual(2 * alarmNamed(st, name).period);
          }
        }
        if (scenario.stopped === true) {
          const noCycle = alarmNamed(st, 'NoCycleAlarm');
          expect((verdict.firedAt.NoCycleAlarm ?? Infinity) - run.lastTick, 'NoCycleAlarm after the last tick').toBeLessThanOrEqual(2 * noCycle.period + st.interval);
        }
      }
    });
  });
});
