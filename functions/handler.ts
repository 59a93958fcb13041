import { Logger } from '@aws-lambda-powertools/logger';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { GetDocumentCommand, type SSMClient } from '@aws-sdk/client-ssm';
import middy, { type MiddlewareObj } from '@middy/core';
import type { Context } from 'aws-lambda';
import { createGraphiteSource, type GraphiteSource } from './adapters/graphite.js';
import { createHistorySink } from './adapters/history-sink.js';
import { createSsmClient, createSsmRelay, s3ApiFromClient, ssmApiFromClient, ssmClientConfig, type S3Api, type SsmApi, type SsmClientOptions } from './adapters/ssm-relay.js';
import { emitCycleMetrics } from './aws/cycle-metrics.js';
import { awsDoctorChecks, type AwsDoctorApi } from './aws/doctor-aws.js';
import { RELAY_OUTPUT_PREFIX, graphiteSecretOrigin, readLambdaEnvironment, redact, type LambdaEnvironment } from './aws/lambda-config.js';
import { lambdaParameters, setupOf, type LambdaSetup } from './aws/parameters.js';
import { metricsTimestamp, parseInvocation, type InvocationRequest } from './aws/payload.js';
import { checkTargetsAllowed } from './aws/target-guard.js';
import { createControlMemory } from './core/control-memory.js';
import { createStaticMemory, runCycle, type CycleReport } from './core/cycle.js';
import { runDoctor, type DoctorReport, type Unavailable } from './core/doctor.js';
import { recordHistory } from './core/history.js';
import type { RelayRunOptions, RuntimeRelay } from './core/types.js';
import { displaySafeDeep, displaySafeReplacer } from './core/display.js';
import { WeighterError, describeError } from './core/errors.js';
import { VERSION } from './version.js';

/**
 * The Lambda function: an EventBridge schedule (or a person, with a small JSON payload) starts one
 * rebalance cycle. Middy middlewares do the plumbing: Powertools' injectLambdaContext (request id
 * and cold start on every log line) and logMetrics (ColdStart metric, metrics flushed when the
 * invocation ends, failed or not), the failure log line, and Parameter Store (configuration, then
 * the Graphite secret only if the configuration needs one). Load balancers are reached through SSM
 * Run Command. The return value is the same JSON report as the CLI's `--json`; for `{"doctor": true}`
 * the doctor's report, as `haproxy-weighter doctor --json` prints it.
 */

export const SERVICE_NAME = 'haproxy-weighter';

export interface HandlerOptions {
  /** Where CONFIG_PARAMETER, GRAPHITE_KEY_PARAMETER, RELAY_DOCUMENT_NAME and TARGET_TAG_KEY/VALUE are read (process.env by default). */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** SSM endpoint, region and credentials, for both Parameter Store and Run Command (tests point them at the local emulator). */
  readonly aws?: SsmClientOptions;
  readonly logger?: Logger;
  readonly metrics?: Metrics;
  readonly now?: () => number;
  /** The relay's sleep between polls, injectable for tests. */
  readonly relaySleep?: (ms: number) => Promise<void>;
  /** Parameter cache: key and lifetime in ms (-1: for the life of the container). */
  readonly cache?: { readonly key: string; readonly expiryMs: number };
  /** S3 endpoint for the command output bucket (tests point it at the local S3 endpoint, path-style). */
  readonly s3Endpoint?: string;
  /** How long before Lambda's limit the cycle must have returned its report (default TIME_RESERVE_MS). */
  readonly timeReserveMs?: number;
}

/**
 * The cycle's time budget ends this long before Lambda's limit: enough to assemble, log and return
 * the report and flush the metrics after the last write it waited for.
 */
export const TIME_RESERVE_MS = 10_000;

/**
 * Middy's early timeout: the last resort if the cycle has not returned by then (it answers an
 * error and aborts the signal), a little before Lambda would kill the function with no answer.
 */
export const EARLY_TIMEOUT_MS = 1_000;

