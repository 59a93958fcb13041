/**
 * CloudWatch metric alarms evaluated the way the CloudWatch documentation describes it, so that a
 * test can take an alarm definition from the packaged CloudFormation template and see whether it
 * fires on the metric series our handler emits. Pure: no clock, no I/O; times are seconds.
 *
 * Sources (AWS CloudWatch User Guide): "Evaluating an alarm" (Period, Evaluation Periods,
 * Datapoints to Alarm: M out of N, the breaching points need not be consecutive) and "Configuring
 * how CloudWatch alarms treat missing data" with its subsection "How alarm state is evaluated when
 * data is missing" and its two example tables (3 of 3 and 2 of 3, five datapoints retrieved);
 * the AWS knowledge-center note on premature transitions ("the oldest available breaching
 * datapoint is at least as old as Datapoints to Alarm and all more recent points are breaching
 * or missing" goes to ALARM even when missing data is treated as missing).
 *
 * What is modelled, and the assumptions where the documentation gives no number:
 * - Each period's datapoint is the statistic over the samples whose timestamp falls in it;
 *   periods are aligned to multiples of Period since the epoch.
 * - The alarm is evaluated at the end of each period, on the periods that have ended, and sees a
 *   sample only once it was emitted (`visibleAt`, default its timestamp): a cycle stamps its
 *   metrics with its start but flushes them at its end.
 * - The evaluation range (how many periods CloudWatch retrieves) "depends on the length of the
 *   alarm period"; the documented examples retrieve 5 for 3 evaluation periods, so the default is
 *   EvaluationPeriods + 2. Tests may vary it to show a verdict does not hang on this guess.
 * - Missing data, with N = EvaluationPeriods and M = DatapointsToAlarm:
 *   · at least N real datapoints in the range: the most recent N real ones decide, whatever
 *     TreatMissingData says;
 *   · none: breaching → ALARM, notBreaching → OK, ignore → current state, missing →
 *     INSUFFICIENT_DATA;
 *   · some but fewer than N: breaching / notBreaching fill the missing ones with breaching / good
 *     points (as few as needed to make N); missing and ignore fill nothing: ALARM when the real
 *     breaching points alone reach M, or (missing only) when no real point is good and the oldest
 *     breaching one is at least M periods old; else OK when a real point is good; else
 *     INSUFFICIENT_DATA (missing) or the current state (ignore). These rules reproduce every row
 *     of both documented tables (see test/unit/cloudwatch-alarm.test.ts).
 * - Metric math: only `FILL(<metric id>, <number>)` over one metric. FILL has nothing to fill
 *   when the metric has no datapoint at all in the range, so then the expression has no data
 *   either and TreatMissingData applies.
 */

export type Statistic = 'Sum' | 'Maximum' | 'Minimum' | 'Average' | 'SampleCount';
export type ComparisonOperator = 'GreaterThanOrEqualToThreshold' | 'GreaterThanThreshold' | 'LessThanThreshold' | 'LessThanOrEqualToThreshold';
export type TreatMissingData = 'breaching' | 'notBreaching' | 'ignore' | 'missing';
export type AlarmState = 'OK' | 'ALARM' | 'INSUFFICIENT_DATA';

/** A metric as CloudWatch identifies it: namespace, name and the exact set of dimensions. */
export interface MetricId {
  readonly namespace: string;
  readonly name: string;
  readonly dimensions: Readonly<Record<string, string>>;
}

export interface MetricAlarm {
  readonly name: string;
  readonly metric: MetricId;
  readonly statistic: Statistic;
  /** Seconds. */
  readonly period: number;
  /** The value of a `FILL(m, value)` expression the alarm watches instead of the metric itself. */
  readonly fill: number | null;
  readonly evaluationPeriods: number;
  readonly datapointsToAlarm: number;
  readonly threshold: number;
  readonly comparison: ComparisonOperator;
  readonly treatMissingData: TreatMissingData;
}

