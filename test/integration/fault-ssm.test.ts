/**
 * Fault matrix, SSM side: the Lambda handler with the real @aws-sdk/client-ssm (adaptive retries)
 * against the local SSM endpoint, which runs the real document from `infra/` with bash and socat
 * on three emulated instances, each with its own real HAProxy; loads come from the real Graphite
 * of the test run. Every case asserts
 *   (a) the result: the report's outcome, or the error thrown;
 *   (b) the weight every HAProxy actually holds afterwards (`get weight`), and that every weight
 *       the report vouches for is the one HAProxy holds;
 *   (c) that the report and the logs name the cause (instance id, SSM status);
 *   (d) the EMF metrics Powertools printed (CyclesCompleted, ServersChanged, LoadBalancersFailed,
 *       LoadBalancerFailed per load balancer).
 * Faults that must hit one step only (the write, not the observation before it) are armed by an
 * `onRequest` listener when the SendCommand that carries `set server` arrives, and lifted, where a
 * case says so, when the read-back that follows an unknown outcome is sent.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { CycleReport } from '../../functions/core/cycle.js';
import { feedLoads, uniquePrefix } from '../harness/graphite.js';
import { problemsOf } from '../harness/report.js';
import { currentWeights, resetWeights, type BackendSpec } from '../harness/haproxy.js';
import { sharedGraphite } from '../harness/shared-graphite.js';
import { DOCUMENT_NAME, startSsmFleet, type SsmFleet } from '../ssm-endpoint/fleet.js';
import {
  CONFIG_PARAMETER,
  commandsOf,
  failedLoadBalancerMetrics,
  invoke,
  must,
  plannedWeights,
  testHandler,
  totalsOf,
  type Captured,
  ssmTestConfig,
} from '../ssm-endpoint/lambda-invoke.js';
import { STDOUT_LIMIT } from '../ssm-endpoint/ssm-endpoint.js';

const SERVERS = ['ingest-1', 'ingest-2', 'ingest-3'];
const LOADS: Readonly<Record<string, number>> = { 'ingest-1': 100, 'ingest-2': 200, 'ingest-3': 400 };
const BACKEND: BackendSpec = { name: 'be_ingest', balance: 'leastconn', servers: SERVERS.map((name) => ({ name })) };
const UNCHANGED: Readonly<Record<string, number>> = { 'ingest-1': 100, 'ingest-2': 100, 'ingest-3': 100 };
/** Spare servers that make one instance's observation of the backend print more than 24,000 characters. */
// Enough servers that even the document's cut observation of them passes GetCommandInvocation's limit.
const SPARES = 5_000;
/**
 * SDK attempts for the storms that outlast them: the count does not change the outcome, and after
 * the first ThrottlingException the adaptive client paces itself to about one request per two
 * seconds, so fewer attempts keep these cases short.
 */
const FEW_ATTEMPTS = 2;

let fleet: SsmFleet;
let target: string;
let unsubscribe: (() => void) | undefined;
let reloaded: string | undefined;
let graphiteUrl = '';

beforeAll(async () => {
  const graphite = await sharedGraphite();
  const prefix = uniquePrefix('fault_ssm');
  target = await feedLoads(graphite, prefix, Object.fromEntries(SERVERS.map((s) => [s, LOADS[s] ?? 0])), 'points');
  fleet = await startSsmFleet(3, [BACKEND], { parameters: { [CONFIG_PARAMETER]: { type: 'String', value: '' } } });
  graphiteUrl = graphite.url;
});

afterAll(async () => {
  await fleet?.stop();
});

afterEach(async () => {
  unsubscribe?.();
  unsubscribe = undefined;
  fleet.endpoint.clearFaults();
  if (reloaded !== undefined) {
    await fleet.byInstance(reloaded).reload({ backends: [BACKEND] });
    reloaded = undefined;
  }
  // Every case starts from the configured weights, so "unchanged" means exactly 100 everywhere.
  await resetWeights(fleet.haproxies, 'be_ingest', SERVERS);
});

function config(relay: { readonly maxWaitMs?: number } = {}): unknown {
  return ssmTestConfig(fleet, { url: graphiteUrl }, target, relay);
}

