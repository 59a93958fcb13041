import { describe, expect, it } from 'vitest';
import {
  alarmFromTemplate,
  evaluateRange,
  firstAlarm,
  periodDatapoints,
  simulateAlarm,
  type AlarmState,
  type Datapoint,
  type MetricAlarm,
  type RangeRule,
  type Sample,
  type TreatMissingData,
} from '../harness/cloudwatch-alarm.js';

/**
 * The evaluator against the examples of the AWS CloudWatch User Guide, "Configuring how CloudWatch
 * alarms treat missing data" → "How alarm state is evaluated when data is missing": five
 * datapoints retrieved, 0 a good one, X a breaching one, - a missing one; the expected state for
 * each TreatMissingData setting, "retain" meaning the state before the evaluation.
 */

/** Threshold 1, GreaterThanOrEqualToThreshold: 0 is good, 1 breaches. */
function range(text: string): Datapoint[] {
  return text.split(' ').map((c) => (c === '-' ? null : c === 'X' ? 1 : 0));
}

const rule = (m: number, n: number, treatMissingData: TreatMissingData): RangeRule => ({
  evaluationPeriods: n,
  datapointsToAlarm: m,
  threshold: 1,
  comparison: 'GreaterThanOrEqualToThreshold',
  treatMissingData,
});

type Expected = AlarmState | 'retain';
const TREATMENTS = ['missing', 'ignore', 'breaching', 'notBreaching'] as const;

// Columns: MISSING, IGNORE, BREACHING, NOT BREACHING.
const THREE_OF_THREE: readonly (readonly [string, readonly [Expected, Expected, Expected, Expected]])[] = [
  ['0 - X - X', ['OK', 'OK', 'OK', 'OK']],
  ['0 - - - -', ['OK', 'OK', 'OK', 'OK']],
  ['- - - - -', ['INSUFFICIENT_DATA', 'retain', 'ALARM', 'OK']],
  ['0 X X - X', ['ALARM', 'ALARM', 'ALARM', 'ALARM']],
  ['- - - - X', ['INSUFFICIENT_DATA', 'retain', 'ALARM', 'OK']],
  ['X - - - -', ['ALARM', 'retain', 'ALARM', 'OK']],
];

const TWO_OF_THREE: readonly (readonly [string, readonly [Expected, Expected, Expected, Expected]])[] = [
  ['0 - X - X', ['ALARM', 'ALARM', 'ALARM', 'ALARM']],
  ['0 0 X 0 X', ['ALARM', 'ALARM', 'ALARM', 'ALARM']],
  ['0 - X - -', ['OK', 'OK', 'ALARM', 'OK']],
  ['- - - - 0', ['OK', 'OK', 'ALARM', 'OK']],
  ['- - - - X', ['INSUFFICIENT_DATA', 'retain', 'ALARM', 'OK']],
];

function check(m: number, n: number, points: string, expected: readonly Expected[]): void {
  TREATMENTS.forEach((treatment, i) => {
    const want = expected[i];
    // "Retain current state" is shown from both sides: whatever the state was, it stays.
    for (const before of ['OK', 'ALARM'] as const) {
      expect(evaluateRange(range(points), rule(m, n, treatment), before), `${points} with ${treatment}, state before ${before}`).toBe(want === 'retain' ? before : want);
    }
  });
}

describe('alarm evaluation as in the CloudWatch documentation', () => {
  it.each(THREE_OF_THREE)('3 out of 3: %s', (points, expected) => check(3, 3, points, expected));
  it.each(TWO_OF_THREE)('2 out of 3: %s', (points, expected) => check(2, 3, points, expected));

  it('counts breaching datapoints that are not consecutive towards M out of N', () => {
    expect(evaluateRange(range('X 0 X'), rule(2, 3, 'missing'), 'OK')).toBe('ALARM');
    expect(evaluateRange(range('X 0 0'), rule(2, 3, 'missing'), 'OK')).toBe('OK');
  });

  it('lets real datapoints from further back replace missing ones when there are enough of them', () => {
    // Three real points among five: the missing ones play no part, whatever the treatment.
    for (const treatment of TREATMENTS) expect(evaluateRange(range('X - X - X'), rule(3, 3, treatment), 'OK')).toBe('ALARM');
  });

  it('compares with each operator', () => {
    const at = (comparison: RangeRule['comparison'], value: number): AlarmState => evaluateRange([value], { ...rule(1, 1, 'missing'), comparison }, 'OK');
    expect([at('GreaterThanOrEqualToThreshold', 1), at('GreaterThanThreshold', 1), at('LessThanThreshold', 0.5), at('LessThanOrEqualToThreshold', 1)]).toEqual(['ALARM', 'OK', 'ALARM', 'ALARM']);
  });
});

const METRIC = { namespace: 'Test', name: 'Failures', dimensions: { service: 's' } };
const alarm = (overrides: Partial<MetricAlarm>): MetricAlarm => ({
  name: 'a',
  metric: METRIC,
  statistic: 'Maximum',
  period: 60,
  fill: null,
  evaluationPeriods: 2,
  datapointsToAlarm: 2,
  threshold: 1,
  comparison: 'GreaterThanOrEqualToThreshold',
  treatMissingData: 'missing',
  ...overrides,
});
const sample = (at: number, value: number, visibleAt?: number, metric = METRIC): Sample => ({ metric, at, value, ...(visibleAt === undefined ? {} : { visibleAt }) });