/** One value sent to CloudWatch. */
export interface Sample {
  readonly metric: MetricId;
  /** Timestamp of the value (seconds). */
  readonly at: number;
  /** When CloudWatch has it (seconds); the timestamp when omitted. */
  readonly visibleAt?: number;
  readonly value: number;
}

/** A period's value, or null when missing. */
export type Datapoint = number | null;

export type RangeRule = Pick<MetricAlarm, 'evaluationPeriods' | 'datapointsToAlarm' | 'threshold' | 'comparison' | 'treatMissingData'>;

const STATISTICS: readonly Statistic[] = ['Sum', 'Maximum', 'Minimum', 'Average', 'SampleCount'];
const COMPARISONS: readonly ComparisonOperator[] = ['GreaterThanOrEqualToThreshold', 'GreaterThanThreshold', 'LessThanThreshold', 'LessThanOrEqualToThreshold'];
const TREATMENTS: readonly TreatMissingData[] = ['breaching', 'notBreaching', 'ignore', 'missing'];

function isBreaching(value: number, rule: Pick<MetricAlarm, 'threshold' | 'comparison'>): boolean {
  switch (rule.comparison) {
    case 'GreaterThanOrEqualToThreshold':
      return value >= rule.threshold;
    case 'GreaterThanThreshold':
      return value > rule.threshold;
    case 'LessThanThreshold':
      return value < rule.threshold;
    case 'LessThanOrEqualToThreshold':
      return value <= rule.threshold;
  }
}

/**
 * The state one evaluation sets, from the datapoints of the evaluation range (oldest first) and
 * the state before it (which `ignore` may keep).
 */
export function evaluateRange(range: readonly Datapoint[], rule: RangeRule, current: AlarmState): AlarmState {
  const n = rule.evaluationPeriods;
  const m = rule.datapointsToAlarm;
  const real = range.flatMap((value, index) => (value === null ? [] : [{ index, breaching: isBreaching(value, rule) }]));
  const verdict = (breaching: number): AlarmState => (breaching >= m ? 'ALARM' : 'OK');
  if (real.length >= n) return verdict(real.slice(-n).filter((p) => p.breaching).length);
  const breaching = real.filter((p) => p.breaching).length;
  const fills = n - real.length;
  switch (rule.treatMissingData) {
    case 'breaching':
      return verdict(breaching + fills);
    case 'notBreaching':
      return verdict(breaching);
    case 'missing':
    case 'ignore': {
      if (real.length === 0) return rule.treatMissingData === 'ignore' ? current : 'INSUFFICIENT_DATA';
      if (breaching >= m) return 'ALARM';
      const anyGood = real.some((p) => !p.breaching);
      const oldestBreaching = real.find((p) => p.breaching);
      // The newest period of the range is 1 period old.
      if (rule.treatMissingData === 'missing' && !anyGood && oldestBreaching !== undefined && range.length - oldestBreaching.index >= m) return 'ALARM';
      if (anyGood) return 'OK';
      return rule.treatMissingData === 'ignore' ? current : 'INSUFFICIENT_DATA';
    }
  }
}

function sameMetric(a: MetricId, b: MetricId): boolean {
  const ak = Object.keys(a.dimensions).sort();
  const bk = Object.keys(b.dimensions).sort();
  return a.namespace === b.namespace && a.name === b.name && ak.length === bk.length && ak.every((k, i) => k === bk[i] && a.dimensions[k] === b.dimensions[k]);
}

function aggregate(values: readonly number[], statistic: Statistic): Datapoint {
  if (values.length === 0) return null;
  switch (statistic) {
    case 'Sum':
      return values.reduce((a, b) => a + b, 0);
    case 'Maximum':
      return Math.max(...values);
    case 'Minimum':
      return Math.min(...values);
    case 'Average':
      return values.reduce((a, b) => a + b, 0) / values.length;
    case 'SampleCount':
      return values.length;
  }
}

