/**
 * The local SSM endpoint keeps the documented limits the relay relies on: the 64 KB quota on the
 * document plus its parameters, the output limits of GetCommandInvocation (and none in S3), the
 * latency of a real command, and throttling above a rate.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSsmClient, createSsmRelayFor, ssmApiFromClient } from '../../functions/adapters/ssm-relay.js';
import { DOCUMENT_NAME, TEST_CREDENTIALS, startSsmFleet, type SsmFleet } from '../ssm-endpoint/fleet.js';
import { MAX_DOCUMENT_BYTES, STDOUT_LIMIT, commandBytes, instanceAccessKeyId, loadCommandDocument } from '../ssm-endpoint/ssm-endpoint.js';
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