/** One scheduled cycle through a freshly deployed handler. */
async function cycle(options: { readonly maxAttempts?: number; readonly maxWaitMs?: number } = {}): Promise<Captured<CycleReport> & { readonly report: CycleReport }> {
  const handler = testHandler(fleet, config({ ...(options.maxWaitMs === undefined ? {} : { maxWaitMs: options.maxWaitMs }) }), {
    ...(options.maxAttempts === undefined ? {} : { maxAttempts: options.maxAttempts }),
  });
  const captured = await invoke(handler);
  if (captured.error !== undefined) throw captured.error;
  return { ...captured, report: must(captured.result) };
}

/**
 * Arms `arm` when the SendCommand that writes weights arrives (so that the observation before it
 * ran normally), and calls `lift` when a SendCommand that only reads arrives after it: the
 * read-back the cycle sends when a write's outcome is unknown.
 */
function atWriteStep(arm: () => void, lift?: () => void): void {
  let armed = false;
  unsubscribe = fleet.endpoint.onRequest((operation, body) => {
    if (operation !== 'SendCommand') return;
    const commands = commandsOf(body);
    if (!armed && commands.includes('set server ')) {
      armed = true;
      arm();
    } else if (armed && commands.startsWith('show ')) {
      lift?.();
    }
  });
}

function weightsOn(instanceId: string): Promise<Record<string, number>> {
  return currentWeights(fleet.byInstance(instanceId), 'be_ingest', SERVERS);
}

/**
 * Checks every weight the report vouches for against the weight HAProxy holds: written weights,
 * weights left alone, and weights read back after an unknown outcome. Returns the servers whose
 * weight the report says it cannot vouch for.
 */
async function unvouchedAfterCheckingTheRest(report: CycleReport): Promise<string[]> {
  const unvouched: string[] = [];
  for (const b of report.backends) {
    for (const entry of b.loadBalancers) {
      if (entry.plan.status !== 'planned') continue;
      const failed = new Map(entry.apply.failed.map((f) => [f.server, f] as const));
      for (const action of entry.plan.actions) {
        const held = (await fleet.byInstance(entry.loadBalancer).getWeight(b.backend, action.server)).current;
        const where = `${entry.loadBalancer} ${b.backend}/${action.server}`;
        const failure = failed.get(action.server);
        if (failure === undefined) {
          expect(held, where).toBe(action.kind === 'set-weight' && report.mode === 'apply' ? action.weight : action.current);
          continue;
        }
        if (failure.heldWeight === null) unvouched.push(`${entry.loadBalancer}/${action.server}`);
        else expect(held, where).toBe(failure.heldWeight);
      }
    }
  }
  return unvouched;
}

const calls = (from: number, operation: string): { status: number; error?: string; body: unknown }[] =>
  fleet.endpoint.calls.slice(from).filter((c) => c.operation === operation);

/** Write commands SSM accepted (and so ran on instances) since `from`. */
const writesAccepted = (from: number): number => calls(from, 'SendCommand').filter((c) => c.status === 200 && JSON.stringify(c.body).includes('set server')).length;

/** The log line the handler writes for a problem, as Powertools serialises it. */
const logged = (code: string, loadBalancer: string): string => `"code":"${code}","severity":"error","loadBalancer":"${loadBalancer}"`;

