/**
 * Invoking the real Lambda handler in a test, the way the stack wires it: configuration in the
 * local SSM endpoint's Parameter Store, Run Command through the same endpoint, and everything
 * Powertools prints (JSON log lines and EMF metric documents) captured so that tests can assert
 * on the logs and on the metrics CloudWatch would receive.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import type { Context } from 'aws-lambda';
import { vi } from 'vitest';
import { stringify } from 'yaml';
import type { CycleReport } from '../../functions/core/cycle.js';
import type { DoctorReport } from '../../functions/core/doctor.js';
import { checkedDoctorReport, checkedReport } from '../harness/report.js';
import { createHandler } from '../../functions/handler.js';
import { DOCUMENT_NAME, SOCKET_PATH, TAG, TEST_CREDENTIALS, type SsmFleet } from './fleet.js';

export const CONFIG_PARAMETER = '/haproxy-weighter/test/config';
export const KEY_PARAMETER = '/haproxy-weighter/test/graphite-key';

/**
 * The configuration a test stores in Parameter Store: the SSM relay over the fleet (by instance
 * id unless `relay.targets` says otherwise) and one
 * `be_ingest` backend on `target`, with a window wide enough that points written in a file's
 * `beforeAll` stay in it for the whole file.
 */
export function ssmTestConfig(
  fleet: SsmFleet,
  graphite: Readonly<Record<string, unknown>>,
  target: string,
  relay: { readonly documentName?: string; readonly maxWaitMs?: number; readonly targets?: unknown } = {},
): unknown {
  return {
    graphite: { retries: 0, ...graphite },
    relay: {
      type: 'ssm',
      documentName: relay.documentName ?? DOCUMENT_NAME,
      socketPath: SOCKET_PATH,
      targets: relay.targets ?? { instanceIds: [...fleet.instanceIds] },
      pollIntervalMs: 20,
      maxWaitMs: relay.maxWaitMs ?? 60_000,
    },
    backends: [{ name: 'be_ingest', target, from: '-15min', aggregation: 'average', weighting: { function: 'limited-proportions' } }],
  };
}

/** What EventBridge sends when the schedule fires. */
export const SCHEDULED_EVENT = {
  version: '0',
  id: '53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa',
  'detail-type': 'Scheduled Event',
  source: 'aws.events',
  account: '123456789012',
  time: '2024-01-01T00:00:00Z',
  region: 'us-east-1',
  resources: ['arn:aws:events:us-east-1:123456789012:rule/haproxy-weighter-prod-schedule'],
  detail: {},
};

export const LAMBDA_CONTEXT = {
  callbackWaitsForEmptyEventLoop: true,
  functionName: 'haproxy-weighter-test-rebalance',
  functionVersion: '$LATEST',
  invokedFunctionArn: 'arn:aws:lambda:us-east-1:123456789012:function:haproxy-weighter-test-rebalance',
  memoryLimitInMB: '256',
  awsRequestId: 'c6af9ac6-7b61-11e6-9a41-93e812345678',
  logGroupName: '/aws/lambda/haproxy-weighter-test-rebalance',
  logStreamName: '2024/01/01/[$LATEST]abcdef',
  getRemainingTimeInMillis: () => 300_000,
  done: () => undefined,
  fail: () => undefined,
  succeed: () => undefined,
} satisfies Context;

export type TestHandler = ReturnType<typeof createHandler>;

let handlerCount = 0;

export interface TestHandlerOptions {
  /** SDK attempts per SSM API call (the handler's default is 6). */
  readonly maxAttempts?: number;
  /** Name of the SecureString with the Graphite secret, as the stack sets GRAPHITE_KEY_PARAMETER; unset when omitted. */
  readonly keyParameter?: string;
  /** The stack's TARGET_TAG_KEY/VALUE; the fleet's tag by default, `null` for none. */
  readonly targetTag?: { readonly key: string; readonly value: string } | null;
  /** The handler's clock (the cycle's, its time budget's and the relay's). */
  readonly now?: () => number;
  /** Give the handler the fleet's S3 output bucket (RELAY_OUTPUT_BUCKET), when the fleet has one. */
  readonly outputBucket?: boolean;
  /** The stack's document (RELAY_DOCUMENT_NAME); the fleet's by default. */
  readonly documentName?: string;
  /** How long before Lambda's limit the cycle's time budget ends (the handler's default when omitted). */
  readonly timeReserveMs?: number;
}

/**
 * A freshly deployed handler (its own parameter cache and SDK clients) whose configuration
 * parameter holds `config` (a YAML text, or an object written as YAML).
 */
