import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { STDOUT_LIMIT_CHARS, type SsmApi, createSsmRelay, createSsmRelayFor } from '../../functions/adapters/ssm-relay.js';
import { RelayError, UnsafeInputError } from '../../functions/core/errors.js';
import type { RelayResult } from '../../functions/core/types.js';
import type { BackendSpec } from '../harness/haproxy.js';
import { TAG, startSsmFleet, type SsmFleet } from '../ssm-endpoint/fleet.js';

const BACKEND: BackendSpec = {
  name: 'be_ingest',
  balance: 'leastconn',
  servers: [{ name: 'ingest-1' }, { name: 'ingest-2' }, { name: 'ingest-3' }],
};

function ok(result: RelayResult | undefined): string {
  if (result === undefined) throw new Error('no result');
  if (!result.ok) throw result.error;
  return result.reply;
}

function failed(result: RelayResult | undefined): Error {
  if (result === undefined || result.ok) throw new Error(`expected a failure, got ${JSON.stringify(result)}`);
  return result.error;
}

describe('SSM relay through the local SSM endpoint and three real HAProxy processes', () => {
  let fleet: SsmFleet;

  beforeAll(async () => {
    fleet = await startSsmFleet(3, [BACKEND]);
  });
  afterAll(async () => {
    await fleet?.stop();
  });
  afterEach(() => {
    fleet.endpoint.clearFaults();
  });

  const sendCommands = (): number => fleet.endpoint.calls.filter((c) => c.operation === 'SendCommand' && c.status === 200).length;

  it('sets the weights on every instance with one SendCommand when the batches are identical', async () => {
    const relay = createSsmRelayFor(fleet.settings, fleet.instanceIds, { api: fleet.api });
    const before = sendCommands();
    const commands = ['set server be_ingest/ingest-1 weight 37', 'set server be_ingest/ingest-2 weight 180'];
    const results = await relay.run(fleet.instanceIds.map((loadBalancer) => ({ loadBalancer, commands })));

    expect(results.map(ok)).toEqual(['\n\n', '\n\n', '\n\n']);
    expect(sendCommands() - before).toBe(1);
    for (const h of fleet.haproxies) {
      expect(await h.getWeight('be_ingest', 'ingest-1')).toEqual({ current: 37, initial: 100 });
      expect(await h.getWeight('be_ingest', 'ingest-2')).toEqual({ current: 180, initial: 100 });
    }
  });

  it('sends one command per distinct batch and returns each instance its own reply', async () => {
    const relay = createSsmRelayFor(fleet.settings, fleet.instanceIds, { api: fleet.api });
    const [a, b, c] = fleet.instanceIds;
    const before = sendCommands();
    const results = await relay.run([
      { loadBalancer: String(a), commands: ['set server be_ingest/ingest-3 weight 11', 'get weight be_ingest/ingest-3'] },
      { loadBalancer: String(b), commands: ['set server be_ingest/ingest-3 weight 11', 'get weight be_ingest/ingest-3'] },
      { loadBalancer: String(c), commands: ['set server be_ingest/ingest-3 weight 222', 'get weight be_ingest/ingest-3'] },
    ]);

    expect(sendCommands() - before).toBe(2);
    expect(results.map(ok)).toEqual(['\n11 (initial 100)\n\n', '\n11 (initial 100)\n\n', '\n222 (initial 100)\n\n']);
  });

  it('waits through an invocation not yet listed, Pending, Delayed and InProgress to the final reply', async () => {
    // What each ListCommandInvocations of the relay showed of the invocation ('-' while it is not listed yet).
    const seen: string[] = [];
    const api = {
      ...fleet.api,
      listCommandInvocations: async (input: Parameters<SsmFleet['api']['listCommandInvocations']>[0]) => {
        const out = await fleet.api.listCommandInvocations(input);
        seen.push(out.CommandInvocations?.[0]?.StatusDetails ?? '-');
        return out;
      },
    };
    const relay = createSsmRelayFor(fleet.settings, fleet.instanceIds, { api });
    const [first] = fleet.instanceIds;
    fleet.endpoint.delay(String(first), 2);
    const results = await relay.run([{ loadBalancer: String(first), commands: ['get weight be_ingest/ingest-1'] }]);

    expect(ok(results[0])).toMatch(/^\d+ \(initial 100\)\n\n$/);
    expect([...new Set(seen)]).toEqual(['-', 'Pending', 'Delayed', 'InProgress', 'Success']);
  });

  it('retries a throttled SendCommand and succeeds', async () => {
    const relay = createSsmRelayFor(fleet.settings, fleet.instanceIds, { api: fleet.api });
    const before = fleet.endpoint.calls.length;
    fleet.endpoint.throttle('SendCommand', 2);
    const results = await relay.run(fleet.instanceIds.map((loadBalancer) => ({ loadBalancer, commands: ['set server be_ingest/ingest-1 weight 99'] })));

    expect(results.map(ok)).toEqual(['\n', '\n', '\n']);
    const sends = fleet.endpoint.calls.slice(before).filter((c) => c.operation === 'SendCommand');
    expect(sends.map((c) => c.error ?? 'ok')).toEqual(['ThrottlingException', 'ThrottlingException', 'ok']);
    for (const h of fleet.haproxies) expect((await h.getWeight('be_ingest', 'ingest-1')).current).toBe(99);
  });

  it.each([
    ['Undeliverable', (f: SsmFleet, id: string) => f.endpoint.undeliverable(id), /Undeliverable/],
    ['TimedOut', (f: SsmFleet, id: string) => f.endpoint.timeOut(id, 2), /TimedOut \(ExecutionTimedOut\)/],
    ['Cancelled', (f: SsmFleet, id: string) => f.endpoint.forceStatus(id, 'Cancelled', 'Cancelled'), /ended Cancelled/],
    ['Terminated', (f: SsmFleet, id: string) => f.endpoint.forceStatus(id, 'Cancelled', 'Terminated'), /Cancelled \(Terminated\)/],
    ['Failed by the agent', (f: SsmFleet, id: string) => f.endpoint.failInstance(id, 'plugin crashed'), /Failed.*plugin crashed/],
  ])('names the instance and the status when its invocation ends %s, and applies the others', async (_label, inject, pattern) => {
    const relay = createSsmRelayFor(fleet.settings, fleet.instanceIds, { api: fleet.api });
    const [bad, ...good] = fleet.instanceIds;
    inject(fleet, String(bad));
    const weight = 40 + Math.floor(Math.random() * 100);
    const results = await relay.run(fleet.instanceIds.map((loadBalancer) => ({ loadBalancer, commands: [`set server be_ingest/ingest-2 weight ${weight}`] })));

    const error = failed(results[0]);
    expect(error).toBeInstanceOf(RelayError);
    expect(error.message).toContain(String(bad));
    expect(error.message).toMatch(pattern);
    expect(results.slice(1).map(ok)).toEqual(['\n', '\n']);
    for (const id of good) expect((await fleet.byInstance(id).getWeight('be_ingest', 'ingest-2')).current).toBe(weight);
  });

  it('reports an instance whose HAProxy is down with the document’s message, and applies the others', async () => {
    const local = await startSsmFleet(3, [BACKEND]);
    try {
      const relay = createSsmRelayFor(local.settings, local.instanceIds, { api: local.api });
      const down = String(local.instanceIds[1]);
      await local.byInstance(down).stop();
      const results = await relay.run(local.instanceIds.map((loadBalancer) => ({ loadBalancer, commands: ['set server be_ingest/ingest-3 weight 5'] })));

      const error = failed(results[1]);
      expect(error.message).toContain(down);
      expect(error.message).toMatch(/Failed, exit code 66: haproxy-weighter: no HAProxy admin socket/);
      expect(ok(results[0])).toBe('\n');
      expect(ok(results[2])).toBe('\n');
      expect((await local.byInstance(String(local.instanceIds[2])).getWeight('be_ingest', 'ingest-3')).current).toBe(5);
    } finally {
      await local.stop();
    }
  });

  it('refuses a hostile server name before anything is sent', async () => {
    const relay = createSsmRelayFor(fleet.settings, fleet.instanceIds, { api: fleet.api });
    const before = fleet.endpoint.calls.length;
    const results = await relay.run([{ loadBalancer: String(fleet.instanceIds[0]), commands: ['set server be_ingest/a;shutdown sessions weight 5'] }]);

    expect(failed(results[0])).toBeInstanceOf(UnsafeInputError);
    expect(fleet.endpoint.calls.length).toBe(before);
  });

  it('observes 60 load balancers found by tag with one SendCommand to the tag', async () => {
    const many = await startSsmFleet(60, [BACKEND], { haproxies: 3 });
    try {
      const relay = await createSsmRelay({ ...many.settings, targets: { tag: TAG } }, { api: many.api });
      const results = await relay.run(relay.loadBalancers.map((loadBalancer) => ({ loadBalancer, commands: ['show stat be_ingest 6 -1', 'show servers state be_ingest'] })));

      const sends = many.endpoint.calls.filter((c) => c.operation === 'SendCommand');
      expect(sends.map((c) => (c.body as { Targets?: unknown }).Targets)).toEqual([[{ Key: `tag:${TAG.key}`, Values: [TAG.value] }]]);
      expect(results.map((r) => r.ok)).toEqual(Array.from({ length: 60 }, () => true));
      expect(new Set(many.endpoint.invocations().map((i) => i.instanceId)).size).toBe(60);
    } finally {
      await many.stop();
    }
  });

  it('finds the load balancers by tag', async () => {
    const relay = await createSsmRelay({ ...fleet.settings, targets: { tag: TAG } }, { api: fleet.api });
    expect([...relay.loadBalancers].sort()).toEqual([...fleet.instanceIds].sort());
  });

  it('keeps an offline and a Windows instance found by tag as load balancers, and reports each without sending it anything', async () => {
    const mixed = await startSsmFleet(4, [BACKEND], { haproxies: 1, instances: { 2: { online: false }, 3: { platform: 'Windows' } } });
    try {
      const relay = await createSsmRelay({ ...mixed.settings, targets: { tag: TAG } }, { api: mixed.api });
      const results = await relay.run(relay.loadBalancers.map((loadBalancer) => ({ loadBalancer, commands: ['show servers state be_ingest'] })));

      const [up1, up2, offline, windows] = mixed.instanceIds.map(String);
      expect(relay.loadBalancers).toEqual([up1, up2, offline, windows]);
      const describe = mixed.endpoint.calls.filter((c) => c.operation === 'DescribeInstanceInformation');
      expect(describe.map((c) => [c.status, (c.body as { Filters?: unknown }).Filters])).toEqual([[200, [{ Key: `tag:${TAG.key}`, Values: [TAG.value] }]]]);
      expect(results.map((r) => r.ok)).toEqual([true, true, false, false]);
      expect(failed(results[2]).message).toMatch(new RegExp(`^${offline}: not sent: Systems Manager reports its SSM Agent as ConnectionLost, last ping \\S+: it cannot run a command now$`));
      expect(failed(results[3]).message).toBe(`${windows}: not sent: it is a Windows node; the document runs only on Linux`);
      const sends = mixed.endpoint.calls.filter((c) => c.operation === 'SendCommand');
      expect(sends.map((c) => (c.body as { InstanceIds?: unknown }).InstanceIds)).toEqual([[up1, up2]]);
    } finally {
      await mixed.stop();
    }
  });
});