/**
 * The datapoints of the `count` periods that end at `end` (a multiple of the period), oldest
 * first, as CloudWatch has them at time `asOf`, FILL applied when the alarm uses it.
 */
export function periodDatapoints(alarm: Pick<MetricAlarm, 'metric' | 'statistic' | 'period' | 'fill'>, samples: readonly Sample[], end: number, count: number, asOf: number): Datapoint[] {
  const start = end - count * alarm.period;
  const buckets: number[][] = Array.from({ length: count }, () => []);
  for (const s of samples) {
    if (s.at < start || s.at >= end || (s.visibleAt ?? s.at) > asOf || !sameMetric(s.metric, alarm.metric)) continue;
    buckets[Math.floor((s.at - start) / alarm.period)]?.push(s.value);
  }
  const points = buckets.map((values) => aggregate(values, alarm.statistic));
  const fill = alarm.fill;
  if (fill === null || points.every((p) => p === null)) return points;
  return points.map((p) => p ?? fill);
}

export interface Evaluation {
  /** End of the newest period evaluated (seconds), when the evaluation ran. */
  readonly at: number;
  readonly state: AlarmState;
}

export interface SimulationOptions {
  /** First and last evaluation times (seconds); evaluations run at every period end in between. */
  readonly from: number;
  readonly to: number;
  /** Periods retrieved per evaluation; EvaluationPeriods + 2 by default (the documented example). */
  readonly rangePeriods?: number;
  readonly initial?: AlarmState;
}

/** Evaluates the alarm at the end of every period from `from` to `to`. */
export function simulateAlarm(alarm: MetricAlarm, samples: readonly Sample[], options: SimulationOptions): Evaluation[] {
  const range = options.rangePeriods ?? alarm.evaluationPeriods + 2;
  if (range < alarm.evaluationPeriods) throw new Error(`${alarm.name}: an evaluation range of ${range} periods cannot hold ${alarm.evaluationPeriods} evaluation periods`);
  const out: Evaluation[] = [];
  let state: AlarmState = options.initial ?? 'INSUFFICIENT_DATA';
  for (let at = Math.ceil(options.from / alarm.period) * alarm.period; at <= options.to; at += alarm.period) {
    state = evaluateRange(periodDatapoints(alarm, samples, at, range, at), alarm, state);
    out.push({ at, state });
  }
  return out;
}

