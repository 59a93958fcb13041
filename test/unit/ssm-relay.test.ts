import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import type { CommandInvocation, DescribeInstanceInformationCommandInput, GetCommandInvocationCommandOutput, InstanceInformation, SendCommandCommandInput } from '@aws-sdk/client-ssm';
import { describe, expect, it } from 'vitest';
import {
  MAX_COMMANDS_CHARS,
  MAX_INSTANCE_IDS_PER_COMMAND,
  PLUGIN_OUTPUT_LIMIT_CHARS,
  createSsmRelayFor,
  decodeDocumentOutput,
  outputKeyOf,
  resolveLoadBalancers,
  splitBatch,
  type S3Api,
  type SsmApi,
  type SsmRelaySettings,
} from '../../functions/adapters/ssm-relay.js';
import { RelayError, UnsafeInputError } from '../../functions/core/errors.js';
import type { RelayResult } from '../../functions/core/types.js';

/** What the document prints for a reply. */
function encode(reply: string): string {
  const raw = Buffer.from(reply, 'utf8');
  const sha = createHash('sha256').update(raw).digest('hex');
  return `HAPROXY-WEIGHTER-REPLY 1 bytes=${raw.length} sha256=${sha}\n${gzipSync(raw).toString('base64')}\nHAPROXY-WEIGHTER-END\n`;
}

const ids = (n: number): string[] => Array.from({ length: n }, (_, i) => `i-${(i + 1).toString(16).padStart(17, '0')}`);

const settings = (instanceIds: readonly string[]): SsmRelaySettings => ({
  documentName: 'hw-relay',
  socketPath: '/run/haproxy/admin.sock',
  targets: { instanceIds: [...instanceIds] },
  commandTimeoutSeconds: 60,
  pollIntervalMs: 100,
  maxWaitMs: 2_000,
});

class NotFound extends Error {
  override name = 'InvocationDoesNotExist';
}

type Step = Partial<GetCommandInvocationCommandOutput> | 'not-found';

const FINAL = new Set(['Success', 'Failed', 'TimedOut', 'Cancelled']);

/**
 * A scripted SSM API: every invocation answers the given steps in turn, one step per
 * ListCommandInvocations of its command (the last one repeats), and GetCommandInvocation answers
 * the step last listed. The clock only moves when the relay sleeps. Commands sent to a tag reach
 * `tagged`.
 */
function fakeApi(script: (commandId: string, instanceId: string) => readonly Step[], reply: (commands: string) => string = () => '\n', tagged: readonly string[] = []) {
  const sent: SendCommandCommandInput[] = [];
  const order: string[] = [];
  const calls = { list: 0, get: 0 };
  const polls = new Map<string, number>();
  const commands = new Map<string, string>();
  const targets = new Map<string, readonly string[]>();
  let clock = 0;
  const stepOf = (commandId: string, instanceId: string, n: number): Step => {
    const steps = script(commandId, instanceId);
    return steps[Math.min(n, steps.length - 1)] ?? 'not-found';
  };
  const stdoutOf = (commandId: string, step: Partial<GetCommandInvocationCommandOutput>): string =>
    step.Status === 'Success' && step.StandardOutputContent === undefined ? encode(reply(commands.get(commandId) ?? '')) : (step.StandardOutputContent ?? '');
  const api: SsmApi = {
    sendCommand: async (input) => {
      sent.push(input);
      order.push('send');
      const commandId = `cmd-${sent.length}`;
      commands.set(commandId, input.Parameters?.Commands?.[0] ?? '');
      targets.set(commandId, input.InstanceIds ?? tagged);
      return { Command: { CommandId: commandId }, $metadata: {} };
    },
    listCommandInvocations: async (input) => {
      order.push('poll');
      calls.list++;
      const commandId = String(input.CommandId);
      const invocations: CommandInvocation[] = [];
      for (const instanceId of targets.get(commandId) ?? []) {
        const key = `${commandId}/${instanceId}`;
        // Each listing of the command (its first page) is one poll of each invocation.
        if (input.NextToken === undefined) polls.set(key, (polls.get(key) ?? -1) + 1);
        const step = stepOf(commandId, instanceId, polls.get(key) ?? 0);
        if (step === 'not-found') continue;
        const final = FINAL.has(step.Status ?? '');
        invocations.push({
          CommandId: commandId,
          InstanceId: instanceId,
          ...(step.Status === undefined ? {} : { Status: step.Status }),
          ...(step.StatusDetails === undefined ? {} : { StatusDetails: step.StatusDetails }),
          CommandPlugins: [
            {
              Name: 'relayRuntimeCommands',
              ...(step.ResponseCode === undefined ? {} : { ResponseCode: step.ResponseCode }),
              Output: final ? stdoutOf(commandId, step).slice(0, PLUGIN_OUTPUT_LIMIT_CHARS) : '',
              StandardOutputUrl: step.StandardOutputUrl ?? '',
            },
          ],
        });
      }
      const start = input.NextToken === undefined ? 0 : Number(input.NextToken);
      const size = input.MaxResults ?? 50;
      const page = invocations.slice(start, start + size);
      return { $metadata: {}, CommandInvocations: page, ...(start + size < invocations.length ? { NextToken: String(start + size) } : {}) };
    },
    getCommandInvocation: async (input) => {
      order.push('get');
      calls.get++;
      const commandId = String(input.CommandId);
      const n = polls.get(`${commandId}/${String(input.InstanceId)}`);
      const step = n === undefined ? 'not-found' : stepOf(commandId, String(input.InstanceId), n);
      if (step === 'not-found') throw new NotFound('not yet');
      return { $metadata: {}, ...step, StandardOutputContent: stdoutOf(commandId, step) };
    },
    describeInstanceInformation: async () => ({ $metadata: {} }),
  };
  const sleeps: number[] = [];
  // Virtual time: concurrent pollers that sleep together wake together, as they would for real.
  const sleep = async (ms: number): Promise<void> => {
    sleeps.push(ms);
    const wake = clock + ms;
    await Promise.resolve();
    clock = Math.max(clock, wake);
  };
  return { api, sent, order, calls, polls, sleeps, sleep, now: () => clock, advance: (ms: number) => (clock += ms) };
}

