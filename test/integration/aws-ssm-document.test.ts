import { rmSync, symlinkSync } from 'node:fs';
import type { GetCommandInvocationCommandOutput } from '@aws-sdk/client-ssm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createSsmRelayFor, decodeDocumentOutput } from '../../functions/adapters/ssm-relay.js';
import { holdLock, lockWaiters, type HeldLock } from '../harness/flock.js';
import { waitFor } from '../harness/processes.js';
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

  describe('the lock around the exchange with HAProxy', () => {
    let held: HeldLock | undefined;
    afterEach(async () => {
      await held?.release();
      held = undefined;
      await fleet.byInstance(String(fleet.instanceIds[0])).runtime('set server be_ingest/s1 weight 100');
    });

    const id = (): string => String(fleet.instanceIds[0]);
    // The document locks `<socket>.haproxy-weighter.lock`; the instance's socket is this HAProxy's.
    const lockFile = (): string => `${fleet.byInstance(id()).adminSocket}.haproxy-weighter.lock`;
    const weightOfS1 = async (): Promise<number> => (await fleet.byInstance(id()).getWeight('be_ingest', 's1')).current;
    const invocation = (commandId: string): Promise<GetCommandInvocationCommandOutput> => fleet.api.getCommandInvocation({ CommandId: commandId, InstanceId: id() });
    const final = (commandId: string): Promise<GetCommandInvocationCommandOutput> =>
      waitFor(
        `command ${commandId} to end`,
        async () => {
          const out = await invocation(commandId);
          return ['Success', 'Failed', 'TimedOut', 'Cancelled'].includes(out.Status ?? '') ? out : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 50 },
      );

    it('makes a command wait while another holds the lock, and run only once it is released', async () => {
      held = await holdLock(lockFile());
      const sent = await send({ Commands: ['set server be_ingest/s1 weight 7'] }, [id()]);
      const commandId = String(sent.Command?.CommandId);

      // The document's flock is queued behind ours: nothing has reached HAProxy yet.
      await waitFor('the document to wait for the lock', async () => (lockWaiters(lockFile()) > 0 ? true : undefined), { timeoutMs: 20_000, intervalMs: 20 });
      expect(await weightOfS1()).toBe(100);
      const status = await waitFor('the invocation to be listed', async () => (await invocation(commandId)).Status, { timeoutMs: 20_000, intervalMs: 20 });
      expect(['Pending', 'InProgress']).toContain(status);

      await held.release();
      held = undefined;
      const out = await final(commandId);
      expect(out.Status).toBe('Success');
      expect(decodeDocumentOutput(out.StandardOutputContent ?? '', id())).toBe('\n');
      expect(await weightOfS1()).toBe(7);
    });

    it('gives up with exit code 75 and says why when the lock stays held, having sent nothing', async () => {
      held = await holdLock(lockFile());
      const sent = await send({ Commands: ['set server be_ingest/s1 weight 9'] }, [id()]);
      const out = await final(String(sent.Command?.CommandId));

      expect(out.Status).toBe('Failed');
      expect(out.ResponseCode).toBe(75);
      expect(out.StandardErrorContent).toBe(
        'haproxy-weighter: another haproxy-weighter command held the admin socket lock for 10 s (a cycle still running, or a manual invoke): nothing was sent to HAProxy\n',
      );
      expect(out.StandardOutputContent).toBe('');
      expect(await weightOfS1()).toBe(100);
    });

    it('lets commands that arrive together take turns, each one completing', async () => {
      const weights = [11, 12, 13, 14, 15, 16];
      const sent = await Promise.all(weights.map((w) => send({ Commands: [`set server be_ingest/s1 weight ${w}; get weight be_ingest/s1`] }, [id()])));
      const outs = await Promise.all(sent.map((c) => final(String(c.Command?.CommandId))));
      // Under the lock each batch's read-back sees its own write: no other batch ran in between.
      expect(outs.map((o) => decodeDocumentOutput(o.StandardOutputContent ?? '', id()))).toEqual(weights.map((w) => `\n${w} (initial 100)\n\n`));
    });

    it('refuses a lock file that is a symbolic link, with exit code 71', async () => {
      rmSync(lockFile(), { force: true });
      symlinkSync('/dev/null', lockFile());
      try {
        const out = await final(String((await send({ Commands: ['get weight be_ingest/s1'] }, [id()])).Command?.CommandId));
        expect(out.ResponseCode).toBe(71);
        expect(out.StandardErrorContent).toContain(`cannot use ${lockFile()} as the lock file`);
      } finally {
        rmSync(lockFile(), { force: true });
      }
    });
  });
});
