/**
 * The doctor's AWS checks on the answers of GetDocument and DescribeInstanceInformation, given as
 * data (a stand-in for the two read-only calls). Through the local SSM endpoint and the Lambda:
 * test/integration/aws-doctor.test.ts.
 */
import { readFileSync } from 'node:fs';
import { DocumentStatus, type InstanceInformation } from '@aws-sdk/client-ssm';
import { describe, expect, it } from 'vitest';
import { awsDoctorChecks, compareVersions, type AwsDoctorApi, type AwsDoctorSettings } from '../../functions/aws/doctor-aws.js';
import type { DoctorCheck } from '../../functions/core/doctor.js';

const SHIPPED = readFileSync('infra/ssm-document.yaml', 'utf8');
const TAG = { key: 'haproxy-weighter', value: 'prod' };

interface Instance extends InstanceInformation {
  readonly tags: Readonly<Record<string, string>>;
}

const instance = (id: string, edit: Partial<InstanceInformation> = {}, tags: Record<string, string> = { 'haproxy-weighter': 'prod' }): Instance => ({
  InstanceId: id,
  PingStatus: 'Online',
  PlatformType: 'Linux',
  PlatformName: 'Amazon Linux',
  AgentVersion: '3.3.2746.0',
  ...edit,
  tags,
});

function api(instances: readonly Instance[], document: { content?: string; error?: string; status?: DocumentStatus } = {}): AwsDoctorApi & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    getDocument: async (input) => {
      calls.push(`GetDocument ${String(input.Name)}`);
      if (document.error !== undefined) throw Object.assign(new Error(`${document.error} for ${String(input.Name)}`), { name: document.error });
      return { $metadata: {}, Name: input.Name, DocumentType: 'Command', Status: document.status ?? 'Active', DocumentVersion: '3', Content: document.content ?? SHIPPED, DocumentFormat: 'YAML' };
    },
    describeInstanceInformation: async (input) => {
      const [filter] = input.Filters ?? [];
      calls.push(`Describe ${String(filter?.Key)}=${String(filter?.Values?.join(','))}`);
      const tag = /^tag:(.+)$/.exec(filter?.Key ?? '')?.[1];
      const list = instances.filter((i) => (tag !== undefined ? filter?.Values?.includes(i.tags[tag] ?? '') : filter?.Values?.includes(i.InstanceId ?? '')));
      return { $metadata: {}, InstanceInformationList: list.map(({ tags: _tags, ...info }) => info) };
    },
  };
}

const byTag: AwsDoctorSettings = { relay: { documentName: 'hw-prod-relay', targets: { tag: TAG } }, targetTag: TAG };
const rows = (checks: readonly DoctorCheck[]) => checks.map((c) => [c.check, c.status, c.code, c.loadBalancer]);

describe('compareVersions', () => {
  it.each([
    ['3.3.2746.0', '3.3.2746.0', 0],
    ['3.3.2746.1', '3.3.2746.0', 1],
    ['3.10.0.0', '3.3.2746.0', 1],
    ['3.2.1000.0', '3.3.2746.0', -1],
    ['3.3', '3.3.2746.0', -1],
  ])('compares %s with %s numerically', (a, b, sign) => {
    expect(Math.sign(compareVersions(a, b) ?? Number.NaN)).toBe(sign);
  });

  it('refuses to compare what is not a dotted version', () => {
    expect(compareVersions('latest', '3.3.2746.0')).toBeNull();
  });
});