const SUCCESS: readonly Step[] = ['not-found', { Status: 'Pending' }, { Status: 'InProgress' }, { Status: 'Success', StatusDetails: 'Success', ResponseCode: 0 }];

function reply(result: RelayResult | undefined): string {
  if (result === undefined || !result.ok) throw new Error(`expected a reply, got ${String(result?.ok === false ? result.error.message : result)}`);
  return result.reply;
}

function error(result: RelayResult | undefined): Error {
  if (result === undefined || result.ok) throw new Error('expected an error');
  return result.error;
}

describe('splitBatch', () => {
  it.each([
    ['keeps a short batch whole', ['get weight b/s1', 'get weight b/s2'], 1000, 2, [['get weight b/s1', 'get weight b/s2']]],
    ['cuts where the joined length would pass the cap', ['get weight b/s1', 'get weight b/s2', 'get weight b/s3'], 32, 2, [['get weight b/s1', 'get weight b/s2'], ['get weight b/s3']]],
    [
      'puts at most two show commands in one part',
      ['show stat a 6 -1', 'show servers state a', 'show stat b 6 -1', 'show servers state b'],
      1000,
      2,
      [
        ['show stat a 6 -1', 'show servers state a'],
        ['show stat b 6 -1', 'show servers state b'],
      ],
    ],
    [
      "keeps the doctor's one-word show cli level with the first backend's rows",
      ['show cli level', 'show stat a 6 -1', 'show servers state a', 'show stat b 6 -1', 'show servers state b'],
      1000,
      2,
      [
        ['show cli level', 'show stat a 6 -1', 'show servers state a'],
        ['show stat b 6 -1', 'show servers state b'],
      ],
    ],
    ['never leaves a part empty for a command longer than the cap', ['get weight backend/server'], 5, 2, [['get weight backend/server']]],
  ])('%s', (_label, commands, maxChars, maxShow, expected) => {
    expect(splitBatch(commands, maxChars, maxShow)).toEqual(expected);
  });

  it('keeps every command, in order, whatever the cap', () => {
    const commands = Array.from({ length: 500 }, (_, i) => `set server be/ingest-${i} weight ${(i % 256) + 1}`);
    const parts = splitBatch(commands, 16_000, 2);
    expect(parts.flat()).toEqual(commands);
    for (const part of parts) expect(part.join('; ').length).toBeLessThanOrEqual(16_000);
  });
});

describe('decodeDocumentOutput', () => {
  it('returns the exact reply, trailing empty lines included', () => {
    const text = '# pxname,svname\nbe,s1\n\n1\n# be_id\n\n';
    expect(decodeDocumentOutput(encode(text), 'i-1')).toBe(text);
  });

  it('rejects a reply cut at the output limit, saying so', () => {
    const big = Array.from({ length: 3000 }, (_, i) => `be,${createHash('md5').update(String(i)).digest('hex')}\n`).join('');
    const printed = encode(big);
    expect(printed.length).toBeGreaterThan(24_000);
    expect(() => decodeDocumentOutput(printed.slice(0, 24_000), 'i-1')).toThrow(/^i-1: the reply was cut off at the 24,000-character output limit/);
  });

  it.each([
    ['a missing end marker', (s: string) => s.replace('HAPROXY-WEIGHTER-END\n', ''), /printed something other than an encoded reply/],
    ['a wrong checksum', (s: string) => s.replace(/sha256=[0-9a-f]{64}/, `sha256=${'0'.repeat(64)}`), /announced/],
    ['a wrong byte count', (s: string) => s.replace(/bytes=\d+/, 'bytes=3'), /announced 3 bytes/],
    ['a body that is not base64', (s: string) => s.replace(/\n[A-Za-z0-9+/=]+\n/, '\n$$$\n'), /not base64/],
    ['a body that does not decompress', (s: string) => s.replace(/\n[A-Za-z0-9+/=]+\n/, '\nAAAA\n'), /does not decompress/],
  ])('rejects %s', (_label, damage, message) => {
    const text = Array.from({ length: 50 }, (_, i) => `be,s${i},UP\n`).join('');
    expect(() => decodeDocumentOutput(damage(encode(text)), 'i-1')).toThrow(message);
  });
});