describe('period datapoints', () => {
  it.each([
    ['Sum', 5],
    ['Maximum', 3],
    ['Minimum', 2],
    ['Average', 2.5],
    ['SampleCount', 2],
  ] as const)('aggregate the samples of a period with %s', (statistic, value) => {
    expect(periodDatapoints(alarm({ statistic }), [sample(60, 2), sample(119, 3), sample(120, 100)], 120, 1, 1000)).toEqual([value]);
  });

  it('only count samples of the exact metric, dimensions included', () => {
    const other = { ...METRIC, dimensions: { service: 's', Backend: 'b' } };
    expect(periodDatapoints(alarm({}), [sample(10, 1, undefined, other)], 60, 1, 1000)).toEqual([null]);
  });

  it('do not see a sample before it was emitted', () => {
    expect(periodDatapoints(alarm({}), [sample(10, 1, 130)], 60, 1, 120)).toEqual([null]);
    expect(periodDatapoints(alarm({}), [sample(10, 1, 130)], 60, 1, 180)).toEqual([1]);
  });

  it('fill the gaps with FILL, but only when the metric has data in the range', () => {
    expect(periodDatapoints(alarm({ fill: 0 }), [sample(70, 1)], 180, 3, 1000)).toEqual([0, 1, 0]);
    expect(periodDatapoints(alarm({ fill: 0 }), [], 180, 3, 1000)).toEqual([null, null, null]);
  });
});

describe('simulateAlarm', () => {
  it('fires at the end of the period that completes the streak and recovers when good data returns', () => {
    const samples = [sample(10, 0), sample(70, 1), sample(130, 1), sample(190, 0), sample(250, 0)];
    const states = simulateAlarm(alarm({}), samples, { from: 60, to: 300 });
    expect(states.map((s) => [s.at, s.state])).toEqual([
      [60, 'OK'],
      [120, 'OK'],
      [180, 'ALARM'],
      [240, 'OK'],
      [300, 'OK'],
    ]);
    expect(firstAlarm(states)).toBe(180);
  });

  it('does not fire when there is no streak', () => {
    expect(firstAlarm(simulateAlarm(alarm({}), [sample(10, 1), sample(70, 0), sample(130, 1), sample(190, 0)], { from: 60, to: 600 }))).toBeNull();
  });

  it('fires on a lone breaching datapoint once it is M periods old and nothing came after it (the documented premature transition)', () => {
    const states = simulateAlarm(alarm({}), [sample(10, 0), sample(70, 1)], { from: 60, to: 600 });
    // Evaluation range 4: the good point leaves the range at 300, the breaching one is then 4 periods old.
    expect(firstAlarm(states)).toBe(300);
  });
});

describe('alarmFromTemplate', () => {
  const base = {
    Namespace: 'HaproxyWeighter',
    MetricName: 'LoadBalancersFailed',
    Dimensions: [{ Name: 'service', Value: 'haproxy-weighter' }],
    Statistic: 'Maximum',
    Period: '300',
    EvaluationPeriods: 3,
    DatapointsToAlarm: 2,
    Threshold: 1,
    ComparisonOperator: 'GreaterThanOrEqualToThreshold',
    TreatMissingData: 'missing',
  };

  it('reads a single-metric alarm, numbers given as text included', () => {
    expect(alarmFromTemplate('A', base)).toMatchObject({ period: 300, evaluationPeriods: 3, datapointsToAlarm: 2, fill: null, metric: { dimensions: { service: 'haproxy-weighter' } } });
  });

  it('reads a FILL expression over one metric', () => {
    const { Namespace, MetricName, Dimensions, Statistic, Period, ...rest } = base;
    const properties = {
      ...rest,
      Metrics: [
        { Id: 'completed', MetricStat: { Metric: { Namespace, MetricName, Dimensions }, Stat: Statistic, Period }, ReturnData: false },
        { Id: 'filled', Expression: 'FILL(completed, 0)', ReturnData: true },
      ],
    };
    expect(alarmFromTemplate('B', properties)).toMatchObject({ fill: 0, statistic: 'Maximum', period: 300 });
  });

  it.each([
    ['a DatapointsToAlarm above EvaluationPeriods', { ...base, DatapointsToAlarm: 4 }, /DatapointsToAlarm 4/],
    ['an unknown statistic', { ...base, Statistic: 'p99' }, /statistic "p99"/],
    ['a period that is not whole minutes', { ...base, Period: 90 }, /Period 90/],
    ['any other expression', { ...base, Metrics: [{ Id: 'm', MetricStat: { Metric: { Namespace: 'N', MetricName: 'M' }, Stat: 'Sum', Period: 60 }, ReturnData: false }, { Id: 'e', Expression: 'm * 2' }] }, /not FILL\(m, <number>\)/],
  ])('refuses %s', (_label, properties, message) => {
    expect(() => alarmFromTemplate('C', properties)).toThrow(message);
  });
});
