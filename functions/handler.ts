import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import middy from '@middy/core';
import ssm from '@middy/ssm';
import type { Context } from 'aws-lambda';
import { createGraphiteSource } from './adapters/graphite.js';
import { createSsmClient, createSsmRelay, ssmApiFromClient, ssmClientConfig, type SsmApi, type SsmClientOptions } from './adapters/ssm-relay.js';
import { emitCycleMetrics } from './aws/cycle-metrics.js';
import { graphiteEnvironment, loadLambdaConfig, readLambdaEnvironment, redact, type LambdaEnvironment } from './aws/lambda-config.js';
import { parseInvocation } from './aws/payload.js';
import { createStaticMemory, runCycle, type CycleReport } from './core/cycle.js';
import { WeighterError, describeError } from './core/errors.js';
import { VERSION } from './version.js';

/**
 * The Lambda function: an EventBridge schedule (or a person, with a small JSON payload) starts one
 * rebalance cycle. The configuration document and the Graphite secret come from SSM Parameter
 * Store through @middy/ssm, cached across warm invocations; load balancers are reached through SSM
 * Run Command. The return value is the same JSON report as the CLI's `--json`.
 */

export const SERVICE_NAME = 'haproxy-weighter';

export interface HandlerOptions {
  /** Where CONFIG_PARAMETER, GRAPHITE_KEY_PARAMETER and RELAY_DOCUMENT_NAME are read (process.env by default). */
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
}

/** Parameters are re-read at most this often, so that a config change needs no deploy. */
const DEFAULT_CACHE_MS = 5 * 60_000;

function fromContext(context: Context, key: string): unknown {
  return Object.getOwnPropertyDescriptor(context, key)?.value;
}

export function createHandler(options: HandlerOptions = {}) {
  const env = options.env ?? process.env;
  const logger = options.logger ?? new Logger({ serviceName: SERVICE_NAME });
  const metrics = options.metrics ?? new Metrics({ serviceName: SERVICE_NAME, namespace: env.POWERTOOLS_METRICS_NAMESPACE ?? 'HaproxyWeighter' });
  const now = options.now ?? Date.now;

  let lambdaEnv: LambdaEnvironment | undefined;
  let envError: unknown;
  try {
    lambdaEnv = readLambdaEnvironment(env);
  } catch (error) {
    // Reported on every invocation rather than as an import failure, with the same clear message.
    envError = error;
  }

  // Lives as long as the warm container: a backend refusing every weight is not retried each minute.
  const staticMemory = createStaticMemory();
  let runCommandApi: SsmApi | undefined;
  const api = (): SsmApi => (runCommandApi ??= ssmApiFromClient(createSsmClient(options.aws)));
  const awsClientOptions = ssmClientConfig(options.aws);
  const fetchData: Record<string, string> = {};
  if (lambdaEnv !== undefined) fetchData.config = lambdaEnv.configParameter;
  if (lambdaEnv?.graphiteKeyParameter !== undefined) fetchData.graphiteKey = lambdaEnv.graphiteKeyParameter;

  const cycle = async (event: unknown, context: Context): Promise<CycleReport> => {
    const secret = fromContext(context, 'graphiteKey');
    const secrets = typeof secret === 'string' ? [secret] : [];
    try {
      if (lambdaEnv === undefined) throw envError;
      const request = parseInvocation(event);
      const { config, relay: relayConfig } = loadLambdaConfig(fromContext(context, 'config'), lambdaEnv);
      const graphite = createGraphiteSource(config.graphite, { env: graphiteEnvironment(config, secret, lambdaEnv) });
      const relay = await createSsmRelay(relayConfig, {
        api: api(),
        ...(options.relaySleep === undefined ? {} : { sleep: options.relaySleep }),
        onCommand: (sent) => logger.debug('SSM command sent', { ...sent }),
      });
      logger.info('cycle started', { trigger: request.trigger, mode: request.mode, force: request.force, backends: request.backends ?? 'all', loadBalancers: relay.loadBalancers.length });
      const report = redact(
        await runCycle(
          { config, metrics: graphite, relay, now, version: VERSION },
          {
            mode: request.mode,
            force: request.force,
            knownStatic: staticMemory.current(now()),
            ...(request.backends === undefined ? {} : { backends: request.backends }),
          },
        ),
        secrets,
      );
      staticMemory.remember(report.staticRefusals, now());
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
      const message = redact(describeError(error), secrets);
      logger.error('cycle failed', { error: message, ...(error instanceof WeighterError ? { code: error.code } : {}) });
      // The original error carries the secret in its message: it must not travel on as a cause.
      // eslint-disable-next-line preserve-caught-error
      if (message !== describeError(error)) throw new Error(message);
      throw error;
    }
  };

  const wrapped = middy<unknown, CycleReport, Error, Context>();
  // Without parameter names there is nothing to fetch (the invocation fails with the reason), and
  // no cache refresh timer should keep a process alive.
  if (Object.keys(fetchData).length > 0) {
    wrapped.use(
      ssm({
        fetchData,
        setToContext: true,
        awsClientOptions,
        cacheKey: options.cache?.key ?? `${SERVICE_NAME}-parameters`,
        cacheExpiry: options.cache?.expiryMs ?? DEFAULT_CACHE_MS,
      }),
    );
  }
  return wrapped.handler(cycle);
}

export const handler = createHandler();
