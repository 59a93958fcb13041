/**
 * The local SSM endpoint keeps the documented limits the relay relies on: the 64 KB quota on the
 * document plus its parameters, the output limits of GetCommandInvocation and ListCommandInvocations
 * (and none in S3), the latency of a real command, throttling above a rate, and the API reference's
 * rules for DescribeInstanceInformation's filters and for paging.
 */
import type { CommandInvocation, DescribeInstanceInformationCommandInput, ListCommandInvocationsCommandInput } from '@aws-sdk/client-ssm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSsmClient, createSsmRelayFor, ssmApiFromClient } from '../../functions/adapters/ssm-relay.js';
import { DOCUMENT_NAME, TAG, TEST_CREDENTIALS, instanceId, startSsmFleet, type SsmFleet } from '../ssm-endpoint/fleet.js';
import { MAX_DOCUMENT_BYTES, PLUGIN_OUTPUT_LIMIT, STDOUT_LIMIT, commandBytes, instanceAccessKeyId, loadCommandDocument } from '../ssm-endpoint/ssm-endpoint.js';
import { DOCUMENT_PATH } from '../ssm-endpoint/fleet.js';

const servers = Array.from({ length: 500 }, (_, i) => ({ name: `ingest-${String(i).padStart(3, '0')}.eu-west-1.internal` }));
// Eight backends of 500 servers: their observation is too large for GetCommandInvocation.
const BACKENDS = Array.from({ length: 8 }, (_, b) => ({ name: `be${b}`, balance: 'roundrobin' as const, servers: servers.map((s) => ({ name: `${b}-${s.name}` })) }));
const OBSERVE_ALL = BACKENDS.flatMap((b) => [`show stat ${b.name} 6 -1`, `show servers state ${b.name}`]);

