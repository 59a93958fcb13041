import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSsmRelayFor, decodeDocumentOutput } from '../../functions/adapters/ssm-relay.js';
import { DOCUMENT_NAME, SOCKET_PATH, startSsmFleet, type SsmFleet } from '../ssm-endpoint/fleet.js';

/**
 * The real document, sent through the real SDK to the local SSM endpoint, on its own: without our
 * relay's validation in front of it.
 */
describe('the SSM document through the local SSM endpoint', () => {
  let fleet: SsmFleet;

  beforeAll(async () => {
    fleet = await startSsmFleet(1, [{ name: 'be_ingest', balance: 'roundrobin', servers: [{ name: 's1' }, { name: 's2', weight: 50 }] }]);
  });
  afterAll(async () => {
    await fleet?.stop();
  });

  const send = (parameters: Record<string, string[]>, instanceIds: readonly string[] = fleet.instanceIds) =>
    fleet.api.sendCommand({ DocumentName: DOCUMENT_NAME, InstanceIds: [...instanceIds], Parameters: parameters, TimeoutSeconds: 60 });

  it.each([
    ['a command separator in a server name', { Commands: ['set server be_ingest/a;shutdown sessions weight 5'] }],
    ['a command substitution in a server name', { Commands: ['get weight be_ingest/$(reboot)'] }],
    ['a newline after a valid command', { Commands: ['get weight be_ingest/s1\nshutdown sessions server be_ingest/s1'] }],
    ['a socket path with a command after it', { Commands: ['get weight be_ingest/s1'], SocketPath: ['/run/haproxy/admin.sock; reboot'] }],
    ['a relative socket path', { Commands: ['get weight be_ingest/s1'], SocketPath: ['../admin.sock'] }],
    ['a parameter the document does not declare', { Commands: ['get weight be_ingest/s1'], Script: ['reboot'] }],
  ])('rejects %s with InvalidParameters, running nothing', async (_label, parameters) => {
    const before = fleet.endpoint.invocations().length;
    await expect(send(parameters)).rejects.toMatchObject({ name: 'InvalidParameters' });
    expect(fleet.endpoint.invocations().length).toBe(before);
  });

  it('rejects more than 50 instance ids in one SendCommand', async () => {
    const ids = Array.from({ length: 51 }, (_, i) => `i-${i.toString(16).padStart(17, '0')}`);
    await expect(send({ Commands: ['get weight be_ingest/s1'] }, ids)).rejects.toMatchObject({ name: 'ValidationException' });
  });

  it('hands the parameters to the script as SSM_ environment variables and defaults the socket path', async () => {
    const sent = await send({ Commands: ['get weight be_ingest/s2'] });
    expect(sent.Command?.Parameters).toEqual({ Commands: ['get weight be_ingest/s2'], SocketPath: [SOCKET_PATH] });
    const relay = createSsmRelayFor(fleet.settings, fleet.instanceIds, { api: fleet.api });
    const results = await relay.run([{ loadBalancer: String(fleet.instanceIds[0]), commands: ['get weight be_ingest/s2'] }]);
    expect(results[0]).toMatchObject({ ok: true, reply: '50 (initial 50)\n\n' });
  });

  it('prints exactly what socat printed, byte for byte, once decoded', async () => {
    const id = String(fleet.instanceIds[0]);
    const commands = 'get weight be_ingest/s1; get weight be_ingest/nope; get weight be_ingest/s2';
    const sent = await send({ Commands: [commands] });
    const commandId = String(sent.Command?.CommandId);
    let stdout = '';
    // Polled until the script has run, however loaded the machine (60 s at most).
    for (let i = 0; i < 3_000 && stdout === ''; i++) {
      await new Promise((r) => setTimeout(r, 20));
      const out = await fleet.api.getCommandInvocation({ CommandId: commandId, InstanceId: id }).catch(() => undefined);
      if (out?.Status === 'Success') stdout = out.StandardOutputContent ?? '';
    }
    const direct = await fleet.byInstance(id).runtime(commands);
    expect(direct).toContain('No such server.');
    expect(decodeDocumentOutput(stdout, id)).toBe(direct);
  });
});
