import { authSecretName, parseConfig, parseConfigText, type Config, type SsmRelayConfig } from '../core/config.js';
import { ConfigError } from '../core/errors.js';

/** The environment the stack gives the function (names only: values live in SSM Parameter Store). */
export interface LambdaEnvironment {
  /** Name of the String parameter that holds the configuration document (YAML or JSON). */
  readonly configParameter: string;
  /** Name of the SecureString parameter that holds the Graphite secret, if the config needs one. */
  readonly graphiteKeyParameter: string | undefined;
  /** Name of the SSM document deployed with the stack: the only one the role may run. */
  readonly relayDocumentName: string | undefined;
  /** The tag of the instances the role may run commands on (its ssm:SendCommand condition), when the stack says. */
  readonly targetTag: TargetTag | undefined;
  /** The stack's bucket for Run Command output; without it, output comes through GetCommandInvocation (24,000-character limit). */
  readonly relayOutputBucket: string | undefined;
}

/** An EC2 / managed-instance tag: key and value. */
export interface TargetTag {
  readonly key: string;
  readonly value: string;
}

/** The key prefix the relay's output goes under (the IAM policies of the stack are scoped to it). */
export const RELAY_OUTPUT_PREFIX = 'haproxy-weighter';

const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

const PARAMETER_NAME = /^[A-Za-z0-9_.\-/]{1,1011}$/;

export function readLambdaEnvironment(env: Readonly<Record<string, string | undefined>>): LambdaEnvironment {
  const configParameter = env.CONFIG_PARAMETER ?? '';
  if (!PARAMETER_NAME.test(configParameter)) throw new ConfigError('CONFIG_PARAMETER must name the SSM parameter that holds the configuration');
  const key = env.GRAPHITE_KEY_PARAMETER;
  if (key !== undefined && key !== '' && !PARAMETER_NAME.test(key)) throw new ConfigError('GRAPHITE_KEY_PARAMETER is not a valid SSM parameter name');
  const document = env.RELAY_DOCUMENT_NAME;
  const bucket = env.RELAY_OUTPUT_BUCKET;
  if (bucket !== undefined && bucket !== '' && !BUCKET_NAME.test(bucket)) throw new ConfigError(`RELAY_OUTPUT_BUCKET ${JSON.stringify(bucket.slice(0, 80))} is not an S3 bucket name`);
  return {
    configParameter,
    graphiteKeyParameter: key === undefined || key === '' ? undefined : key,
    relayDocumentName: document === undefined || document === '' ? undefined : document,
    targetTag: readTargetTag(env),
    relayOutputBucket: bucket === undefined || bucket === '' ? undefined : bucket,
  };
}

// The same characters the configuration accepts in relay.targets.tag.
const TAG_KEY = /^[A-Za-z0-9_.:/=+@-]{1,128}$/;
const TAG_VALUE = /^[A-Za-z0-9_.:/=+@-]{1,256}$/;

function readTargetTag(env: Readonly<Record<string, string | undefined>>): TargetTag | undefined {
  const key = env.TARGET_TAG_KEY ?? '';
  const value = env.TARGET_TAG_VALUE ?? '';
  if (key === '' && value === '') return undefined;
  if (!TAG_KEY.test(key) || !TAG_VALUE.test(value)) {
    throw new ConfigError(`TARGET_TAG_KEY and TARGET_TAG_VALUE must both name the tag the function's role may run commands on (got ${JSON.stringify(key)}=${JSON.stringify(value)})`);
  }
  return { key, value };
}

/**
 * Validates the configuration read from Parameter Store. @middy/ssm hands over JSON already parsed
 * and anything else (YAML) as text. The Lambda only relays through SSM, and only with the document
 * its role may run.
 */
export async function loadLambdaConfig(value: unknown, env: LambdaEnvironment): Promise<{ readonly config: Config; readonly relay: SsmRelayConfig }> {
  const source = `SSM parameter ${env.configParameter}`;
  let config: Config;
  if (typeof value === 'string') config = await parseConfigText(value, source);
  else if (typeof value === 'object' && value !== null) config = parseConfig(value, source);
  else throw new ConfigError(`${source} is empty or missing`);
  const relay = config.relay;
  if (relay.type !== 'ssm') {
    throw new ConfigError(`Invalid configuration in ${source}`, [`relay.type: the Lambda reaches load balancers through SSM Run Command: use "ssm" (got ${JSON.stringify(relay.type)})`]);
  }
  const historyAuth = config.history?.http?.auth;
  const historySecret = historyAuth === undefined ? undefined : authSecretName(historyAuth);
  if (historySecret !== undefined && historySecret !== graphiteSecretName(config)) {
    throw new ConfigError(`Invalid configuration in ${source}`, [
      `history.http.auth: the Lambda reads one secret, the Graphite one (GRAPHITE_KEY_PARAMETER): name the same variable as graphite.auth (${graphiteSecretName(config) ?? 'which names none'}), with a token that may read and write (got ${historySecret})`,
    ]);
  }
  if (env.relayDocumentName !== undefined && relay.documentName !== env.relayDocumentName) {
    throw new ConfigError(`Invalid configuration in ${source}`, [
      `relay.documentName: this stack deploys and may only run the document ${JSON.stringify(env.relayDocumentName)} (got ${JSON.stringify(relay.documentName)})`,
    ]);
  }
  return { config, relay };
}

/** The environment variable the Graphite auth reads its secret from, if any. */
export function graphiteSecretName(config: Config): string | undefined {
  return authSecretName(config.graphite.auth);
}

/**
 * The environment handed to the Graphite adapter: only the secret the config names, taken from the
 * SecureString. Nothing else of the Lambda's environment reaches it.
 */
export function graphiteEnvironment(config: Config, secret: unknown, env: LambdaEnvironment): Record<string, string> {
  const name = graphiteSecretName(config);
  if (name === undefined) return {};
  if (env.graphiteKeyParameter === undefined) {
    throw new ConfigError(`graphite.auth.type is ${config.graphite.auth.type}: set GRAPHITE_KEY_PARAMETER to the SecureString parameter that holds the secret`);
  }
  // @middy/ssm parses values that look like JSON; a secret is a plain string.
  if (typeof secret !== 'string' || secret === '') {
    throw new ConfigError(`SSM parameter ${env.graphiteKeyParameter} must hold the Graphite secret as a plain, non-empty string`);
  }
  return { [name]: secret };
}

/** Where the Graphite secret comes from in AWS, for the message of a key Graphite refuses. */
export function graphiteSecretOrigin(env: LambdaEnvironment): string | undefined {
  return env.graphiteKeyParameter === undefined ? undefined : `the SecureString parameter ${env.graphiteKeyParameter} (named by GRAPHITE_KEY_PARAMETER)`;
}

/** Replaces every occurrence of a secret in a JSON-shaped value, so that no report or log line carries it. */
export function redact<T>(value: T, secrets: readonly string[]): T {
  const live = secrets.filter((s) => s.length >= 4);
  if (live.length === 0) return value;
  const scrub = (v: unknown): unknown => {
    if (typeof v === 'string') return live.reduce((text, s) => text.split(s).join('***'), v);
    if (Array.isArray(v)) return v.map(scrub);
    if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, scrub(x)]));
    return v;
  };
  // Only plain JSON data (reports, log attributes) goes through here, and the shape is unchanged.
  return scrub(value) as T;
}