/** Parameters are re-read at most this often, so that a config change needs no deploy. */
const DEFAULT_CACHE_MS = 5 * 60_000;

/** An error's causes, outermost first, as one line each (middy keeps its reasons in `cause.data`). */
function causesOf(error: unknown): string[] {
  const out: string[] = [];
  let current: unknown = error instanceof Error ? error.cause : undefined;
  for (let depth = 0; depth < 5 && current !== undefined && current !== null; depth++) {
    if (current instanceof Error) out.push(`${current.name === 'Error' ? '' : `${current.name}: `}${current.message}`);
    const data: unknown = typeof current === 'object' ? Reflect.get(current, 'data') : undefined;
    if (Array.isArray(data)) out.push(...data.map(describeError));
    current = current instanceof Error ? current.cause : undefined;
  }
  return out;
}

/** Logs why an invocation failed, with the causes, secrets masked; the error then travels on. */
function failureLog(logger: Logger): MiddlewareObj<unknown, CycleReport | DoctorReport, Error, Context> {
  return {
    onError: ({ error, context }) => {
      const secrets = setupOf(context)?.secrets ?? [];
      const causes = causesOf(error);
      logger.error('cycle failed', {
        error: redact(describeError(error), secrets),
        ...(error instanceof WeighterError ? { code: error.code } : {}),
        ...(causes.length === 0 ? {} : { cause: redact(causes.join(' <- '), secrets) }),
      });
    },
  };
}

