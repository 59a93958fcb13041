import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bundleHandler } from '../../scripts/bundle.mjs';
import { REPO_ROOT } from '../harness/paths.js';
import { asList, copyService, isObject, ofType, text, type Packaged, type Resource } from '../harness/serverless-package.js';

/**
 * `serverless package` (osls) on a copy of the service with a fresh esbuild bundle of the handler,
 * offline (test/harness/serverless-package.ts). The assertions read the generated CloudFormation
 * template of each stage, with the stage parameters as shipped or as an operator would set them.
 * (test/integration/alarms.test.ts evaluates the alarms of the same templates.)
 */

const VPC = { subnetIds: ['subnet-0aaaaaaaaaaaaaaa1', 'subnet-0bbbbbbbbbbbbbbb2'], securityGroupIds: ['sg-0ccccccccccccccc3'] };

describe('serverless package (osls, offline)', () => {
  let base: string;
  let prod: Packaged;
  let dev: Packaged;
  /** prod with reservedConcurrency=1 and memorySize=1769 given on the command line and a VPC added to its params. */
  let tuned: Packaged;

  beforeAll(async () => {
    base = mkdtempSync(join(tmpdir(), 'hw-sls-'));
    // The same bundle as dist/handler.mjs (scripts/bundle.mjs), and a file that must stay out.
    const service = await copyService(base, async (outfile) => {
      await bundleHandler(outfile);
      writeFileSync(join(outfile, '../not-packaged.txt'), 'only the bundle goes into the zip');
    });
    const tunedService = await copyService(join(base, 'tuned'), async (outfile) => writeFileSync(outfile, '// placeholder'), { prod: { vpc: VPC } });
    prod = await service.package('prod');
    dev = await service.package('dev');
    tuned = await tunedService.package('prod', { reservedConcurrency: '1', memorySize: '1769' });
  }, 240_000);

  afterAll(() => {
    if (base !== undefined) rmSync(base, { recursive: true, force: true });
  });

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

  it('packages only the esbuild bundle (its entry and the chunks it loads on demand), for Node.js 24', () => {
    expect(prod.zipEntries).toContain('dist/handler.mjs');
    expect(prod.zipEntries.length).toBeGreaterThan(1);
    for (const entry of prod.zipEntries) expect(entry).toMatch(/^dist\/handler(-[\w-]+)?\.mjs$/);
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

  it('reserves no concurrency unless the reservedConcurrency parameter says so, and never retries a failed scheduled cycle', () => {
    expect(only(prod, 'AWS::Lambda::Function').Properties).not.toHaveProperty('ReservedConcurrentExecutions');
    expect(only(dev, 'AWS::Lambda::Function').Properties).not.toHaveProperty('ReservedConcurrentExecutions');
    expect(Number(only(tuned, 'AWS::Lambda::Function').Properties.ReservedConcurrentExecutions)).toBe(1);
    expect(only(prod, 'AWS::Lambda::EventInvokeConfig').Properties).toMatchObject({ MaximumRetryAttempts: 0, MaximumEventAgeInSeconds: 60 });
  });

  it('gives the function 256 MB unless the memorySize parameter says otherwise', () => {
    expect(Number(only(prod, 'AWS::Lambda::Function').Properties.MemorySize)).toBe(256);
    expect(Number(only(dev, 'AWS::Lambda::Function').Properties.MemorySize)).toBe(256);
    expect(Number(only(tuned, 'AWS::Lambda::Function').Properties.MemorySize)).toBe(1769);
  });

  it('runs the function outside any VPC unless the stage sets one, and then in its subnets with the ENI permissions', () => {
    const vpcPolicy = (p: Packaged): string[] =>
      ofType(p, 'AWS::IAM::Role')
        .flatMap(([, role]) => asList(role.Properties.ManagedPolicyArns ?? []))
        .map(text)
        .filter((arn) => arn.endsWith('AWSLambdaVPCAccessExecutionRole'));
    for (const p of [prod, dev]) {
      expect(only(p, 'AWS::Lambda::Function').Properties).not.toHaveProperty('VpcConfig');
      expect(vpcPolicy(p)).toEqual([]);
    }
    expect(only(tuned, 'AWS::Lambda::Function').Properties.VpcConfig).toEqual({ SubnetIds: VPC.subnetIds, SecurityGroupIds: VPC.securityGroupIds });
    expect(vpcPolicy(tuned)).toHaveLength(1);
  });

  it('gives each stage its own target tag value and tells the function which one its role may use', () => {
    for (const [p, stage] of [
      [prod, 'prod'],
      [dev, 'dev'],
    ] as const) {
      const send = statements(p).filter((st) => asList(st.Action).includes('ssm:SendCommand') && st.Condition !== undefined);
      expect(send.map((st) => st.Condition)).toEqual([{ StringEquals: { 'ssm:resourceTag/haproxy-weighter': stage } }]);
      expect(only(p, 'AWS::Lambda::Function').Properties.Environment).toMatchObject({ Variables: { TARGET_TAG_KEY: 'haproxy-weighter', TARGET_TAG_VALUE: stage } });
    }
  });

  it('deploys the SSM Command document from infra/ as a resource of the stack', () => {
    const doc = only(prod, 'AWS::SSM::Document');
    expect(doc.Properties).toMatchObject({ Name: 'haproxy-weighter-prod-relay', DocumentType: 'Command' });
    expect(doc.Properties.Content).toEqual(parseYaml(readFileSync(join(REPO_ROOT, 'infra/ssm-document.yaml'), 'utf8')));
    const fn = only(prod, 'AWS::Lambda::Function');
    expect(fn.Properties.Environment).toMatchObject({ Variables: { RELAY_DOCUMENT_NAME: 'haproxy-weighter-prod-relay' } });
  });

  it('sends every alarm to the SNS topic of the stack, on the metrics the handler emits', () => {
    const [topicName] = ofType(prod, 'AWS::SNS::Topic').map(([name]) => name);
    expect(topicName).toBeDefined();
    const alarms = ofType(prod, 'AWS::CloudWatch::Alarm').map(([, a]) => a.Properties);
    const metricOf = (a: Record<string, unknown>): string => {
      const stat = asList(a.Metrics).filter(isObject).map((q) => q.MetricStat).find(isObject);
      const metric = isObject(stat) && isObject(stat.Metric) ? stat.Metric : a;
      return `${String(metric.Namespace)}/${String(metric.MetricName)}`;
    };
    expect(alarms.map(metricOf).sort()).toEqual(
      [
        'AWS/Lambda/Errors',
        'AWS/Lambda/Throttles',
        'HaproxyWeighter/CyclesCompleted',
        'HaproxyWeighter/GraphiteFailures',
        'HaproxyWeighter/LoadBalancersFailed',
        'HaproxyWeighter/MaxImbalance',
      ].sort(),
    );
    for (const a of alarms) {
      expect(a.AlarmActions).toEqual([{ Ref: topicName }]);
      expect(a.OKActions).toEqual([{ Ref: topicName }]);
    }
  });

  it('gives the per-cycle alarms the schedule interval of each stage as their period', () => {
    for (const [p, seconds] of [
      [prod, 60],
      [dev, 300],
    ] as const) {
      const rate = String(only(p, 'AWS::Events::Rule').Properties.ScheduleExpression);
      const match = /^rate\((\d+) minutes?\)$/.exec(rate);
      expect(Number(match?.[1]) * 60).toBe(seconds);
      const periods = ofType(p, 'AWS::CloudWatch::Alarm')
        .filter(([name]) => name !== 'NoCycleAlarm')
        .map(([name, a]) => [name, Number(a.Properties.Period)]);
      expect(periods.length).toBe(5);
      for (const [name, period] of periods) expect(period, String(name)).toBe(seconds);
    }
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
    expect(onInstances[0]?.Condition).toEqual({ StringEquals: { 'ssm:resourceTag/haproxy-weighter': 'prod' } });
    expect(asList(onInstances[0]?.Resource).map(text).every((r) => /:(instance|managed-instance)\/\*$/.test(r))).toBe(true);
  });

  it("lets the doctor read only the stack's own Command document", () => {
    const get = statements(prod).filter((s) => asList(s.Action).includes('ssm:GetDocument'));
    expect(get.map((s) => asList(s.Action))).toEqual([['ssm:GetDocument']]);
    expect(get.flatMap((s) => asList(s.Resource).map(text))).toEqual(['arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:document/haproxy-weighter-prod-relay']);
  });

  it('lets the function read only its own two parameters, and limits its kms:Decrypt to SSM and the key parameter’s encryption context', () => {
    const all = statements(prod);
    const get = all.filter((s) => asList(s.Action).some((a) => String(a).startsWith('ssm:GetParameter')));
    expect(get.flatMap((s) => asList(s.Resource).map(text)).map((r) => r.replace(/^.*:parameter/, ''))).toEqual(['/haproxy-weighter/prod/config', '/haproxy-weighter/prod/graphite-key']);
    const kms = all.filter((s) => asList(s.Action).some((a) => String(a).startsWith('kms:')));
    expect(kms.flatMap((s) => asList(s.Action))).toEqual(['kms:Decrypt']);
    expect(kms.flatMap((s) => asList(s.Resource).map(text))).toEqual(['arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:key/*']);
    const condition = kms[0]?.Condition;
    const equals = isObject(condition) && isObject(condition.StringEquals) ? condition.StringEquals : {};
    expect(text(equals['kms:ViaService'])).toBe('ssm.${AWS::Region}.amazonaws.com');
    expect(text(equals['kms:EncryptionContext:PARAMETER_ARN'])).toMatch(/:parameter\/haproxy-weighter\/prod\/graphite-key$/);
  });

  it('tells the function both parameter names; it reads the key parameter only when the configuration needs it', () => {
    expect(only(dev, 'AWS::Lambda::Function').Properties.Environment).toMatchObject({
      Variables: { CONFIG_PARAMETER: '/haproxy-weighter/dev/config', GRAPHITE_KEY_PARAMETER: '/haproxy-weighter/dev/graphite-key' },
    });
  });

  it('keeps command output in a private, encrypted bucket of the stack that forgets it after a day', () => {
    const bucket = prod.resources.RelayOutputBucket?.Properties ?? {};
    expect(bucket.PublicAccessBlockConfiguration).toEqual({ BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true });
    expect(bucket.BucketEncryption).toEqual({ ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] });
    expect(bucket.LifecycleConfiguration).toEqual({ Rules: [{ Id: 'expire-command-output', Status: 'Enabled', Prefix: 'haproxy-weighter/', ExpirationInDays: 1 }] });
    const fn = only(prod, 'AWS::Lambda::Function').Properties;
    const env = isObject(fn.Environment) && isObject(fn.Environment.Variables) ? fn.Environment.Variables : {};
    expect(text(env.RELAY_OUTPUT_BUCKET)).toBe('${RelayOutputBucket}');
  });

  it('lets the function read the command output under the relay’s prefix only, and offers the load balancers a policy to write it', () => {
    const s3 = statements(prod).filter((s) => asList(s.Action).some((a) => String(a).startsWith('s3:')));
    expect(s3.flatMap((s) => asList(s.Action))).toEqual(['s3:GetObject']);
    expect(s3.flatMap((s) => asList(s.Resource).map(text))).toEqual(['arn:${AWS::Partition}:s3:::${RelayOutputBucket}/haproxy-weighter/*']);
    const write = only(prod, 'AWS::IAM::ManagedPolicy').Properties;
    const doc = isObject(write.PolicyDocument) ? asList(write.PolicyDocument.Statement).filter(isObject) : [];
    expect(doc.map((st) => [asList(st.Action), asList(st.Resource).map(text)])).toEqual([
      [['s3:PutObject'], ['arn:${AWS::Partition}:s3:::${RelayOutputBucket}/haproxy-weighter/*']],
      [['s3:GetEncryptionConfiguration'], ['arn:${AWS::Partition}:s3:::${RelayOutputBucket}']],
    ]);
    expect(prod.outputs.RelayOutputWritePolicyArn).toMatchObject({ Value: { Ref: 'RelayOutputWritePolicy' } });
  });
});