describe('SSM relay', () => {
  it('waits through an invocation not yet listed, Pending and InProgress, polling steadily five times, then less and less often', async () => {
    const slow: readonly Step[] = ['not-found', { Status: 'Pending' }, ...Array<Step>(6).fill({ Status: 'InProgress' }), { Status: 'Success', StatusDetails: 'Success', ResponseCode: 0 }];
    const fake = fakeApi(() => slow, () => '7 (initial 100)\n\n');
    const [id] = ids(1);
    const relay = createSsmRelayFor(settings(ids(1)), ids(1), { api: fake.api, sleep: fake.sleep, now: fake.now });
    const results = await relay.run([{ loadBalancer: String(id), commands: ['get weight be/s1'] }]);

    expect(reply(results[0])).toBe('7 (initial 100)\n\n');
    expect(fake.sleeps).toEqual([100, 100, 100, 100, 100, 150, 225, 338, 507]);
  });

  it('sends one command for load balancers with identical batches and one per distinct batch', async () => {
    const fake = fakeApi(() => SUCCESS);
    const lbs = ids(3);
    const relay = createSsmRelayFor(settings(lbs), lbs, { api: fake.api, sleep: fake.sleep, now: fake.now });
    await relay.run([
      { loadBalancer: String(lbs[0]), commands: ['set server be/s1 weight 5'] },
      { loadBalancer: String(lbs[1]), commands: ['set server be/s1 weight 5'] },
      { loadBalancer: String(lbs[2]), commands: ['set server be/s1 weight 6'] },
    ]);

    expect(fake.sent.map((s) => [s.InstanceIds, s.Parameters?.Commands])).toEqual([
      [[lbs[0], lbs[1]], ['set server be/s1 weight 5']],
      [[lbs[2]], ['set server be/s1 weight 6']],
    ]);
    expect(fake.sent[0]).toMatchObject({ DocumentName: 'hw-relay', Parameters: { SocketPath: ['/run/haproxy/admin.sock'] }, MaxErrors: '100%', MaxConcurrency: '100%', TimeoutSeconds: 60 });
  });

  it(`sends at most ${MAX_INSTANCE_IDS_PER_COMMAND} instance ids per SendCommand`, async () => {
    const fake = fakeApi(() => SUCCESS);
    const lbs = ids(120);
    const relay = createSsmRelayFor(settings(lbs), lbs, { api: fake.api, sleep: fake.sleep, now: fake.now });
    const results = await relay.run(lbs.map((loadBalancer) => ({ loadBalancer, commands: ['show servers state be'] })));

    expect(fake.sent.map((s) => s.InstanceIds?.length)).toEqual([50, 50, 20]);
    expect(fake.sent.flatMap((s) => s.InstanceIds)).toEqual(lbs);
    expect(results.every((r) => r.ok)).toBe(true);
  });

  it('sends a read for more than 50 load balancers found by tag to the tag, in one command, and a write to their ids', async () => {
    const lbs = ids(120);
    const fake = fakeApi(() => SUCCESS, undefined, lbs);
    const tagged = { ...settings(lbs), targets: { tag: { key: 'haproxy-weighter', value: 'prod' } } };
    const relay = createSsmRelayFor(tagged, lbs, { api: fake.api, sleep: fake.sleep, now: fake.now });
    const reads = await relay.run(lbs.map((loadBalancer) => ({ loadBalancer, commands: ['show servers state be'] })));
    expect(fake.sent.map((s) => [s.Targets, s.InstanceIds])).toEqual([[[{ Key: 'tag:haproxy-weighter', Values: ['prod'] }], undefined]]);
    expect(reads.every((r) => r.ok)).toBe(true);
    // One call while nothing is listed yet, then three rounds (Pending, InProgress, Success) of three pages of 50.
    expect(fake.calls).toEqual({ list: 10, get: 0 });

    await relay.run(lbs.map((loadBalancer) => ({ loadBalancer, commands: ['set server be/s1 weight 5'] })));
    expect(fake.sent.slice(1).map((s) => [s.Targets, s.InstanceIds?.length])).toEqual([
      [undefined, 50],
      [undefined, 50],
      [undefined, 20],
    ]);
  });

  it('gives up on an invocation that never finishes, naming the instance and its last status', async () => {
    const fake = fakeApi(() => ['not-found', { Status: 'InProgress', StatusDetails: 'InProgress' }]);
    const lbs = ids(1);
    const relay = createSsmRelayFor(settings(lbs), lbs, { api: fake.api, sleep: fake.sleep, now: fake.now });
    const results = await relay.run([{ loadBalancer: String(lbs[0]), commands: ['get weight be/s1'] }]);

    expect(error(results[0]).message).toMatch(new RegExp(`^${lbs[0]}: no final status for SSM command cmd-1 within 2000 ms \\(last: InProgress\\)`));
  });

  it('treats an instance that never registers the invocation as not answering', async () => {
    const fake = fakeApi(() => ['not-found']);
    const lbs = ids(1);
    const relay = createSsmRelayFor(settings(lbs), lbs, { api: fake.api, sleep: fake.sleep, now: fake.now });
    const results = await relay.run([{ loadBalancer: String(lbs[0]), commands: ['get weight be/s1'] }]);

    expect(error(results[0]).message).toContain('(last: not yet registered (not listed by ListCommandInvocations))');
  });

  it.each<[Step, RegExp]>([
    [{ Status: 'Failed', StatusDetails: 'Failed', ResponseCode: 70, StandardErrorContent: 'haproxy-weighter: socat could not complete the exchange\n' }, /ended Failed, exit code 70: haproxy-weighter: socat could not/],
    [{ Status: 'TimedOut', StatusDetails: 'DeliveryTimedOut', ResponseCode: -1 }, /ended TimedOut \(DeliveryTimedOut\)$/],
    [{ Status: 'Failed', StatusDetails: 'Undeliverable', ResponseCode: -1 }, /ended Failed \(Undeliverable\)$/],
    [{ Status: 'Cancelled', StatusDetails: 'Terminated' }, /ended Cancelled \(Terminated\)$/],
    [{ Status: 'Success', StatusDetails: 'Success', ResponseCode: 0, StandardOutputContent: 'x'.repeat(24_000) }, /cut off at the 24,000-character output limit/],
  ])('fails only the instance whose invocation ends %o', async (final, message) => {
    const lbs = ids(2);
    const fake = fakeApi((_c, instanceId) => (instanceId === lbs[1] ? ['not-found', final] : SUCCESS));
    const relay = createSsmRelayFor(settings(lbs), lbs, { api: fake.api, sleep: fake.sleep, now: fake.now });
    const results = await relay.run(lbs.map((loadBalancer) => ({ loadBalancer, commands: ['set server be/s1 weight 5'] })));

    expect(reply(results[0])).toBe('\n');
    const e = error(results[1]);
    expect(e).toBeInstanceOf(RelayError);
    expect(e.message).toMatch(new RegExp(`^${lbs[1]}: `));
    expect(e.message).toMatch(message);
  });

  it('fails every instance of a SendCommand that SSM refuses, with the service’s error', async () => {
    const lbs = ids(2);
    const fake = fakeApi(() => SUCCESS);
    const api: SsmApi = {
      ...fake.api,
      sendCommand: async () => {
        throw Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' });
      },
    };
    const relay = createSsmRelayFor(settings(lbs), lbs, { api, sleep: fake.sleep, now: fake.now });
    const results = await relay.run(lbs.map((loadBalancer) => ({ loadBalancer, commands: ['get weight be/s1'] })));

    for (const [i, r] of results.entries()) expect(error(r).message).toBe(`${lbs[i]}: SendCommand hw-relay failed: ThrottlingException: Rate exceeded`);
  });

  it('refuses a write batch longer than one command instead of splitting it away from its operator-state read', async () => {
    const lbs = ids(1);
    const fake = fakeApi(() => SUCCESS);
    const relay = createSsmRelayFor(settings(lbs), lbs, { api: fake.api, sleep: fake.sleep, now: fake.now, maxCommandChars: 60 });
    const commands = ['show servers state be', ...Array.from({ length: 6 }, (_, i) => `set server be/s${i} weight 9`)];
    const results = await relay.run([{ loadBalancer: String(lbs[0]), commands }]);

    expect(error(results[0])).toBeInstanceOf(UnsafeInputError);
    expect(error(results[0]).message).toMatch(/refused a write batch of \d+ characters: one SSM command carries at most 60/);
    expect(fake.sent).toEqual([]);
    expect(relay.maxBatchChars).toBe(60);
  });

  it('cuts a long read batch into parts sent at once, and joins their replies in order', async () => {
    const lbs = ids(2);
    const fake = fakeApi(() => SUCCESS, (commands) => commands.split('; ').map((c) => `${c}\n\n`).join(''));
    const relay = createSsmRelayFor(settings(lbs), lbs, { api: fake.api, sleep: fake.sleep, now: fake.now });
    const commands = ['a', 'b', 'c'].flatMap((b) => [`show stat ${b} 6 -1`, `show servers state ${b}`]);
    const results = await relay.run(lbs.map((loadBalancer) => ({ loadBalancer, commands })));

    expect(fake.sent.map((s) => s.Parameters?.Commands)).toEqual([['show stat a 6 -1; show servers state a'], ['show stat b 6 -1; show servers state b'], ['show stat c 6 -1; show servers state c']]);
    expect(reply(results[1])).toBe(commands.map((c) => `${c}\n\n`).join(''));
    // All three were sent before the first one was polled.
    expect(fake.order.indexOf('poll')).toBe(3);
  });

  it(`never puts more than ${MAX_COMMANDS_CHARS.toLocaleString('en-US')} characters in one command: what the 64 KB quota leaves`, async () => {
    const lbs = ids(1);
    const fake = fakeApi(() => SUCCESS, (commands) => '\n'.repeat(commands.split('; ').length));
    const relay = createSsmRelayFor(settings(lbs), lbs, { api: fake.api, sleep: fake.sleep, now: fake.now, maxCommandChars: 1_000_000 });
    const commands = Array.from({ length: 3_000 }, (_, i) => `get weight be_ingest/ingest-${i}.eu-west-1.internal`);
    const results = await relay.run([{ loadBalancer: String(lbs[0]), commands }]);

    expect(reply(results[0])).toBe('\n'.repeat(3_000));
    expect(fake.sent.length).toBeGreaterThan(1);
    for (const sent of fake.sent) expect(sent.Parameters?.Commands?.[0]?.length).toBeLessThanOrEqual(MAX_COMMANDS_CHARS);
  });

  it.each([
    ['a command separator in a name', 'set server be/a;shutdown sessions weight 5'],
    ['a command substitution', 'get weight be/$(reboot)'],
    ['a newline', 'get weight be/s1\nshutdown sessions'],
    ['a weight above 256', 'set server be/s1 weight 257'],
    ['a command we never send', 'shutdown sessions server be/s1'],
  ])('refuses %s before anything is sent', async (_label, command) => {
    const lbs = ids(1);
    const fake = fakeApi(() => SUCCESS);
    const relay = createSsmRelayFor(settings(lbs), lbs, { api: fake.api, sleep: fake.sleep, now: fake.now });
    const results = await relay.run([{ loadBalancer: String(lbs[0]), commands: [command] }]);

    expect(error(results[0])).toBeInstanceOf(UnsafeInputError);
    expect(fake.sent).toEqual([]);
  });

  it('answers an unknown load balancer with an error and still serves the others', async () => {
    const lbs = ids(1);
    const fake = fakeApi(() => SUCCESS);
    const relay = createSsmRelayFor(settings(lbs), lbs, { api: fake.api, sleep: fake.sleep, now: fake.now });
    const results = await relay.run([
      { loadBalancer: 'i-00000000000000bad', commands: ['get weight be/s1'] },
      { loadBalancer: String(lbs[0]), commands: ['get weight be/s1'] },
    ]);

    expect(error(results[0]).message).toBe('Unknown load balancer i-00000000000000bad');
    expect(results[1]?.ok).toBe(true);
  });

  it('fails a request to an unreachable load balancer without sending anything to it, saying why', async () => {
    const lbs = ids(2);
    const fake = fakeApi(() => SUCCESS);
    const why = 'Systems Manager reports its SSM Agent as ConnectionLost: it cannot run a command now';
    const relay = createSsmRelayFor(settings(lbs), lbs, { api: fake.api, sleep: fake.sleep, now: fake.now, unreachable: new Map([[String(lbs[1]), why]]) });
    const results = await relay.run(lbs.map((loadBalancer) => ({ loadBalancer, commands: ['show servers state be'] })));

    expect(results[0]?.ok).toBe(true);
    expect(error(results[1])).toMatchObject({ message: `${lbs[1]}: not sent: ${why}`, notStarted: true, mayHaveRun: false });
    expect(fake.sent.map((s) => s.InstanceIds)).toEqual([[lbs[0]]]);
  });

  it('still reads every reachable load balancer found by tag through the tag when one of them is unreachable', async () => {
    const lbs = ids(120);
    const fake = fakeApi(() => SUCCESS, undefined, lbs);
    const tagged = { ...settings(lbs), targets: { tag: { key: 'haproxy-weighter', value: 'prod' } } };
    const relay = createSsmRelayFor(tagged, lbs, { api: fake.api, sleep: fake.sleep, now: fake.now, unreachable: new Map([[String(lbs[7]), 'it is a Windows node; the document runs only on Linux']]) });
    const results = await relay.run(lbs.map((loadBalancer) => ({ loadBalancer, commands: ['show servers state be'] })));

    expect(fake.sent.map((s) => s.Targets)).toEqual([[{ Key: 'tag:haproxy-weighter', Values: ['prod'] }]]);
    expect(results.filter((r) => !r.ok).map((r) => r.loadBalancer)).toEqual([lbs[7]]);
  });
});