export function testHandler(fleet: SsmFleet, config: unknown, options: TestHandlerOptions = {}): TestHandler {
  fleet.endpoint.setParameter(CONFIG_PARAMETER, { type: 'String', value: typeof config === 'string' ? config : stringify(config) });
  return createHandler({
    env: {
      CONFIG_PARAMETER,
      RELAY_DOCUMENT_NAME: options.documentName ?? DOCUMENT_NAME,
      ...(options.keyParameter === undefined ? {} : { GRAPHITE_KEY_PARAMETER: options.keyParameter }),
      ...(options.targetTag === null ? {} : { TARGET_TAG_KEY: (options.targetTag ?? TAG).key, TARGET_TAG_VALUE: (options.targetTag ?? TAG).value }),
      ...(options.outputBucket === true && fleet.output !== undefined ? { RELAY_OUTPUT_BUCKET: fleet.output.bucket } : {}),
    },
    ...(options.now === undefined ? {} : { now: options.now }),
    ...(options.timeReserveMs === undefined ? {} : { timeReserveMs: options.timeReserveMs }),
    ...(options.outputBucket === true && fleet.s3 !== undefined ? { s3Endpoint: fleet.s3.url } : {}),
    aws: { endpoint: fleet.endpoint.url, region: 'us-east-1', credentials: TEST_CREDENTIALS, maxAttempts: options.maxAttempts ?? 4 },
    logger: new Logger({ serviceName: 'haproxy-weighter', logLevel: 'DEBUG' }),
    metrics: new Metrics({ serviceName: 'haproxy-weighter', namespace: 'HaproxyWeighterTest' }),
    cache: { key: `handler-test-${process.pid}-${++handlerCount}`, expiryMs: -1 },
  });
}

/** One EMF document: metric values and dimensions at the top level, `_aws` metadata. */
export type EmfDocument = Readonly<Record<string, unknown>>;

export interface Captured<T> {
  readonly result: T | undefined;
  readonly error: unknown;
  /** Everything printed while the handler ran: log lines and EMF documents. */
  readonly output: string;
  /** The EMF documents printed, in order. */
  readonly emf: readonly EmfDocument[];
}

function isEmfDocument(value: unknown): value is EmfDocument {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && '_aws' in value;
}

/** Runs `fn` while recording everything Powertools prints (logs on stdout and stderr, EMF metrics on stdout). */
export async function capture<T>(fn: () => Promise<T>): Promise<Captured<T>> {
  const chunks: string[] = [];
  const record = (chunk: string | Uint8Array): boolean => {
    chunks.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
    return true;
  };
  const spies = [vi.spyOn(process.stdout, 'write').mockImplementation(record), vi.spyOn(process.stderr, 'write').mockImplementation(record)];
  let result: T | undefined;
  let error: unknown;
  try {
    result = await fn();
  } catch (e) {
    error = e;
  } finally {
    for (const spy of spies) spy.mockRestore();
  }
  const output = chunks.join('');
  const emf = output
    .split('\n')
    .filter((line) => line.includes('"_aws"'))
    .map((line): unknown => JSON.parse(line))
    .filter(isEmfDocument);
  return { result, error, output, emf };
}

/** Invokes the handler with the scheduled event (or `event`) and captures what it printed; a report it returns must match the shipped schema. */
export async function invoke(handler: TestHandler, event: unknown = SCHEDULED_EVENT): Promise<Captured<CycleReport>> {
  // Lambda hands every invocation its own context object.
  const captured = await capture(() => handler(event, { ...LAMBDA_CONTEXT }));
  return { ...captured, result: captured.result === undefined ? undefined : checkedReport(captured.result) };
}

/** Invokes the handler with `{"doctor": true}` (and `extra`), and captures what it printed; the report must match the shipped doctor schema. */
export async function invokeDoctor(handler: TestHandler, extra: Record<string, unknown> = {}): Promise<Captured<DoctorReport>> {
  const captured = await capture(() => handler({ doctor: true, ...extra }, { ...LAMBDA_CONTEXT }));
  return { ...captured, result: captured.result === undefined ? undefined : checkedDoctorReport(captured.result) };
}

/** The totals document of a cycle's metrics (service dimension only). */
export function totalsOf(emf: readonly EmfDocument[]): EmfDocument {
  const totals = emf.find((m) => 'ServersChanged' in m);
  if (totals === undefined) throw new Error(`no totals among ${emf.length} EMF document(s)`);
  return totals;
}

/** The load balancers named by a `LoadBalancerFailed` metric, in the order emitted. */
export function failedLoadBalancerMetrics(emf: readonly EmfDocument[]): unknown[] {
  return emf.filter((m) => m.LoadBalancerFailed === 1).map((m) => m.LoadBalancer);
}

export function must<T>(value: T | undefined): T {
  if (value === undefined) throw new Error('the handler returned nothing');
  return value;
}

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The weights a report planned to write on one load balancer for its first backend. */
export function plannedWeights(report: CycleReport, loadBalancer: string): Record<string, number> {
  const plan = report.backends[0]?.loadBalancers.find((l) => l.loadBalancer === loadBalancer)?.plan;
  if (plan?.status !== 'planned') throw new Error(`no plan for ${loadBalancer}: ${JSON.stringify(plan)}`);
  return Object.fromEntries(plan.actions.flatMap((a) => (a.kind === 'set-weight' && a.weight !== null ? [[a.server, a.weight]] : [])));
}

/** The `Commands` parameter of a SendCommand request body, or '' when it has none. */
export function commandsOf(body: Readonly<Record<string, unknown>>): string {
  const parameters = body.Parameters;
  if (typeof parameters !== 'object' || parameters === null) return '';
  const commands: unknown = Reflect.get(parameters, 'Commands');
  return Array.isArray(commands) && typeof commands[0] === 'string' ? commands[0] : '';
}