describe('awsDoctorChecks', () => {
  it('finds the shipped document and every tagged instance online, tagged and with a recent agent', async () => {
    const checks = await awsDoctorChecks(byTag, api([instance('i-0aaaaaaaaaaaaaaa1'), instance('i-0aaaaaaaaaaaaaaa2', { AgentVersion: '3.3.3050.0' })]));
    expect(rows(checks)).toEqual([
      ['ssm-document', 'ok', null, null],
      ['instances-found', 'ok', null, null],
      ['instance-online', 'ok', null, 'i-0aaaaaaaaaaaaaaa1'],
      ['instance-tag', 'ok', null, 'i-0aaaaaaaaaaaaaaa1'],
      ['ssm-agent-version', 'ok', null, 'i-0aaaaaaaaaaaaaaa1'],
      ['instance-online', 'ok', null, 'i-0aaaaaaaaaaaaaaa2'],
      ['instance-tag', 'ok', null, 'i-0aaaaaaaaaaaaaaa2'],
      ['ssm-agent-version', 'ok', null, 'i-0aaaaaaaaaaaaaaa2'],
    ]);
  });

  it.each([
    ['a document that does not exist', { error: 'InvalidDocument' }, 'document-missing', 'npx serverless deploy'],
    ['a document of another version (another command grammar)', { content: SHIPPED.replace('|show cli level)', ')') }, 'document-not-stack', 'deploy the stack of this version'],
    ['a document that is not the relay', { content: 'schemaVersion: "2.2"\nparameters: {}\nmainSteps: []\n' }, 'document-not-stack', 'deploy the stack of this version'],
    ['a document still being created', { status: DocumentStatus.Creating }, 'document-not-stack', 'wait for the deployment to finish'],
    ['a role without ssm:GetDocument', { error: 'AccessDeniedException' }, 'ssm-api-failed', 'ssm:GetDocument on the document hw-prod-relay'],
  ])('names %s', async (_what, document, code, fix) => {
    const [check] = await awsDoctorChecks(byTag, api([instance('i-0aaaaaaaaaaaaaaa1')], document));
    expect(check).toMatchObject({ check: 'ssm-document', status: 'failed', code });
    expect(check?.fix).toContain(fix);
  });

  it('names an instance offline and an agent too old for ENV_VAR, each with its fix', async () => {
    const checks = await awsDoctorChecks(
      byTag,
      api([instance('i-0aaaaaaaaaaaaaaa1', { PingStatus: 'ConnectionLost', LastPingDateTime: new Date('2026-11-30T10:00:00Z') }), instance('i-0aaaaaaaaaaaaaaa2', { AgentVersion: '3.2.1705.0' })]),
    );
    expect(rows(checks).filter(([, status]) => status !== 'ok')).toEqual([
      ['instance-online', 'failed', 'instance-offline', 'i-0aaaaaaaaaaaaaaa1'],
      ['ssm-agent-version', 'failed', 'agent-too-old', 'i-0aaaaaaaaaaaaaaa2'],
    ]);
    expect(checks.find((c) => c.code === 'instance-offline')?.message).toContain('ConnectionLost; last seen 2026-11-30T10:00:00.000Z');
    expect(checks.find((c) => c.code === 'agent-too-old')?.fix).toContain('update the SSM Agent to 3.3.2746.0 or later');
  });

  it('names no instance carrying the tag', async () => {
    expect(rows(await awsDoctorChecks(byTag, api([instance('i-0aaaaaaaaaaaaaaa1', {}, { 'haproxy-weighter': 'dev' })])))).toEqual([
      ['ssm-document', 'ok', null, null],
      ['instances-found', 'failed', 'no-instances', null],
    ]);
  });

  it('checks configured instance ids against the stack tag and Systems Manager', async () => {
    const settings: AwsDoctorSettings = { relay: { documentName: 'hw-prod-relay', targets: { instanceIds: ['i-0aaaaaaaaaaaaaaa1', 'i-0aaaaaaaaaaaaaaa2', 'i-0aaaaaaaaaaaaaaa3'] } }, targetTag: TAG };
    const checks = await awsDoctorChecks(settings, api([instance('i-0aaaaaaaaaaaaaaa1'), instance('i-0aaaaaaaaaaaaaaa2', {}, { 'haproxy-weighter': 'dev' })]));
    expect(rows(checks).filter(([, status]) => status !== 'ok')).toEqual([
      ['instances-found', 'failed', 'instance-unknown', null],
      ['instance-tag', 'failed', 'instance-not-tagged', 'i-0aaaaaaaaaaaaaaa2'],
    ]);
    expect(checks.find((c) => c.code === 'instance-unknown')?.message).toContain('i-0aaaaaaaaaaaaaaa3');
  });

  it('skips the tag check when the stack names no tag', async () => {
    const checks = await awsDoctorChecks({ ...byTag, targetTag: undefined }, api([instance('i-0aaaaaaaaaaaaaaa1')]));
    expect(checks.find((c) => c.check === 'instance-tag')).toMatchObject({ status: 'skipped' });
  });
});