describe('SSM relay polling', () => {
  it('polls each command as a whole and reads a reply that fits the plugin output from ListCommandInvocations alone', async () => {
    const lbs = ids(3);
    const fake = fakeApi(() => SUCCESS, () => '7 (initial 100)\n\n');
    const relay = createSsmRelayFor(settings(lbs), lbs, { api: fake.api, sleep: fake.sleep, now: fake.now });
    const results = await relay.run(lbs.map((loadBalancer) => ({ loadBalancer, commands: ['get weight be/s1'] })));

    expect(results.map(reply)).toEqual(lbs.map(() => '7 (initial 100)\n\n'));
    expect(fake.calls).toEqual({ list: 4, get: 0 });
  });

  it('reads a reply longer than the plugin output with GetCommandInvocation, once, after its invocation is final', async () => {
    const lbs = ids(2);
    const long = Array.from({ length: 400 }, (_, i) => `be,${createHash('md5').update(String(i)).digest('hex')}\n`).join('');
    expect(encode(long).length).toBeGreaterThan(PLUGIN_OUTPUT_LIMIT_CHARS);
    const fake = fakeApi(() => SUCCESS, () => long);
    const relay = createSsmRelayFor(settings(lbs), lbs, { api: fake.api, sleep: fake.sleep, now: fake.now });
    const results = await relay.run(lbs.map((loadBalancer) => ({ loadBalancer, commands: ['show stat be 6 -1'] })));

    expect(results.map(reply)).toEqual([long, long]);
    expect(fake.calls).toEqual({ list: 4, get: 2 });
    expect(fake.order.slice(-2)).toEqual(['get', 'get']);
  });

  it('asks GetCommandInvocation for the exit code and stderr of a failed invocation, and names the listed status when that call fails too', async () => {
    const lbs = ids(2);
    const failed: Step = { Status: 'Failed', StatusDetails: 'Failed', ResponseCode: 66, StandardErrorContent: 'haproxy-weighter: no HAProxy admin socket at /run/haproxy/admin.sock\n' };
    const fake = fakeApi(() => ['not-found', failed]);
    const api: SsmApi = {
      ...fake.api,
      getCommandInvocation: async (input) => {
        if (input.InstanceId === lbs[1]) throw Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' });
        return fake.api.getCommandInvocation(input);
      },
    };
    const relay = createSsmRelayFor(settings(lbs), lbs, { api, sleep: fake.sleep, now: fake.now });
    const results = await relay.run(lbs.map((loadBalancer) => ({ loadBalancer, commands: ['set server be/s1 weight 5'] })));

    expect(error(results[0])).toMatchObject({ message: `${lbs[0]}: SSM command cmd-1 ended Failed, exit code 66: haproxy-weighter: no HAProxy admin socket at /run/haproxy/admin.sock`, mayHaveRun: false });
    expect(error(results[1])).toMatchObject({ message: `${lbs[1]}: SSM command cmd-1 ended Failed, exit code 66`, mayHaveRun: false });
  });

  it.each<[string, readonly Step[], RegExp]>([
    ['Delayed, then Success', ['not-found', { Status: 'Pending', StatusDetails: 'Pending' }, { Status: 'Delayed', StatusDetails: 'Delayed' }, { Status: 'InProgress', StatusDetails: 'InProgress' }, { Status: 'Success', StatusDetails: 'Success', ResponseCode: 0 }], /^ok$/],
    ['Cancelling, then Cancelled', ['not-found', { Status: 'InProgress', StatusDetails: 'InProgress' }, { Status: 'Cancelling', StatusDetails: 'Cancelling' }, { Status: 'Cancelled', StatusDetails: 'Cancelled' }], /ended Cancelled$/],
    ['Pending, then TimedOut (DeliveryTimedOut)', ['not-found', { Status: 'Pending', StatusDetails: 'Pending' }, { Status: 'Pending', StatusDetails: 'Pending' }, { Status: 'TimedOut', StatusDetails: 'DeliveryTimedOut' }], /ended TimedOut \(DeliveryTimedOut\)$/],
  ])('keeps polling through every status that is not final: %s', async (_label, steps, outcome) => {
    const lbs = ids(1);
    const fake = fakeApi(() => steps);
    const relay = createSsmRelayFor(settings(lbs), lbs, { api: fake.api, sleep: fake.sleep, now: fake.now });
    const results = await relay.run([{ loadBalancer: String(lbs[0]), commands: ['set server be/s1 weight 5'] }]);

    expect(results[0]?.ok === true ? 'ok' : error(results[0]).message).toMatch(outcome);
    expect(fake.calls.list).toBe(steps.length);
  });

  it('fails every instance still waited for when ListCommandInvocations fails past the SDK’s retries, saying the command may have run', async () => {
    const lbs = ids(2);
    const fake = fakeApi(() => SUCCESS);
    const api: SsmApi = {
      ...fake.api,
      listCommandInvocations: async () => {
        throw Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' });
      },
    };
    const relay = createSsmRelayFor(settings(lbs), lbs, { api, sleep: fake.sleep, now: fake.now });
    const results = await relay.run(lbs.map((loadBalancer) => ({ loadBalancer, commands: ['set server be/s1 weight 5'] })));

    for (const [i, r] of results.entries()) {
      expect(error(r)).toMatchObject({ message: `${lbs[i]}: ListCommandInvocations for command cmd-1 failed: ThrottlingException: Rate exceeded`, mayHaveRun: true });
    }
  });
});