describe('SSM faults through the Lambda handler, the local SSM endpoint and three real HAProxy', () => {
  it('sets the planned weights on every HAProxy when nothing fails (the control case)', async () => {
    const { report, emf } = await cycle();

    expect(report.outcome).toBe('ok');
    expect(report.backends[0]?.loads).toEqual(LOADS);
    for (const id of fleet.instanceIds) {
      const planned = plannedWeights(report, id);
      // Distinct from the starting 100 everywhere, so "unchanged" below can only mean "not written".
      expect(Object.values(planned).every((w) => w !== 100)).toBe(true);
      expect(await weightsOn(id)).toEqual(planned);
    }
    expect(await unvouchedAfterCheckingTheRest(report)).toEqual([]);
    expect(totalsOf(emf)).toMatchObject({ CyclesCompleted: 1, ServersChanged: 9, LoadBalancersFailed: 0, GraphiteFailures: 0 });
    expect(failedLoadBalancerMetrics(emf)).toEqual([]);
  });

  describe('a throttling storm', () => {
    it('rides out five ThrottlingExceptions in a row on SendCommand and on ListCommandInvocations with the default six attempts', async () => {
      const from = fleet.endpoint.calls.length;
      fleet.endpoint.throttle('SendCommand', 5);
      fleet.endpoint.throttle('ListCommandInvocations', 5);
      const { report, emf } = await cycle({ maxAttempts: 6 });

      expect(report.outcome).toBe('ok');
      expect(report.problems).toEqual([]);
      for (const id of fleet.instanceIds) expect(await weightsOn(id)).toEqual(plannedWeights(report, id));
      expect(await unvouchedAfterCheckingTheRest(report)).toEqual([]);
      expect(
        calls(from, 'SendCommand')
          .slice(0, 6)
          .map((c) => c.error ?? 'ok'),
      ).toEqual([...Array<string>(5).fill('ThrottlingException'), 'ok']);
      expect(calls(from, 'ListCommandInvocations').filter((c) => c.error === 'ThrottlingException')).toHaveLength(5);
      expect(totalsOf(emf)).toMatchObject({ CyclesCompleted: 1, ServersChanged: 9, LoadBalancersFailed: 0 });
    }, 180_000);

    it('fails cleanly, writing nothing, when SendCommand stays throttled past every attempt', async () => {
      const from = fleet.endpoint.calls.length;
      fleet.endpoint.throttle('SendCommand', 1_000);
      const { report, emf, output } = await cycle({ maxAttempts: FEW_ATTEMPTS });

      expect(report.outcome).toBe('failed');
      expect(report.serversChanged).toBe(0);
      expect(report.failedLoadBalancers).toEqual([...fleet.instanceIds]);
      for (const id of fleet.instanceIds) {
        expect(await weightsOn(id)).toEqual(UNCHANGED);
      }
      expect(problemsOf(report)).toEqual(fleet.instanceIds.map((id) => ['observe-failed', id, null, null]));
      for (const [i, id] of fleet.instanceIds.entries()) {
        expect(report.problems[i]?.cause).toEqual({ type: 'relay', kind: null, message: `${id}: SendCommand ${DOCUMENT_NAME} failed: ThrottlingException: Rate exceeded` });
      }
      expect(calls(from, 'SendCommand').map((c) => c.error)).toEqual(Array<string>(FEW_ATTEMPTS).fill('ThrottlingException'));
      expect(calls(from, 'ListCommandInvocations')).toEqual([]);
      expect(calls(from, 'GetCommandInvocation')).toEqual([]);
      expect(output).toContain('cycle finished with problems');
      expect(totalsOf(emf)).toMatchObject({ ServersChanged: 0, LoadBalancersFailed: 3, GraphiteFailures: 0 });
      expect(failedLoadBalancerMetrics(emf)).toEqual([...fleet.instanceIds]);
    });

    it('sends no weight and says none is confirmed when the storm on SendCommand starts at the write', async () => {
      const from = fleet.endpoint.calls.length;
      atWriteStep(() => fleet.endpoint.throttle('SendCommand', 1_000));
      const { report, emf } = await cycle({ maxAttempts: FEW_ATTEMPTS });

      expect(report.outcome).toBe('failed');
      expect(report.serversChanged).toBe(0);
      expect(writesAccepted(from)).toBe(0);
      for (const id of fleet.instanceIds) {
        expect(await weightsOn(id)).toEqual(UNCHANGED);
        expect(report.backends[0]?.loadBalancers.find((l) => l.loadBalancer === id)?.apply).toMatchObject({
          status: 'failed',
          changed: 0,
          readBack: false,
          error: `${id}: SendCommand ${DOCUMENT_NAME} failed: ThrottlingException: Rate exceeded`,
        });
      }
      expect(problemsOf(report)).toEqual(fleet.instanceIds.flatMap((id) => SERVERS.map((s) => ['batch-unconfirmed', id, 'be_ingest', s])));
      expect(await unvouchedAfterCheckingTheRest(report)).toHaveLength(9);
      expect(totalsOf(emf)).toMatchObject({ ServersChanged: 0, LoadBalancersFailed: 3 });
      expect(failedLoadBalancerMetrics(emf)).toEqual([...fleet.instanceIds]);
    });

    it('confirms the weights by reading them back when ListCommandInvocations is throttled past every attempt after the write ran', async () => {
      atWriteStep(
        () => fleet.endpoint.throttle('ListCommandInvocations', 1_000),
        () => fleet.endpoint.clearFaults(),
      );
      const { report, emf } = await cycle({ maxAttempts: FEW_ATTEMPTS });

      // Every write landed and the read-back proved it: nothing is left in doubt.
      expect(report.outcome).toBe('ok');
      expect(report.serversChanged).toBe(9);
      for (const id of fleet.instanceIds) expect(await weightsOn(id)).toEqual(plannedWeights(report, id));
      expect(await unvouchedAfterCheckingTheRest(report)).toEqual([]);
      for (const lb of report.loadBalancers) {
        expect(lb).toMatchObject({ apply: 'ok', error: expect.stringMatching(new RegExp(`^${lb.name}: ListCommandInvocations for command [0-9a-f-]{36} failed: ThrottlingException: Rate exceeded; the batch may have been partly applied$`)) });
      }
      expect(totalsOf(emf)).toMatchObject({ CyclesCompleted: 1, ServersChanged: 9, LoadBalancersFailed: 0 });
    });

    it('reports the weights as unconfirmed, never as unchanged, when ListCommandInvocations stays throttled through the read-back', async () => {
      atWriteStep(() => fleet.endpoint.throttle('ListCommandInvocations', 1_000));
      const { report, emf } = await cycle({ maxAttempts: FEW_ATTEMPTS });

      expect(report.outcome).toBe('failed');
      // The writes did run on every instance: the report must not claim the old weights.
      for (const id of fleet.instanceIds) {
        expect(await weightsOn(id)).toEqual(plannedWeights(report, id));
        expect(report.backends[0]?.loadBalancers.find((l) => l.loadBalancer === id)?.apply).toMatchObject({
          status: 'failed',
          readBack: false,
          error: expect.stringMatching(new RegExp(`^${id}: ListCommandInvocations for command [0-9a-f-]{36} failed: ThrottlingException: Rate exceeded`)),
        });
      }
      expect(problemsOf(report)).toEqual(fleet.instanceIds.flatMap((id) => SERVERS.map((s) => ['batch-unconfirmed', id, 'be_ingest', s])));
      expect(await unvouchedAfterCheckingTheRest(report)).toHaveLength(9);
      expect(totalsOf(emf)).toMatchObject({ ServersChanged: 0, LoadBalancersFailed: 3 });
      expect(failedLoadBalancerMetrics(emf)).toEqual([...fleet.instanceIds]);
    });
  });

  describe('an invocation not yet registered (InvocationDoesNotExist, not listed by ListCommandInvocations)', () => {
    it('keeps polling through six answers per invocation that do not show it yet and completes the cycle', async () => {
      const from = fleet.endpoint.invocations().length;
      for (const id of fleet.instanceIds) fleet.endpoint.invocationNotFound(id, 6);
      const { report, emf } = await cycle();

      expect(report.outcome).toBe('ok');
      for (const id of fleet.instanceIds) expect(await weightsOn(id)).toEqual(plannedWeights(report, id));
      expect(await unvouchedAfterCheckingTheRest(report)).toEqual([]);
      // Observe and write: two commands, three instances each, each hidden from six answers.
      expect(
        fleet.endpoint
          .invocations()
          .slice(from)
          .map((i) => i.hidden),
      ).toEqual([6, 6, 6, 6, 6, 6]);
      expect(totalsOf(emf)).toMatchObject({ CyclesCompleted: 1, ServersChanged: 9, LoadBalancersFailed: 0 });
    });

    it('names the instance whose write never shows up before the deadline, and does not claim its old weights', async () => {
      const [good1, bad, good2] = fleet.instanceIds.map(String);
      atWriteStep(() => fleet.endpoint.invocationNotFound(String(bad), 1_000_000));
      const { report, emf, output } = await cycle({ maxWaitMs: 3_000 });

      expect(report.outcome).toBe('partial');
      expect(report.serversChanged).toBe(6);
      expect(report.failedLoadBalancers).toEqual([bad]);
      expect(problemsOf(report)).toEqual(SERVERS.map((s) => ['batch-unconfirmed', bad, 'be_ingest', s]));
      expect(report.backends[0]?.loadBalancers.find((l) => l.loadBalancer === bad)?.apply).toMatchObject({
        readBack: false,
        error: expect.stringMatching(/no final status for SSM command [0-9a-f-]{36} within 3000 ms \(last: not yet registered \(not listed by ListCommandInvocations\)\); it may still run on the instance/),
      });
      expect(output).toContain(logged('batch-unconfirmed', String(bad)));
      // The agent ran it: the weights landed, and the report says it cannot vouch for them.
      expect(await weightsOn(String(bad))).toEqual(plannedWeights(report, String(bad)));
      for (const id of [good1, good2]) expect(await weightsOn(String(id))).toEqual(plannedWeights(report, String(id)));
      expect(await unvouchedAfterCheckingTheRest(report)).toEqual(SERVERS.map((s) => `${bad}/${s}`));
      expect(totalsOf(emf)).toMatchObject({ ServersChanged: 6, LoadBalancersFailed: 1 });
      expect(failedLoadBalancerMetrics(emf)).toEqual([bad]);
    });
  });

  describe('one of three instances failing on every command', () => {
    it.each([
      ['Undeliverable', (id: string) => fleet.endpoint.undeliverable(id), 'ended Failed (Undeliverable)'],
      ['TimedOut', (id: string) => fleet.endpoint.timeOut(id, 2), 'ended TimedOut (ExecutionTimedOut)'],
      ['Failed by the agent', (id: string) => fleet.endpoint.failInstance(id, 'the SSM Agent on this node crashed'), 'ended Failed: the SSM Agent on this node crashed'],
    ])('applies on the other two and names the instance when its invocations end %s', async (_label, inject, cause) => {
      const [good1, bad, good2] = fleet.instanceIds.map(String);
      inject(String(bad));
      const { report, emf, output } = await cycle();

      expect(report.outcome).toBe('partial');
      expect(report.serversChanged).toBe(6);
      expect(report.failedLoadBalancers).toEqual([bad]);
      expect(await weightsOn(String(bad))).toEqual(UNCHANGED);
      for (const id of [good1, good2]) expect(await weightsOn(String(id))).toEqual(plannedWeights(report, String(id)));
      expect(await unvouchedAfterCheckingTheRest(report)).toEqual([]);
      expect(problemsOf(report)).toEqual([['observe-failed', bad, null, null]]);
      expect(report.problems[0]?.cause?.message).toMatch(new RegExp(`^${bad}: SSM command [0-9a-f-]{36} ${cause.replace(/[()]/g, '\\$&')}`));
      expect(output).toContain(logged('observe-failed', String(bad)));
      expect(totalsOf(emf)).toMatchObject({ CyclesCompleted: 1, ServersChanged: 6, LoadBalancersFailed: 1 });
      expect(failedLoadBalancerMetrics(emf)).toEqual([bad]);
    });
  });

  describe('a fault on the write only', () => {
    it('reads back and reports the weights an instance still holds when its write is Undeliverable', async () => {
      const [good1, bad, good2] = fleet.instanceIds.map(String);
      atWriteStep(
        () => fleet.endpoint.undeliverable(String(bad)),
        () => fleet.endpoint.clearFaults(),
      );
      const { report, emf } = await cycle();

      expect(report.outcome).toBe('partial');
      expect(report.serversChanged).toBe(6);
      expect(report.failedLoadBalancers).toEqual([bad]);
      expect(await weightsOn(String(bad))).toEqual(UNCHANGED);
      for (const id of [good1, good2]) expect(await weightsOn(String(id))).toEqual(plannedWeights(report, String(id)));
      expect(await unvouchedAfterCheckingTheRest(report)).toEqual([]);
      expect(problemsOf(report)).toEqual(SERVERS.map((s) => ['batch-unconfirmed', bad, 'be_ingest', s]));
      const badApply = report.backends[0]?.loadBalancers.find((l) => l.loadBalancer === bad)?.apply;
      expect(badApply).toMatchObject({ readBack: true, error: expect.stringMatching(new RegExp(`^${bad}: SSM command [0-9a-f-]{36} ended Failed \\(Undeliverable\\)`)) });
      expect(badApply?.failed.map((f) => [f.server, f.heldWeight])).toEqual(SERVERS.map((s) => [s, 100]));
      expect(totalsOf(emf)).toMatchObject({ ServersChanged: 6, LoadBalancersFailed: 1 });
      expect(failedLoadBalancerMetrics(emf)).toEqual([bad]);
    });

    it('counts the weights of a write that ran but ended TimedOut once the read-back shows they landed', async () => {
      const [, bad] = fleet.instanceIds.map(String);
      atWriteStep(
        () => fleet.endpoint.timeOut(String(bad), 2, { afterRunning: true }),
        () => fleet.endpoint.clearFaults(),
      );
      const { report, emf } = await cycle();

      expect(report.outcome).toBe('ok');
      expect(report.serversChanged).toBe(9);
      for (const id of fleet.instanceIds) expect(await weightsOn(id)).toEqual(plannedWeights(report, id));
      expect(await unvouchedAfterCheckingTheRest(report)).toEqual([]);
      expect(report.loadBalancers.find((lb) => lb.name === bad)).toMatchObject({
        apply: 'ok',
        error: expect.stringMatching(new RegExp(`^${bad}: SSM command [0-9a-f-]{36} ended TimedOut \\(ExecutionTimedOut\\); the batch may have been partly applied$`)),
      });
      expect(totalsOf(emf)).toMatchObject({ ServersChanged: 9, LoadBalancersFailed: 0 });
      expect(failedLoadBalancerMetrics(emf)).toEqual([]);
    });
  });

  it('detects an observation cut at 24,000 characters on one instance, never parses it, and leaves that instance alone', async () => {
    const [good1, bad, good2] = fleet.instanceIds.map(String);
    const spares = Array.from({ length: SPARES }, (_, i) => ({ name: `spare-${String(i).padStart(4, '0')}.eu-west-1.compute.internal` }));
    reloaded = String(bad);
    await fleet.byInstance(String(bad)).reload({ backends: [{ ...BACKEND, servers: [...BACKEND.servers, ...spares] }] });
    const from = fleet.endpoint.invocations().length;
    const { report, emf, output } = await cycle();

    expect(report.outcome).toBe('partial');
    expect(report.serversChanged).toBe(6);
    expect(report.failedLoadBalancers).toEqual([bad]);
    const printed = fleet.endpoint
      .invocations()
      .slice(from)
      .filter((i) => i.instanceId === bad);
    // Only the observation went to that instance, and it really printed more than SSM returns.
    expect(printed).toHaveLength(1);
    expect(printed[0]?.stdout.length).toBeGreaterThan(STDOUT_LIMIT);
    expect(problemsOf(report)).toEqual([['observe-failed', bad, null, null]]);
    expect(report.problems[0]?.cause?.message).toContain(`${bad}: the reply was cut off at the 24,000-character output limit of GetCommandInvocation`);
    expect(output).toContain('cut off at the 24,000-character output limit');
    expect(await weightsOn(String(bad))).toEqual(UNCHANGED);
    for (const id of [good1, good2]) expect(await weightsOn(String(id))).toEqual(plannedWeights(report, String(id)));
    expect(await unvouchedAfterCheckingTheRest(report)).toEqual([]);
    expect(totalsOf(emf)).toMatchObject({ ServersChanged: 6, LoadBalancersFailed: 1 });
    expect(failedLoadBalancerMetrics(emf)).toEqual([bad]);
  });
});
