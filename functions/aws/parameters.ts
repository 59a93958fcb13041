import type { MiddlewareObj, Request } from '@middy/core';
import ssm from '@middy/ssm';
import type { SSMClientConfig } from '@aws-sdk/client-ssm';
import type { Context } from 'aws-lambda';
import type { Config, SsmRelayConfig } from '../core/config.js';
import { ConfigError, describeError } from '../core/errors.js';
import { graphiteEnvironment, graphiteSecretName, loadLambdaConfig, type LambdaEnvironment } from './lambda-config.js';

/**
 * What an invocation needs from SSM Parameter Store, as a middy middleware in two steps: first the
 * configuration parameter, then, only when its `graphite.auth` needs a secret, the SecureString
 * named by GRAPHITE_KEY_PARAMETER. With `auth.type: none` the secret parameter is never requested,
 * so it need not exist. Both go through @middy/ssm (cached across warm invocations, separately);
 * the configuration is fetched ahead at cold start, the secret only on demand.
 *
 * A parameter that cannot be read fails the invocation with a ConfigError naming the parameter
 * and what it is for; @middy/ssm's own error ("Failed to resolve internal values", the reason
 * hidden in its cause) travels on as the cause.
 */

export interface LambdaSetup {
  readonly config: Config;
  readonly relay: SsmRelayConfig;
  /** The environment handed to the Graphite adapter: only the secret its auth names. */
  readonly graphiteEnv: Readonly<Record<string, string>>;
  /** Values that must never be printed. */
  readonly secrets: readonly string[];
}

// Keyed by the invocation's context object: one setup per invocation, gone with it.
const setups = new WeakMap<object, LambdaSetup>();

/** The setup the middleware prepared for this invocation; only undefined if it did not run or failed. */
export function setupOf(context: Context): LambdaSetup | undefined {
  return setups.get(context);
}

export interface ParameterOptions {
  /** The stack's environment, or the error reading it (reported on every invocation). */
  readonly env: LambdaEnvironment | { readonly error: unknown };
  readonly awsClientOptions: SSMClientConfig;
  readonly cacheKey: string;
  /** Milliseconds a value is reused; -1 for the life of the container. */
  readonly cacheExpiryMs: number;
}

/** What @middy/ssm keeps in `request.internal` for the two parameters. */
interface ParameterInternal extends Record<string, unknown> {
  config: unknown;
  graphiteKey: unknown;
}

type ParameterRequest = Request<unknown, unknown, Error, Context, ParameterInternal>;

function contextValue(context: Context, key: string): unknown {
  return Object.getOwnPropertyDescriptor(context, key)?.value;
}

/** The reasons @middy/ssm keeps in the cause of "Failed to resolve internal values". */
function reasonsOf(error: unknown): string[] {
  const cause: unknown = error instanceof Error ? error.cause : undefined;
  const data: unknown = typeof cause === 'object' && cause !== null ? Reflect.get(cause, 'data') : undefined;
  const reasons = Array.isArray(data) ? data : [];
  const described = reasons.map((reason) => {
    const message = describeError(reason);
    // GetParameters answers a name it does not know in InvalidParameters, and @middy/ssm turns that into this.
    if (/^InvalidParameter /.test(message)) return 'it does not exist (GetParameters lists it as an invalid parameter)';
    const name = reason instanceof Error && reason.name !== 'Error' ? `${reason.name}: ` : '';
    return `${name}${message}`;
  });
  return described.length > 0 ? described : [describeError(error)];
}

async function fetchInto(middleware: { readonly before?: (request: ParameterRequest) => unknown }, request: ParameterRequest, parameter: string, purpose: string): Promise<void> {
  try {
    await middleware.before?.(request);
  } catch (error) {
    throw new ConfigError(`Cannot read ${purpose} from the SSM parameter ${parameter}: ${reasonsOf(error).join('; ')}`, [], { cause: error });
  }
}

export function lambdaParameters(options: ParameterOptions): MiddlewareObj<unknown, unknown, Error, Context, ParameterInternal> {
  const env = options.env;
  if (!('configParameter' in env)) {
    return {
      before: () => {
        throw env.error;
      },
    };
  }
  const common = { awsClientOptions: options.awsClientOptions, cacheExpiry: options.cacheExpiryMs, setToContext: true };
  const configFetch = ssm({ ...common, fetchData: { config: env.configParameter }, cacheKey: `${options.cacheKey}-config` });
  const keyParameter = env.graphiteKeyParameter;
  // Never fetched ahead: whether it is needed is only known once the configuration is read.
  const secretFetch = keyParameter === undefined ? undefined : ssm({ ...common, fetchData: { graphiteKey: keyParameter }, cacheKey: `${options.cacheKey}-graphite-key`, disablePrefetch: true });

  return {
    before: async (request) => {
      await fetchInto(configFetch, request, env.configParameter, 'the configuration');
      const { config, relay } = await loadLambdaConfig(contextValue(request.context, 'config'), env);
      let secret: unknown;
      if (graphiteSecretName(config) !== undefined && secretFetch !== undefined && keyParameter !== undefined) {
        await fetchInto(secretFetch, request, keyParameter, `the Graphite secret (graphite.auth.type is ${config.graphite.auth.type})`);
        secret = contextValue(request.context, 'graphiteKey');
      }
      // Names GRAPHITE_KEY_PARAMETER when the auth needs a secret and the stack names none.
      const graphiteEnv = graphiteEnvironment(config, secret, env);
      setups.set(request.context, { config, relay, graphiteEnv, secrets: typeof secret === 'string' ? [secret] : [] });
    },
  };
}