describe('SSM relay with an output bucket', () => {
  const BUCKET = 'hw-output';
  const PREFIX = 'haproxy-weighter';
  const big = Array.from({ length: 4_000 }, (_, i) => `be,${createHash('md5').update(String(i)).digest('hex')}\n`).join('');
  const printed = encode(big);

  /** The invocation's output as SSM keeps it: cut in GetCommandInvocation, whole in S3. */
  function withBucket(objects: Map<string, string>, url: (commandId: string, instanceId: string) => string) {
    const fake = fakeApi((commandId, instanceId) => [
      'not-found',
      { Status: 'Success', StatusDetails: 'Success', ResponseCode: 0, StandardOutputContent: printed.slice(0, 24_000), StandardOutputUrl: url(commandId, instanceId) },
    ]);
    const reads: string[] = [];
    const s3: S3Api = {
      getObject: async (bucket, key) => {
        reads.push(`${bucket}/${key}`);
        const found = objects.get(key);
        if (found === undefined) throw Object.assign(new Error('The specified key does not exist.'), { name: 'NoSuchKey' });
        return found;
      },
    };
    return { fake, reads, output: { bucket: BUCKET, keyPrefix: PREFIX, s3 } };
  }

  it('observes every backend in one command and reads the whole reply from S3 when the inline copy is cut', async () => {
    const lbs = ids(2);
    const objects = new Map<string, string>();
    const { fake, reads, output } = withBucket(objects, (c, i) => {
      objects.set(`${PREFIX}/${c}/${i}/awsrunShellScript/relayRuntimeCommands/stdout`, printed);
      return `https://s3.eu-west-1.amazonaws.com/${BUCKET}/${PREFIX}/${c}/${i}/awsrunShellScript/relayRuntimeCommands/stdout`;
    });
    const relay = createSsmRelayFor(settings(lbs), lbs, { api: fake.api, sleep: fake.sleep, now: fake.now, output });
    const commands = ['a', 'b', 'c', 'd'].flatMap((b) => [`show stat ${b} 6 -1`, `show servers state ${b}`]);
    const results = await relay.run(lbs.map((loadBalancer) => ({ loadBalancer, commands })));

    expect(fake.sent).toHaveLength(1);
    expect(fake.sent[0]).toMatchObject({ OutputS3BucketName: BUCKET, OutputS3KeyPrefix: PREFIX, InstanceIds: lbs });
    expect(results.map(reply)).toEqual([big, big]);
    expect(reads).toEqual(lbs.map((i) => `${BUCKET}/${PREFIX}/cmd-1/${i}/awsrunShellScript/relayRuntimeCommands/stdout`));
    expect(fake.calls.get).toBe(0);
  });

  it('takes GetCommandInvocation’s copy when the agent wrote no output object and the reply fits that copy', async () => {
    const lbs = ids(1);
    const medium = Array.from({ length: 400 }, (_, i) => `be,${createHash('md5').update(String(i)).digest('hex')}\n`).join('');
    const fake = fakeApi(() => ['not-found', { Status: 'Success', StatusDetails: 'Success', ResponseCode: 0, StandardOutputContent: encode(medium) }]);
    const s3: S3Api = {
      getObject: async () => {
        throw Object.assign(new Error('The specified key does not exist.'), { name: 'NoSuchKey' });
      },
    };
    const relay = createSsmRelayFor(settings(lbs), lbs, { api: fake.api, sleep: fake.sleep, now: fake.now, output: { bucket: BUCKET, keyPrefix: PREFIX, s3 } });
    const results = await relay.run([{ loadBalancer: String(lbs[0]), commands: ['show stat be 6 -1'] }]);

    expect(reply(results[0])).toBe(medium);
    expect(fake.calls.get).toBe(1);
  });

  it('says which permission is missing when the agent wrote no output object', async () => {
    const lbs = ids(1);
    const { fake, output } = withBucket(new Map(), () => '');
    const relay = createSsmRelayFor(settings(lbs), lbs, { api: fake.api, sleep: fake.sleep, now: fake.now, output });
    const results = await relay.run([{ loadBalancer: String(lbs[0]), commands: ['show stat be 6 -1'] }]);

    expect(error(results[0]).message).toBe(
      `${lbs[0]}: cannot read the output of SSM command cmd-1 from s3://${BUCKET}/${PREFIX}/cmd-1/${lbs[0]}/awsrunShellScript/relayRuntimeCommands/stdout (NoSuchKey: The specified key does not exist.): the agent did not write it; the instance profile of ${lbs[0]} needs s3:PutObject on arn:aws:s3:::${BUCKET}/${PREFIX}/*`,
    );
  });

  it('refuses an output URL that points outside the command’s own objects', async () => {
    const lbs = ids(1);
    const { fake, reads, output } = withBucket(new Map(), () => `https://s3.eu-west-1.amazonaws.com/${BUCKET}/${PREFIX}/other-command/x/stdout`);
    const relay = createSsmRelayFor(settings(lbs), lbs, { api: fake.api, sleep: fake.sleep, now: fake.now, output });
    const results = await relay.run([{ loadBalancer: String(lbs[0]), commands: ['show stat be 6 -1'] }]);

    expect(error(results[0]).message).toMatch(/the output URL of SSM command cmd-1 is not an object of s3:\/\/hw-output\/haproxy-weighter/);
    expect(reads).toEqual([]);
  });
});