export function createHandler(options: HandlerOptions = {}) {
  const env = options.env ?? process.env;
  // Every string of every log line made visible text: no control, bidi or invisible character reaches CloudWatch raw.
  const logger = options.logger ?? new Logger({ serviceName: SERVICE_NAME, jsonReplacerFn: displaySafeReplacer });
  const metrics = options.metrics ?? new Metrics({ serviceName: SERVICE_NAME, namespace: env.POWERTOOLS_METRICS_NAMESPACE ?? 'HaproxyWeighter' });
  const now = options.now ?? Date.now;

  let lambdaEnv: LambdaEnvironment | { readonly error: unknown };
  try {
    lambdaEnv = readLambdaEnvironment(env);
  } catch (error) {
    // Reported on every invocation rather than as an import failure, with the same clear message.
    lambdaEnv = { error };
  }
  const stackEnv = 'configParameter' in lambdaEnv ? lambdaEnv : undefined;

  // Lives as long as the warm container: a backend refusing every weight is not retried each minute.
  const staticMemory = createStaticMemory();
  // ...and the control loop remembers what it saw: reloads, new servers, what HAProxy placed since Graphite measured.
  const controlMemory = createControlMemory();
  // One SSM client per container: Run Command and the doctor's reads share its connections.
  let ssmClient: SSMClient | undefined;
  const ssm = (): SSMClient => (ssmClient ??= createSsmClient(options.aws));
  let runCommandApi: SsmApi | undefined;
  const api = (): SsmApi => (runCommandApi ??= ssmApiFromClient(ssm()));
  // The S3 client (100 KB of the bundle) is loaded with the first output read from S3 (a reply
  // longer than the part that comes with the command's status), as undici is with the first
  // render, not by every cold start's import.
  let s3Client: Promise<S3Api> | undefined;
  const s3Api = (): Promise<S3Api> =>
    (s3Client ??= import('./adapters/s3-client.js').then(({ S3Client }) =>
      s3ApiFromClient(
        new S3Client({
          ...(options.aws?.region === undefined ? {} : { region: options.aws.region }),
          ...(options.aws?.credentials === undefined ? {} : { credentials: { ...options.aws.credentials } }),
          ...(options.s3Endpoint === undefined ? {} : { endpoint: options.s3Endpoint, forcePathStyle: true }),
          maxAttempts: options.aws?.maxAttempts ?? 6,
          retryMode: 'adaptive',
        }),
      ),
    ));
  const s3: S3Api = { getObject: async (bucket, key, signal) => (await s3Api()).getObject(bucket, key, signal) };
  const reserveMs = options.timeReserveMs ?? TIME_RESERVE_MS;
  let doctorReadApi: AwsDoctorApi | undefined;
  const doctorApi = (): AwsDoctorApi => (doctorReadApi ??= { describeInstanceInformation: (input) => api().describeInstanceInformation(input), getDocument: (input) => ssm().send(new GetDocumentCommand(input)) });

  /** The relay to the stack's instances, as the cycle and the doctor both use it. */
  const relayFor = (setup: LambdaSetup, env: LambdaEnvironment): Promise<RuntimeRelay> =>
    createSsmRelay(setup.relay, {
      api: api(),
      ...(options.relaySleep === undefined ? {} : { sleep: options.relaySleep }),
      ...(env.relayOutputBucket === undefined ? {} : { output: { bucket: env.relayOutputBucket, keyPrefix: RELAY_OUTPUT_PREFIX, s3 } }),
      now,
      maxConcurrentCommands: setup.relay.maxConcurrentCommands,
      onCommand: (sent) => logger.debug('SSM command sent', { ...sent }),
    });

  /**
   * `{"doctor": true}`: the doctor's checks through the same relay, plus the AWS ones. A Graphite
   * source or a relay that cannot be built (no tagged instance online) is a failed check, so every
   * other check still runs; the stage's tag is checked per instance instead of refusing the call.
   */
  const doctor = async (request: InvocationRequest, setup: LambdaSetup, env: LambdaEnvironment, budget: RelayRunOptions): Promise<DoctorReport> => {
    let metricSource: GraphiteSource | Unavailable;
    try {
      metricSource = createGraphiteSource(setup.config.graphite, { env: setup.graphiteEnv, secretOrigin: graphiteSecretOrigin(env) });
    } catch (error) {
      metricSource = { error };
    }
    try {
      let relay: RuntimeRelay | Unavailable;
      try {
        relay = await relayFor(setup, env);
      } catch (error) {
        relay = { error };
      }
      logger.info('doctor started', { backends: request.backends ?? 'all', loadBalancers: 'loadBalancers' in relay ? relay.loadBalancers.length : 0 });
      const raw = await runDoctor(
        { config: setup.config, metrics: metricSource, relay, now, version: VERSION, platformChecks: () => awsDoctorChecks({ relay: setup.relay, targetTag: env.targetTag }, doctorApi()) },
        { budget, ...(request.backends === undefined ? {} : { backends: request.backends }) },
      );
      const report = displaySafeDeep(redact(raw, setup.secrets));
      metrics.addMetric('DoctorChecksFailed', MetricUnit.Count, report.counts.failed);
      const summary = { outcome: report.outcome, counts: report.counts, failed: report.checks.flatMap((c) => (c.status === 'failed' ? [{ check: c.check, code: c.code, loadBalancer: c.loadBalancer, backend: c.backend }] : [])) };
      if (report.outcome === 'ok') logger.info('doctor finished', summary);
      else logger.warn('doctor found problems', summary);
      return report;
    } finally {
      // Its connections last this invocation.
      if ('close' in metricSource) await metricSource.close();
    }
  };

  const cycle = async (event: unknown, context: Context, { signal }: { signal: AbortSignal }): Promise<CycleReport | DoctorReport> => {
    const startedAt = now();
    // The budget: what Lambda leaves this invocation, less the reserve to report in. Middy's signal
    // (its early timeout) also ends it.
    const leftMs = typeof context.getRemainingTimeInMillis === 'function' ? context.getRemainingTimeInMillis() : Number.POSITIVE_INFINITY;
    const budgetMs = Math.max(0, leftMs - reserveMs);
    const budget = Number.isFinite(budgetMs) ? { signal: AbortSignal.any([signal, AbortSignal.timeout(budgetMs)]), deadline: startedAt + budgetMs } : { signal };
    const setup = setupOf(context);
    if (setup === undefined || stackEnv === undefined) throw new Error('the Parameter Store middleware did not prepare this invocation');
    try {
      const request = parseInvocation(event);
      if (request.mode === 'doctor') return await doctor(request, setup, stackEnv, budget);
      const mode = request.mode;
      // Each cycle's metrics belong to its schedule tick, so that one slow cycle cannot push its
      // datapoint into the next tick's period (the alarms count one datapoint per cycle).
      metrics.setTimestamp(metricsTimestamp(event, startedAt));
      const source = `SSM parameter ${stackEnv.configParameter}`;
      if (stackEnv.targetTag !== undefined) await checkTargetsAllowed(setup.relay.targets, stackEnv.targetTag, api(), source);
      // Its connections last this invocation: closed however the cycle ends.
      await using graphite = createGraphiteSource(setup.config.graphite, { env: setup.graphiteEnv, secretOrigin: graphiteSecretOrigin(stackEnv) });
      // The history's HTTP token, if any, is the Graphite secret: the one SecureString the function reads.
      const history = createHistorySink(setup.config.history, { env: setup.graphiteEnv, intervalSeconds: setup.config.intervalSeconds });
      const relay = await relayFor(setup, stackEnv);
      logger.info('cycle started', { trigger: request.trigger, mode, force: request.force, backends: request.backends ?? 'all', loadBalancers: relay.loadBalancers.length });
      const cycled = await runCycle(
        { config: setup.config, metrics: graphite, relay, now, version: VERSION },
        {
          mode,
          force: request.force,
          knownStatic: staticMemory.current(now()),
          memory: controlMemory,
          budget,
          ...(request.backends === undefined ? {} : { backends: request.backends }),
        },
      );
      // A history that cannot be sent is a warning in the report, never the cycle's failure.
      const withHistory = history === undefined || setup.config.history === undefined ? cycled : await recordHistory(cycled, history, setup.config.history.prefix);
      const redacted = redact(withHistory, setup.secrets);
      // What the invocation returns and logs: every string made visible text.
      const report = displaySafeDeep(redacted);
      staticMemory.remember(report.staticRefusals, now());
      // Flushed by logMetrics when the invocation ends.
      emitCycleMetrics(metrics, report);
      const summary = {
        outcome: report.outcome,
        mode: report.mode,
        durationMs: report.durationMs,
        serversChanged: report.serversChanged,
        failedLoadBalancers: report.failedLoadBalancers,
        problems: report.problems,
        // A cause the read-back settled (outcome ok) is still worth a log line.
        loadBalancerErrors: report.loadBalancers.flatMap((lb) => (lb.error === null ? [] : [{ loadBalancer: lb.name, error: lb.error }])),
      };
      if (report.outcome === 'ok') logger.info('cycle finished', summary);
      else logger.warn('cycle finished with problems', summary);
      return report;
    } catch (error) {
      const message = redact(describeError(error), setup.secrets);
      // The original error carries the secret in its message: it must not travel on as a cause.
      // eslint-disable-next-line preserve-caught-error
      if (message !== describeError(error)) throw new Error(message);
      throw error;
    }
  };

  return middy<unknown, CycleReport | DoctorReport, Error, Context>({
    timeoutEarlyInMillis: EARLY_TIMEOUT_MS,
    // Thrown into the middlewares' onError: failureLog writes it to the log.
    timeoutEarlyResponse: () => {
      const message = `the cycle had not returned ${EARLY_TIMEOUT_MS} ms before the Lambda time limit: no report (its own budget ended ${reserveMs} ms before the limit)`;
      throw Object.assign(new Error(message), { name: 'TimeoutError' });
    },
  })
    .use(injectLambdaContext(logger, { resetKeys: true }))
    .use(logMetrics(metrics, { captureColdStartMetric: true }))
    .use(failureLog(logger))
    .use(
      lambdaParameters({
        env: lambdaEnv,
        awsClientOptions: ssmClientConfig(options.aws),
        cacheKey: options.cache?.key ?? `${SERVICE_NAME}-parameters`,
        cacheExpiryMs: options.cache?.expiryMs ?? DEFAULT_CACHE_MS,
      }),
    )
    .handler(cycle);
}

export const handler = createHandler();
