import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { bundleHandler } from '../../scripts/bundle.mjs';
import { parse as parseYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * `serverless package` (osls) on a copy of the service with a fresh esbuild bundle of the handler,
 * with no AWS credentials and any HTTP(S) traffic sent to a closed local port: the template is
 * built offline. The assertions read the generated CloudFormation template.
 */

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const OSLS = join(ROOT, 'node_modules/osls/bin/serverless.js');

interface Resource {
  readonly Type: string;
  readonly Properties: Record<string, unknown>;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function asList(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [value];
}

/** Flattens `Fn::Join ['', [...]]` with pseudo parameters shown as `${AWS::…}`, so ARNs can be compared as text. */
function text(value: unknown): string {
  if (typeof value === 'string') return value;
  if (isObject(value) && typeof value.Ref === 'string') return `\${${value.Ref}}`;
  if (isObject(value) && Array.isArray(value['Fn::Join'])) {
    const [sep, parts] = value['Fn::Join'];
    return asList(parts).map(text).join(String(sep));
  }
  return JSON.stringify(value);
}

interface Packaged {
  readonly resources: Record<string, Resource>;
  readonly outputs: Record<string, unknown>;
  readonly zipEntries: readonly string[];
}

async function packageStage(base: string, stage: string): Promise<Packaged> {
  const out = join(base, `out-${stage}`);
  const home = join(base, `home-${stage}`);
  mkdirSync(home);
  await run(process.execPath, [OSLS, 'package', '--stage', stage, '--package', out], {
    cwd: join(base, 'svc'),
    timeout: 120_000,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: home,
      SLS_TELEMETRY_DISABLED: '1',
      SLS_NOTIFICATIONS_MODE: 'off',
      HTTP_PROXY: 'http://127.0.0.1:9',
      HTTPS_PROXY: 'http://127.0.0.1:9',
    },
  });
  const template: unknown = JSON.parse(readFileSync(join(out, 'cloudformation-template-update-stack.json'), 'utf8'));
  if (!isObject(template) || !isObject(template.Resources)) throw new Error('no Resources in the template');
  const resources: Record<string, Resource> = {};
  for (const [name, r] of Object.entries(template.Resources)) {
    if (isObject(r) && typeof r.Type === 'string') resources[name] = { Type: r.Type, Properties: isObject(r.Properties) ? r.Properties : {} };
  }
  const listing = await run('unzip', ['-Z1', join(out, 'haproxy-weighter.zip')]);
  return { resources, outputs: isObject(template.Outputs) ? template.Outputs : {}, zipEntries: listing.stdout.split('\n').filter((l) => l !== '') };
}

describe('serverless package (osls, offline)', () => {
  let base: string;
  let prod: Packaged;
  let dev: Packaged;

  beforeAll(async () => {
    base = mkdtempSync(join(tmpdir(), 'hw-sls-'));
    mkdirSync(join(base, 'svc/dist'), { recursive: true });
    mkdirSync(join(base, 'svc/infra'));
    copyFileSync(join(ROOT, 'serverless.yml'), join(base, 'svc/serverless.yml'));
    copyFileSync(join(ROOT, 'infra/ssm-document.yaml'), join(base, 'svc/infra/ssm-document.yaml'));
    // The same bundle as dist/handler.mjs (scripts/bundle.mjs).
    await bundleHandler(join(base, 'svc/dist/handler.mjs'));
    writeFileSync(join(base, 'svc/dist/not-packaged.txt'), 'only the bundle goes into the zip');
    // One after the other: osls keeps working files in the service directory.
    prod = await packageStage(base, 'prod');
    dev = await packageStage(base, 'dev');
  }, 240_000);

  afterAll(() => {
    if (base !== undefined) rmSync(base, { recursive: true, force: true });
  });

  const ofType = (p: Packaged, type: string): [string, Resource][] => Object.entries(p.resources).filter(([, r]) => r.Type === type);
  const only = (p: Packaged, type: string): Resource => {
    const found = ofType(p, type);
    expect(found.map(([name]) => name)).toHaveLength(1);
    const [first] = found;
    if (first === undefined) throw new Error(`no ${type}`);
    return first[1];
  };
  const statements = (p: Packaged): Record<string, unknown>[] =>
    ofType(p, 'AWS::IAM::Role').flatMap(([, role]) =>
      asList(role.Properties.Policies).flatMap((policy) => (isObject(policy) && isObject(policy.PolicyDocument) ? asList(policy.PolicyDocument.Statement).filter(isObject) : [])),
    );

  it('packages only the esbuild bundle, for Node.js 24', () => {
    expect(prod.zipEntries).toEqual(['dist/handler.mjs']);
    const fn = only(prod, 'AWS::Lambda::Function');
    expect(fn.Properties).toMatchObject({ Runtime: 'nodejs24.x', Handler: 'dist/handler.handler' });
  });

  it('runs the function on a schedule whose rate is a stage parameter', () => {
    for (const [p, rate] of [
      [prod, 'rate(1 minute)'],
      [dev, 'rate(5 minutes)'],
    ] as const) {
      const rule = only(p, 'AWS::Events::Rule');
      expect(rule.Properties.ScheduleExpression).toBe(rate);
      expect(rule.Properties.State).toBe('ENABLED');
      expect(text(asList(rule.Properties.Targets).filter(isObject)[0]?.Arn)).toContain('RebalanceLambdaFunction');
    }
  });

  it('reserves a concurrency of 1 and never retries a scheduled invocation', () => {
    expect(only(prod, 'AWS::Lambda::Function').Properties.ReservedConcurrentExecutions).toBe(1);
    expect(only(prod, 'AWS::Lambda::EventInvokeConfig').Properties).toMatchObject({ MaximumRetryAttempts: 0, MaximumEventAgeInSeconds: 60 });
  });

  it('deploys the SSM Command document from infra/ as a resource of the stack', () => {
    const doc = only(prod, 'AWS::SSM::Document');
    expect(doc.Properties).toMatchObject({ Name: 'haproxy-weighter-prod-relay', DocumentType: 'Command' });
    expect(doc.Properties.Content).toEqual(parseYaml(readFileSync(join(ROOT, 'infra/ssm-document.yaml'), 'utf8')));
    const fn = only(prod, 'AWS::Lambda::Function');
    expect(fn.Properties.Environment).toMatchObject({ Variables: { RELAY_DOCUMENT_NAME: 'haproxy-weighter-prod-relay' } });
  });

  it('sends every alarm to the SNS topic of the stack', () => {
    const [topicName] = ofType(prod, 'AWS::SNS::Topic').map(([name]) => name);
    expect(topicName).toBeDefined();
    const alarms = ofType(prod, 'AWS::CloudWatch::Alarm').map(([, a]) => a.Properties);
    const byMetric = Object.fromEntries(alarms.map((a) => [`${String(a.Namespace)}/${String(a.MetricName)}`, a]));
    expect(Object.keys(byMetric).sort()).toEqual(
      [
        'AWS/Lambda/Errors',
        'AWS/Lambda/Throttles',
        'HaproxyWeighter/CyclesCompleted',
        'HaproxyWeighter/GraphiteFailures',
        'HaproxyWeighter/LoadBalancersFailed',
        'HaproxyWeighter/MaxImbalance',
      ].sort(),
    );
    for (const a of alarms) expect(a.AlarmActions).toEqual([{ Ref: topicName }]);
    expect(byMetric['HaproxyWeighter/MaxImbalance']).toMatchObject({ Threshold: 1.5, ComparisonOperator: 'GreaterThanThreshold', EvaluationPeriods: 10 });
    // Missing data is the symptom: the schedule stopped, or every cycle dies before its end.
    expect(byMetric['HaproxyWeighter/CyclesCompleted']).toMatchObject({ TreatMissingData: 'breaching', ComparisonOperator: 'LessThanThreshold', Threshold: 1 });
    // Graphite down keeps every weight (fail static): only an alarm tells the on-call.
    expect(byMetric['HaproxyWeighter/GraphiteFailures']).toMatchObject({ Threshold: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold', EvaluationPeriods: 3 });
  });

  it('has no IAM statement that allows every action or every SSM action', () => {
    const actions = statements(prod).flatMap((s) => asList(s.Action).map(String));
    expect(actions.length).toBeGreaterThan(5);
    expect(actions.filter((a) => a === '*' || a.endsWith(':*'))).toEqual([]);
  });

  it('scopes ssm:SendCommand to the stack’s document and to instances carrying the load balancer tag', () => {
    const send = statements(prod).filter((s) => asList(s.Action).includes('ssm:SendCommand'));
    const resources = send.map((s) => asList(s.Resource).map(text));
    expect(resources.flat().filter((r) => r === '*')).toEqual([]);

    const onDocument = send.filter((s) => asList(s.Resource).map(text).every((r) => r.endsWith(':document/haproxy-weighter-prod-relay')));
    expect(onDocument).toHaveLength(1);
    const onInstances = send.filter((s) => asList(s.Resource).map(text).some((r) => r.endsWith(':instance/*')));
    expect(onInstances).toHaveLength(1);
    expect(onInstances[0]?.Condition).toEqual({ StringEquals: { 'ssm:resourceTag/haproxy-weighter': 'enabled' } });
    expect(asList(onInstances[0]?.Resource).map(text).every((r) => /:(instance|managed-instance)\/\*$/.test(r))).toBe(true);
  });

  it('lets the function read only its own two parameters and decrypt only the key parameter', () => {
    const all = statements(prod);
    const get = all.filter((s) => asList(s.Action).some((a) => String(a).startsWith('ssm:GetParameter')));
    expect(get.flatMap((s) => asList(s.Resource).map(text)).map((r) => r.replace(/^.*:parameter/, ''))).toEqual(['/haproxy-weighter/prod/config', '/haproxy-weighter/prod/graphite-key']);
    const kms = all.filter((s) => asList(s.Action).some((a) => String(a).startsWith('kms:')));
    expect(kms.flatMap((s) => asList(s.Action))).toEqual(['kms:Decrypt']);
    const condition = kms[0]?.Condition;
    expect(isObject(condition) && isObject(condition.StringEquals) ? text(condition.StringEquals['kms:EncryptionContext:PARAMETER_ARN']) : '').toMatch(/:parameter\/haproxy-weighter\/prod\/graphite-key$/);
  });
});