/** When the alarm first went into ALARM (its actions ran), or null. */
export function firstAlarm(evaluations: readonly Evaluation[]): number | null {
  let previous: AlarmState | undefined;
  for (const e of evaluations) {
    if (e.state === 'ALARM' && previous !== 'ALARM') return e.at;
    previous = e.state;
  }
  return null;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A dimension value of a template: a string, or a reference shown as `${LogicalId}`. */
function templateText(value: unknown): string {
  if (typeof value === 'string') return value;
  if (isRecord(value) && typeof value.Ref === 'string') return `\${${value.Ref}}`;
  throw new Error(`unsupported template value ${JSON.stringify(value)}`);
}

function templateNumber(value: unknown, what: string): number {
  const n = typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? Number(value) : NaN;
  if (!Number.isFinite(n)) throw new Error(`${what} is not a number: ${JSON.stringify(value)}`);
  return n;
}

function oneOf<T extends string>(value: unknown, allowed: readonly T[], what: string): T {
  const found = allowed.find((a) => a === value);
  if (found === undefined) throw new Error(`${what} ${JSON.stringify(value)} is not one of ${allowed.join(', ')}`);
  return found;
}

function metricOf(namespace: unknown, name: unknown, dimensions: unknown, what: string): MetricId {
  if (typeof namespace !== 'string' || typeof name !== 'string') throw new Error(`${what}: Namespace and MetricName are required`);
  const dims: Record<string, string> = {};
  for (const d of Array.isArray(dimensions) ? dimensions : []) {
    if (!isRecord(d) || typeof d.Name !== 'string') throw new Error(`${what}: malformed dimension ${JSON.stringify(d)}`);
    dims[d.Name] = templateText(d.Value);
  }
  return { namespace, name, dimensions: dims };
}

const FILL_EXPRESSION = /^FILL\(\s*([a-z][A-Za-z0-9_]*)\s*,\s*(-?\d+(?:\.\d+)?)\s*\)$/;

/**
 * An `AWS::CloudWatch::Alarm`'s Properties as the evaluator's definition. Supports a single metric
 * (Namespace, MetricName, Dimensions, Statistic, Period) or `Metrics` with one metric and one
 * `FILL(id, number)` expression; anything else is an error, never a silent approximation.
 */
export function alarmFromTemplate(name: string, properties: Readonly<Record<string, unknown>>): MetricAlarm {
  let metric: MetricId;
  let statistic: Statistic;
  let period: number;
  let fill: number | null = null;
  if (Array.isArray(properties.Metrics)) {
    const queries = properties.Metrics.filter(isRecord);
    const stats = queries.filter((q) => isRecord(q.MetricStat));
    const expressions = queries.filter((q) => typeof q.Expression === 'string');
    const [stat] = stats;
    const [expression] = expressions;
    if (queries.length !== 2 || stat === undefined || expression === undefined || stats.length !== 1 || expressions.length !== 1) {
      throw new Error(`${name}: only one metric with one FILL expression is supported`);
    }
    const ms = stat.MetricStat;
    if (!isRecord(ms) || !isRecord(ms.Metric)) throw new Error(`${name}: MetricStat.Metric is required`);
    metric = metricOf(ms.Metric.Namespace, ms.Metric.MetricName, ms.Metric.Dimensions, name);
    statistic = oneOf(ms.Stat, STATISTICS, `${name}: statistic`);
    period = templateNumber(ms.Period, `${name}: Period`);
    const match = FILL_EXPRESSION.exec(String(expression.Expression));
    if (match === null || match[1] !== stat.Id) throw new Error(`${name}: expression ${JSON.stringify(expression.Expression)} is not FILL(${String(stat.Id)}, <number>)`);
    if (stat.ReturnData !== false || expression.ReturnData === false) throw new Error(`${name}: the expression, not the metric, must return the alarm's data`);
    fill = Number(match[2]);
  } else {
    metric = metricOf(properties.Namespace, properties.MetricName, properties.Dimensions, name);
    statistic = oneOf(properties.Statistic, STATISTICS, `${name}: statistic`);
    period = templateNumber(properties.Period, `${name}: Period`);
  }
  if (period < 60 || period % 60 !== 0) throw new Error(`${name}: Period ${period} is not a multiple of 60 seconds`);
  const evaluationPeriods = templateNumber(properties.EvaluationPeriods, `${name}: EvaluationPeriods`);
  // The API's default: every evaluated datapoint must breach.
  const datapointsToAlarm = properties.DatapointsToAlarm === undefined ? evaluationPeriods : templateNumber(properties.DatapointsToAlarm, `${name}: DatapointsToAlarm`);
  if (!Number.isInteger(evaluationPeriods) || !Number.isInteger(datapointsToAlarm) || datapointsToAlarm < 1 || datapointsToAlarm > evaluationPeriods) {
    throw new Error(`${name}: DatapointsToAlarm ${datapointsToAlarm} must be an integer in 1..EvaluationPeriods (${evaluationPeriods})`);
  }
  return {
    name,
    metric,
    statistic,
    period,
    fill,
    evaluationPeriods,
    datapointsToAlarm,
    threshold: templateNumber(properties.Threshold, `${name}: Threshold`),
    comparison: oneOf(properties.ComparisonOperator, COMPARISONS, `${name}: ComparisonOperator`),
    treatMissingData: properties.TreatMissingData === undefined ? 'missing' : oneOf(properties.TreatMissingData, TREATMENTS, `${name}: TreatMissingData`),
  };
}