describe('outputKeyOf', () => {
  const base = 'pre/cmd/i-1/';
  it.each<[string, string, string | null]>([
    ['a path-style URL', 'https://s3.eu-west-1.amazonaws.com/bkt/pre/cmd/i-1/awsrunShellScript/step/stdout', `${base}awsrunShellScript/step/stdout`],
    ['a virtual-hosted URL', 'https://bkt.s3.eu-west-1.amazonaws.com/pre/cmd/i-1/awsrunShellScript/step/stdout', `${base}awsrunShellScript/step/stdout`],
    ['no URL: the agent’s layout', '', `${base}awsrunShellScript/relayRuntimeCommands/stdout`],
    ['another command’s object', 'https://s3.eu-west-1.amazonaws.com/bkt/pre/cmd2/i-1/x/stdout', null],
    ['another instance’s object', 'https://s3.eu-west-1.amazonaws.com/bkt/pre/cmd/i-2/x/stdout', null],
    ['another bucket', 'https://s3.eu-west-1.amazonaws.com/other/pre/cmd/i-1/x/stdout', null],
    ['a climb out of the prefix', 'https://s3.eu-west-1.amazonaws.com/bkt/pre/cmd/i-1/../../x', null],
    ['no URL at all', 'not a url', null],
  ])('reads %s', (_label, url, expected) => {
    expect(outputKeyOf(url, 'bkt', 'pre', 'cmd', 'i-1')).toBe(expected);
  });
});