describe('the local SSM endpoint’s limits', () => {
  let fleet: SsmFleet;
  const documentBytes = loadCommandDocument(DOCUMENT_PATH).contentBytes;

  beforeAll(async () => {
    fleet = await startSsmFleet(1, [{ name: 'be', balance: 'roundrobin', servers }, ...BACKENDS], { s3: true, latency: { apiMs: [10, 40], commandMs: [1_000, 3_000], seed: 7 } });
  });
  afterAll(async () => {
    await fleet?.stop();
  });

  /** A Commands value of `get weight` commands, `bytes` long or one command shorter. */
  const commandsOf = (bytes: number): string => {
    const one = 'get weight be/ingest-000.eu-west-1.internal';
    return Array.from({ length: Math.floor((bytes + 2) / (one.length + 2)) }, () => one).join('; ');
  };
  const send = (commands: string) => fleet.api.sendCommand({ DocumentName: DOCUMENT_NAME, InstanceIds: [...fleet.instanceIds], Parameters: { Commands: [commands] }, TimeoutSeconds: 60 });

  it('refuses a command whose document and parameters pass 64 KB with MaxDocumentSizeExceeded, running nothing', async () => {
    // One command more than fits, whatever the document's own size.
    const commands = commandsOf(MAX_DOCUMENT_BYTES - documentBytes + 60);
    const socketPath = '/run/haproxy/admin.sock';
    expect(commandBytes(documentBytes, { Commands: commands, SocketPath: socketPath })).toBeGreaterThan(MAX_DOCUMENT_BYTES);
    const before = fleet.endpoint.invocations().length;

    await expect(send(commands)).rejects.toMatchObject({ name: 'MaxDocumentSizeExceeded' });
    expect(fleet.endpoint.invocations().length).toBe(before);
  });

  it('accepts one just within the quota', async () => {
    const commands = commandsOf(MAX_DOCUMENT_BYTES - documentBytes - 200);
    expect(commandBytes(documentBytes, { Commands: commands, SocketPath: '/run/haproxy/admin.sock' })).toBeLessThanOrEqual(MAX_DOCUMENT_BYTES);
    const sent = await send(commands);
    expect(sent.Command?.CommandId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('answers InProgress for at least the command latency, then the output: cut in GetCommandInvocation, whole in S3', async () => {
    const id = String(fleet.instanceIds[0]);
    const started = Date.now();
    const sent = await fleet.api.sendCommand({
      DocumentName: DOCUMENT_NAME,
      InstanceIds: [id],
      Parameters: { Commands: [OBSERVE_ALL.join('; ')] },
      TimeoutSeconds: 60,
      OutputS3BucketName: 'haproxy-weighter-test-relay-output',
      OutputS3KeyPrefix: 'haproxy-weighter',
    });
    const commandId = String(sent.Command?.CommandId);
    let out: Awaited<ReturnType<SsmFleet['api']['getCommandInvocation']>> | undefined;
    const statuses: string[] = [];
    while (out?.Status !== 'Success') {
      await new Promise((r) => setTimeout(r, 100));
      out = await fleet.api.getCommandInvocation({ CommandId: commandId, InstanceId: id }).catch(() => undefined);
      if (out?.Status !== undefined) statuses.push(out.Status);
      if (Date.now() - started > 60_000) throw new Error(`no Success within 60 s: ${statuses.join(', ')}`);
    }
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_000);
    expect(statuses).toContain('InProgress');
    const whole = fleet.endpoint.invocations().find((i) => i.commandId === commandId);
    expect(whole?.stdout.length).toBeGreaterThan(STDOUT_LIMIT);
    expect(out.StandardOutputContent).toBe(whole?.stdout.slice(0, STDOUT_LIMIT));
    const key = `haproxy-weighter/${commandId}/${id}/awsrunShellScript/relayRuntimeCommands/stdout`;
    expect(out.StandardOutputUrl).toBe(`https://s3.us-east-1.amazonaws.com/haproxy-weighter-test-relay-output/${key}`);
    expect(fleet.s3?.object('haproxy-weighter-test-relay-output', key)?.toString('utf8')).toBe(whole?.stdout);
  });

  it('leaves no output in S3 when the instance profile may not write there, and the relay names the permission', async () => {
    const id = String(fleet.instanceIds[0]);
    fleet.s3?.denyWritesBy(instanceAccessKeyId(id));
    const relay = createSsmRelayFor({ ...fleet.settings, pollIntervalMs: 100 }, fleet.instanceIds, { api: fleet.api, ...(fleet.output === undefined ? {} : { output: fleet.output }) });
    const results = await relay.run([{ loadBalancer: id, commands: OBSERVE_ALL }]);

    const result = results[0];
    expect(result?.ok).toBe(false);
    expect(result?.ok === false ? result.error.message : '').toMatch(/NoSuchKey.*the instance profile of i-\w+ needs s3:PutObject on arn:aws:s3:::haproxy-weighter-test-relay-output\/haproxy-weighter\/\*/);
    expect(fleet.s3?.requests.some((r) => r.method === 'PUT' && r.status === 403 && r.accessKeyId === instanceAccessKeyId(id))).toBe(true);
  });
});

describe('the local SSM endpoint’s rate limit', () => {
  let fleet: SsmFleet;
  beforeAll(async () => {
    fleet = await startSsmFleet(1, [{ name: 'be', balance: 'roundrobin', servers: servers.slice(0, 2) }], { rateLimits: { DescribeInstanceInformation: 1 } });
  });
  afterAll(async () => {
    await fleet?.stop();
  });

  it('answers ThrottlingException to calls above the rate', async () => {
    const client = createSsmClient({ endpoint: fleet.endpoint.url, region: 'us-east-1', credentials: TEST_CREDENTIALS, maxAttempts: 1 });
    const api = ssmApiFromClient(client);
    const outcomes: string[] = [];
    for (let i = 0; i < 4; i++) {
      outcomes.push(await api.describeInstanceInformation({}).then(() => 'ok', (e: unknown) => (e instanceof Error ? e.name : 'error')));
    }
    client.destroy();
    expect(outcomes[0]).toBe('ok');
    expect(outcomes).toContain('ThrottlingException');
  });
});

describe('the local SSM endpoint’s DescribeInstanceInformation, as the API reference has it', () => {
  let fleet: SsmFleet;
  // Twelve instances with the fleet's tag: #1 offline, #2 a Windows node.
  beforeAll(async () => {
    fleet = await startSsmFleet(12, [{ name: 'be', balance: 'roundrobin', servers: servers.slice(0, 2) }], { haproxies: 1, instances: { 1: { online: false }, 2: { platform: 'Windows' } } });
  });
  afterAll(async () => {
    await fleet?.stop();
  });

  // The fleet's ids are fixed by index, so the table below can name them before the fleet starts.
  const id = instanceId;
  const all = (): string[] => Array.from({ length: 12 }, (_, i) => instanceId(i));
  const tag = { Key: `tag:${TAG.key}`, Values: [TAG.value] };

  /** Every page of a query, or the error's name. */
  const describeAll = async (input: DescribeInstanceInformationCommandInput): Promise<string[] | string> => {
    const ids: string[] = [];
    let next: string | undefined;
    try {
      do {
        const page = await fleet.api.describeInstanceInformation({ ...input, MaxResults: 50, ...(next === undefined ? {} : { NextToken: next }) });
        ids.push(...(page.InstanceInformationList ?? []).map((i) => String(i.InstanceId)));
        next = page.NextToken;
      } while (next !== undefined);
    } catch (error) {
      return error instanceof Error ? error.name : 'error';
    }
    return ids.sort();
  };

  it.each<[string, DescribeInstanceInformationCommandInput, (() => string[]) | string]>([
    ['a tag filter: every instance carrying the tag, offline or not Linux', { Filters: [tag] }, all],
    ['a tag filter with another value: none', { Filters: [{ Key: `tag:${TAG.key}`, Values: ['prod'] }] }, () => []],
    ['a tag-key filter', { Filters: [{ Key: 'tag-key', Values: [TAG.key] }] }, all],
    ['PingStatus ConnectionLost', { Filters: [{ Key: 'PingStatus', Values: ['ConnectionLost'] }] }, () => [id(1)]],
    ['PlatformTypes Windows', { Filters: [{ Key: 'PlatformTypes', Values: ['Windows'] }] }, () => [id(2)]],
    ['two filters: both must hold', { Filters: [{ Key: 'PingStatus', Values: ['Online'] }, { Key: 'PlatformTypes', Values: ['Linux'] }] }, () => all().filter((i) => i !== id(1) && i !== id(2))],
    ['two values of one filter: either may hold', { Filters: [{ Key: 'PingStatus', Values: ['Online', 'ConnectionLost'] }] }, all],
    ['InstanceIds', { Filters: [{ Key: 'InstanceIds', Values: [id(3), 'i-0fffffffffffffff0'] }] }, () => [id(3)]],
    ['the legacy list', { InstanceInformationFilterList: [{ key: 'PingStatus', valueSet: ['ConnectionLost'] }] }, () => [id(1)]],
    ['a tag filter combined with another filter type', { Filters: [tag, { Key: 'PingStatus', Values: ['Online'] }] }, 'ValidationException'],
    ['a key the reference does not list', { Filters: [{ Key: 'Platform', Values: ['Linux'] }] }, 'InvalidFilterKey'],
    ['a tag key in the legacy list', { InstanceInformationFilterList: [{ key: `tag:${TAG.key}` as 'InstanceIds', valueSet: [TAG.value] }] }, 'InvalidFilterKey'],
    ['a value the reference does not list', { Filters: [{ Key: 'PingStatus', Values: ['Up'] }] }, 'InvalidInstanceInformationFilterValue'],
    ['a malformed instance id', { Filters: [{ Key: 'InstanceIds', Values: ['web-1'] }] }, 'InvalidInstanceId'],
    ['both lists at once', { Filters: [tag], InstanceInformationFilterList: [{ key: 'PingStatus', valueSet: ['Online'] }] }, 'ValidationException'],
    ['a filter without values', { Filters: [{ Key: 'PingStatus', Values: [] }] }, 'ValidationException'],
  ])('answers %s', async (_label, input, expected) => {
    expect(await describeAll(input)).toEqual(typeof expected === 'string' ? expected : expected().sort());
  });

  it('pages with NextToken: 10 a page by default, MaxResults between 5 and 50, every instance once', async () => {
    const first = await fleet.api.describeInstanceInformation({ Filters: [tag] });
    expect(first.InstanceInformationList).toHaveLength(10);
    const sizes: number[] = [];
    const seen: string[] = [];
    let next: string | undefined;
    do {
      const page = await fleet.api.describeInstanceInformation({ Filters: [tag], MaxResults: 5, ...(next === undefined ? {} : { NextToken: next }) });
      sizes.push(page.InstanceInformationList?.length ?? 0);
      seen.push(...(page.InstanceInformationList ?? []).map((i) => String(i.InstanceId)));
      next = page.NextToken;
    } while (next !== undefined);
    expect(sizes).toEqual([5, 5, 2]);
    expect(seen.sort()).toEqual(all().sort());
    for (const max of [4, 51]) await expect(fleet.api.describeInstanceInformation({ Filters: [tag], MaxResults: max })).rejects.toMatchObject({ name: 'ValidationException' });
    await expect(fleet.api.describeInstanceInformation({ Filters: [tag], NextToken: 'not-a-token' })).rejects.toMatchObject({ name: 'InvalidNextToken' });
  });

  it('describes each instance’s agent and platform', async () => {
    const page = await fleet.api.describeInstanceInformation({ Filters: [{ Key: 'InstanceIds', Values: [id(0), id(1), id(2)] }] });
    const byId = new Map((page.InstanceInformationList ?? []).map((i) => [i.InstanceId, [i.PingStatus, i.PlatformType, i.LastPingDateTime instanceof Date]]));
    expect(byId).toEqual(
      new Map([
        [id(0), ['Online', 'Linux', true]],
        [id(1), ['ConnectionLost', 'Linux', true]],
        [id(2), ['Online', 'Windows', true]],
      ]),
    );
  });
});

describe('the local SSM endpoint’s ListCommandInvocations, as the API reference has it', () => {
  let fleet: SsmFleet;
  // Seven instances on one HAProxy with a 500-server backend; #6 is offline.
  beforeAll(async () => {
    fleet = await startSsmFleet(7, [{ name: 'be', balance: 'roundrobin', servers }], { haproxies: 1, instances: { 6: { online: false } } });
  });
  afterAll(async () => {
    await fleet?.stop();
  });

  const sendTo = async (ids: readonly string[], commands: string): Promise<string> => {
    const sent = await fleet.api.sendCommand({ DocumentName: DOCUMENT_NAME, InstanceIds: [...ids], Parameters: { Commands: [commands] }, TimeoutSeconds: 60 });
    return String(sent.Command?.CommandId);
  };
  /** One listing of a command, page by page. */
  const listAll = async (commandId: string, input: Partial<ListCommandInvocationsCommandInput> = {}): Promise<{ pages: number[]; invocations: CommandInvocation[] }> => {
    const pages: number[] = [];
    const invocations: CommandInvocation[] = [];
    let next: string | undefined;
    do {
      const page = await fleet.api.listCommandInvocations({ CommandId: commandId, ...input, ...(next === undefined ? {} : { NextToken: next }) });
      pages.push(page.CommandInvocations?.length ?? 0);
      invocations.push(...(page.CommandInvocations ?? []));
      next = page.NextToken;
    } while (next !== undefined);
    return { pages, invocations };
  };
  const finalOnes = async (commandId: string, count: number, input: Partial<ListCommandInvocationsCommandInput>): Promise<{ pages: number[]; invocations: CommandInvocation[] }> => {
    for (let i = 0; i < 600; i++) {
      const listed = await listAll(commandId, input);
      if (listed.invocations.filter((v) => ['Success', 'Failed', 'TimedOut', 'Cancelled'].includes(String(v.Status))).length >= count) return listed;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`fewer than ${count} final invocations of ${commandId}`);
  };

  it('pages the invocations of a command, MaxResults at a time, each once; the offline instance’s stays Pending', async () => {
    const commandId = await sendTo(fleet.instanceIds, 'show servers state be');
    const { pages, invocations } = await finalOnes(commandId, 6, { MaxResults: 3 });
    expect(pages).toEqual([3, 3, 1]);
    expect(invocations.map((v) => v.InstanceId).sort()).toEqual([...fleet.instanceIds].sort());
    expect(invocations.find((v) => v.InstanceId === fleet.instanceIds[6])).toMatchObject({ Status: 'Pending', StatusDetails: 'Pending' });
    expect(invocations.every((v) => v.CommandPlugins?.length === 0)).toBe(true);
  });

  it('gives each step’s status, exit code and output cut at 2,500 characters only with Details', async () => {
    const id = String(fleet.instanceIds[0]);
    const commandId = await sendTo([id], 'show stat be 6 -1; show servers state be');
    const { invocations } = await finalOnes(commandId, 1, { Details: true });
    const printed = fleet.endpoint.invocations().find((i) => i.commandId === commandId)?.stdout ?? '';
    expect(printed.length).toBeGreaterThan(PLUGIN_OUTPUT_LIMIT);
    expect(invocations[0]?.CommandPlugins).toEqual([
      expect.objectContaining({ Name: 'relayRuntimeCommands', Status: 'Success', StatusDetails: 'Success', ResponseCode: 0, Output: printed.slice(0, PLUGIN_OUTPUT_LIMIT), StandardOutputUrl: '' }),
    ]);
  });

  it('leaves an invocation out of the listings that come before it is registered, as GetCommandInvocation answers InvocationDoesNotExist', async () => {
    const id = String(fleet.instanceIds[1]);
    fleet.endpoint.invocationNotFound(id, 2);
    const commandId = await sendTo([id], 'show servers state be');
    fleet.endpoint.clearFaults();
    const counts: number[] = [];
    for (let i = 0; i < 3; i++) counts.push((await listAll(commandId)).invocations.length);
    expect(counts).toEqual([0, 0, 1]);
    expect(fleet.endpoint.invocations().find((i) => i.commandId === commandId)?.hidden).toBe(2);
  });

  it.each<[string, Partial<ListCommandInvocationsCommandInput>, string]>([
    ['MaxResults 0', { MaxResults: 0 }, 'ValidationException'],
    ['MaxResults 51', { MaxResults: 51 }, 'ValidationException'],
    ['a command id that was never sent', { CommandId: '00000000-0000-4000-8000-000000000000' }, 'InvalidCommandId'],
    ['the ExecutionStage filter, which only ListCommands takes', { Filters: [{ key: 'ExecutionStage', value: 'Executing' }] }, 'InvalidFilterKey'],
    ['a token from nowhere', { NextToken: 'bm90IGEgdG9rZW4' }, 'InvalidNextToken'],
  ])('refuses %s', async (_label, input, name) => {
    const commandId = await sendTo([String(fleet.instanceIds[2])], 'show servers state be');
    await expect(fleet.api.listCommandInvocations({ CommandId: commandId, ...input })).rejects.toMatchObject({ name });
  });
});