describe('SSM relay with 500 servers per backend', () => {
  const servers = Array.from({ length: 500 }, (_, i) => ({ name: `ingest-${String(i + 1).padStart(3, '0')}.eu-west-1.internal` }));
  const backends: BackendSpec[] = ['be_a', 'be_b', 'be_c'].map((name) => ({ name, balance: 'leastconn', servers }));
  const observe = backends.flatMap((b) => [`show stat ${b.name} 6 -1`, `show servers state ${b.name}`]);
  let fleet: SsmFleet;

  beforeAll(async () => {
    fleet = await startSsmFleet(1, backends);
  });
  afterAll(async () => {
    await fleet?.stop();
  });

  it('reads one 500-server backend in one command within the 24,000-character output limit', async () => {
    const relay = createSsmRelayFor(fleet.settings, fleet.instanceIds, { api: fleet.api });
    const id = String(fleet.instanceIds[0]);
    const commands = observe.slice(0, 2);
    const results = await relay.run([{ loadBalancer: id, commands }]);
    const reply = ok(results[0]);

    const direct = (await fleet.byInstance(id).runtime('show servers state be_a')).length;
    const printed = fleet.endpoint.invocations().at(-1)?.stdout ?? '';
    expect(reply).toContain('# pxname,svname,');
    expect(reply.split('\n').filter((l) => l.startsWith('be_a,ingest-')).length).toBe(500);
    expect(printed.length).toBeLessThan(STDOUT_LIMIT_CHARS);
    // The measurement the README quotes: raw reply size versus what SSM has to carry.
    console.info(`500 servers: raw reply ${reply.length} bytes (show servers state alone ${direct}), document output ${printed.length} characters`);
  });

  it('detects a reply cut at 24,000 characters instead of parsing it', async () => {
    const relay = createSsmRelayFor(fleet.settings, fleet.instanceIds, { api: fleet.api, maxShowCommands: 100 });
    const results = await relay.run([{ loadBalancer: String(fleet.instanceIds[0]), commands: [...observe, ...observe, ...observe] }]);

    const error = failed(results[0]);
    expect(error.message).toContain('cut off at the 24,000-character output limit');
    expect(fleet.endpoint.invocations().at(-1)?.stdout.length).toBeGreaterThan(STDOUT_LIMIT_CHARS);
  });

  it('without an output bucket, observes each 500-server backend in its own command, all sent at once, and joins the replies in order', async () => {
    // The order in which the relay makes its calls, recorded on our side of the wire: the order
    // in which the endpoint receives them depends on how fast each connection opens.
    const made: string[] = [];
    const api: SsmApi = {
      ...fleet.api,
      sendCommand: (input) => {
        made.push('SendCommand');
        return fleet.api.sendCommand(input);
      },
      listCommandInvocations: (input) => {
        made.push('ListCommandInvocations');
        return fleet.api.listCommandInvocations(input);
      },
      getCommandInvocation: (input) => {
        made.push('GetCommandInvocation');
        return fleet.api.getCommandInvocation(input);
      },
    };
    const relay = createSsmRelayFor(fleet.settings, fleet.instanceIds, { api });
    const before = fleet.endpoint.calls.length;
    const results = await relay.run([{ loadBalancer: String(fleet.instanceIds[0]), commands: observe }]);
    const reply = ok(results[0]);

    const received = fleet.endpoint.calls.slice(before).map((c) => c.operation);
    expect(received.filter((c) => c === 'SendCommand')).toHaveLength(3);
    // The three were sent before any of them was polled.
    expect(made.slice(0, 3)).toEqual(['SendCommand', 'SendCommand', 'SendCommand']);
    expect(made.filter((c) => c === 'SendCommand')).toHaveLength(3);
    const backendsSeen = reply.split('\n').filter((l) => /^be_[abc],BACKEND,/.test(l)).map((l) => l.split(',')[0]);
    expect(backendsSeen).toEqual(['be_a', 'be_b', 'be_c']);
  });

  it('with an output bucket, observes every backend in one command', async () => {
    const local = await startSsmFleet(2, backends, { s3: true });
    try {
      const relay = createSsmRelayFor(local.settings, local.instanceIds, { api: local.api, ...(local.output === undefined ? {} : { output: local.output }) });
      const results = await relay.run(local.instanceIds.map((loadBalancer) => ({ loadBalancer, commands: [...observe, ...observe, ...observe] })));

      expect(local.endpoint.calls.filter((c) => c.operation === 'SendCommand')).toHaveLength(1);
      for (const r of results) expect(ok(r).split('\n').filter((l) => /^be_[abc],BACKEND,/.test(l))).toHaveLength(9);
      expect(local.endpoint.invocations().every((i) => i.stdout.length > STDOUT_LIMIT_CHARS)).toBe(true);
    } finally {
      await local.stop();
    }
  });

  it('refuses a weight batch longer than one command, leaving HAProxy untouched', async () => {
    const relay = createSsmRelayFor(fleet.settings, fleet.instanceIds, { api: fleet.api });
    const id = String(fleet.instanceIds[0]);
    const commands = [...servers, ...servers, ...servers].map((s, i) => `set server be_b/${s.name} weight ${(i % 200) + 7}`);
    const before = fleet.endpoint.calls.filter((c) => c.operation === 'SendCommand').length;
    const results = await relay.run([{ loadBalancer: id, commands }]);

    expect(failed(results[0])).toBeInstanceOf(UnsafeInputError);
    expect(fleet.endpoint.calls.filter((c) => c.operation === 'SendCommand').length - before).toBe(0);
    expect((await fleet.byInstance(id).getWeight('be_b', 'ingest-001.eu-west-1.internal')).current).toBe(100);
  });

  it('applies a 500-server weight batch in one command', async () => {
    const relay = createSsmRelayFor(fleet.settings, fleet.instanceIds, { api: fleet.api });
    const id = String(fleet.instanceIds[0]);
    const commands = servers.map((s, i) => `set server be_c/${s.name} weight ${(i % 200) + 7}`);
    const before = fleet.endpoint.calls.filter((c) => c.operation === 'SendCommand').length;
    const results = await relay.run([{ loadBalancer: id, commands }]);

    expect(ok(results[0])).toBe('\n'.repeat(500));
    expect(fleet.endpoint.calls.filter((c) => c.operation === 'SendCommand').length - before).toBe(1);
    const h = fleet.byInstance(id);
    expect((await h.getWeight('be_c', 'ingest-001.eu-west-1.internal')).current).toBe(7);
    expect((await h.getWeight('be_c', 'ingest-500.eu-west-1.internal')).current).toBe((499 % 200) + 7);
  });
});