describe('SSM relay within a time budget', () => {
  it('starts no command that cannot finish before the deadline, and says so', async () => {
    const lbs = ids(1);
    const fake = fakeApi(() => SUCCESS);
    const relay = createSsmRelayFor(settings(lbs), lbs, { api: fake.api, sleep: fake.sleep, now: fake.now, expectedCommandMs: 3_000 });
    const results = await relay.run([{ loadBalancer: String(lbs[0]), commands: ['set server be/s1 weight 5'] }], { deadline: fake.now() + 2_000 });

    const e = error(results[0]);
    expect(e).toBeInstanceOf(RelayError);
    expect(e).toMatchObject({ notStarted: true, mayHaveRun: false });
    expect(e.message).toBe(`${lbs[0]}: not sent: 2000 ms of the cycle's time budget left and a command takes about 3000 ms`);
    expect(fake.sent).toEqual([]);
  });

  it('expects the next command to take as long as the longest it has timed', async () => {
    const lbs = ids(1);
    const fake = fakeApi(() => SUCCESS);
    const relay = createSsmRelayFor(settings(lbs), lbs, { api: fake.api, sleep: fake.sleep, now: fake.now, expectedCommandMs: 10 });
    await relay.run([{ loadBalancer: String(lbs[0]), commands: ['get weight be/s1'] }]);
    const took = fake.now();
    const results = await relay.run([{ loadBalancer: String(lbs[0]), commands: ['set server be/s1 weight 5'] }], { deadline: fake.now() + took - 1 });

    expect(error(results[0]).message).toContain(`a command takes about ${took} ms`);
    expect(fake.sent).toHaveLength(1);
  });

  it('stops waiting when the budget’s signal aborts, saying the command may still run', async () => {
    const lbs = ids(1);
    const fake = fakeApi(() => ['not-found', { Status: 'InProgress', StatusDetails: 'InProgress' }]);
    const controller = new AbortController();
    let polls = 0;
    const api: SsmApi = {
      ...fake.api,
      listCommandInvocations: async (input) => {
        if (++polls === 3) controller.abort();
        return fake.api.listCommandInvocations(input);
      },
    };
    const relay = createSsmRelayFor(settings(lbs), lbs, { api, sleep: fake.sleep, now: fake.now });
    const results = await relay.run([{ loadBalancer: String(lbs[0]), commands: ['set server be/s1 weight 5'] }], { signal: controller.signal });

    expect(error(results[0])).toMatchObject({ mayHaveRun: true, notStarted: false });
    expect(error(results[0]).message).toBe(`${lbs[0]}: stopped waiting for SSM command cmd-1 (last: InProgress): the cycle's time budget ran out; it may still run on the instance`);
    expect(polls).toBe(3);
  });
});

describe('resolveLoadBalancers', () => {
  const listing = (pages: readonly (readonly InstanceInformation[])[]) => {
    const seen: DescribeInstanceInformationCommandInput[] = [];
    const api: Pick<SsmApi, 'describeInstanceInformation'> = {
      describeInstanceInformation: async (input) => {
        seen.push(input);
        const n = input.NextToken === undefined ? 0 : Number(input.NextToken);
        return { $metadata: {}, InstanceInformationList: [...(pages[n] ?? [])], ...(n + 1 < pages.length ? { NextToken: String(n + 1) } : {}) };
      },
    };
    return { api, seen };
  };
  const online = (id: string): InstanceInformation => ({ InstanceId: id, PingStatus: 'Online', PlatformType: 'Linux' });

  it('reads every page of the instances carrying the tag, asking with the tag filter alone', async () => {
    const { api, seen } = listing([[online('i-0b'), online('i-0a')], [online('i-0c')]]);
    expect(await resolveLoadBalancers({ tag: { key: 'role', value: 'haproxy' } }, api)).toEqual({ loadBalancers: ['i-0a', 'i-0b', 'i-0c'], unreachable: new Map() });
    expect(seen).toEqual([
      { Filters: [{ Key: 'tag:role', Values: ['haproxy'] }], MaxResults: 50 },
      { Filters: [{ Key: 'tag:role', Values: ['haproxy'] }], MaxResults: 50, NextToken: '1' },
    ]);
  });

  it.each<[string, InstanceInformation, string]>([
    ['an agent that lost its connection', { PingStatus: 'ConnectionLost', PlatformType: 'Linux', LastPingDateTime: new Date('2026-11-30T10:00:00Z') }, 'Systems Manager reports its SSM Agent as ConnectionLost, last ping 2026-11-30T10:00:00.000Z: it cannot run a command now'],
    ['an inactive agent', { PingStatus: 'Inactive', PlatformType: 'Linux' }, 'Systems Manager reports its SSM Agent as Inactive: it cannot run a command now'],
    ['a Windows node', { PingStatus: 'Online', PlatformType: 'Windows' }, 'it is a Windows node; the document runs only on Linux'],
    ['a macOS node', { PingStatus: 'Online', PlatformType: 'MacOS' }, 'it is a MacOS node; the document runs only on Linux'],
  ])('keeps %s among the load balancers, as unreachable, saying why', async (_label, info, why) => {
    const { api } = listing([[online('i-0a'), { InstanceId: 'i-0b', ...info }]]);
    const resolved = await resolveLoadBalancers({ tag: { key: 'role', value: 'haproxy' } }, api);
    expect(resolved.loadBalancers).toEqual(['i-0a', 'i-0b']);
    expect([...resolved.unreachable]).toEqual([['i-0b', why]]);
  });

  it('fails clearly when no instance carries the tag', async () => {
    const { api } = listing([[]]);
    await expect(resolveLoadBalancers({ tag: { key: 'role', value: 'haproxy' } }, api)).rejects.toThrow('No managed instance carries the tag role=haproxy (Systems Manager lists none in this region)');
  });

  it('keeps the configured instance ids without asking SSM', async () => {
    const api: Pick<SsmApi, 'describeInstanceInformation'> = {
      describeInstanceInformation: async () => {
        throw new Error('must not be called');
      },
    };
    expect(await resolveLoadBalancers({ instanceIds: ['i-0123456789abcdef0'] }, api)).toEqual({ loadBalancers: ['i-0123456789abcdef0'], unreachable: new Map() });
  });
});
