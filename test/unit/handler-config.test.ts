import { describe, expect, it } from 'vitest';
import { graphiteEnvironment, graphiteSecretName, loadLambdaConfig, readLambdaEnvironment, redact } from '../../functions/aws/lambda-config.js';
import { parseConfig } from '../../functions/core/config.js';
import { ConfigError } from '../../functions/core/errors.js';

const ENV = readLambdaEnvironment({ CONFIG_PARAMETER: '/hw/prod/config', GRAPHITE_KEY_PARAMETER: '/hw/prod/graphite-key', RELAY_DOCUMENT_NAME: 'hw-prod-relay' });

const base = {
  graphite: { url: 'https://graphite.example.com/', auth: { type: 'url-key', keyEnv: 'GRAPHITE_API_KEY' } },
  relay: { type: 'ssm', documentName: 'hw-prod-relay', socketPath: '/run/haproxy/admin.sock', targets: { tag: { key: 'haproxy-weighter', value: 'enabled' } } },
  backends: [{ name: 'be_ingest', target: 'aliasByNode(ingest.*.points, 1)', weighting: { function: 'limited-proportions' } }],
};

const yaml = `graphite:
  url: https://graphite.example.com/
relay:
  type: ssm
  documentName: hw-prod-relay
  socketPath: /run/haproxy/admin.sock
  targets: { instanceIds: [i-0123456789abcdef0] }
backends:
  - name: be_ingest
    target: ingest.*.points
    weighting: { function: normalised-exponential }
`;

function issuesOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    if (error instanceof ConfigError) return error.message;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

async function rejection(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (error instanceof ConfigError) return error.message;
  throw new Error(`expected a ConfigError, got ${String(error)}`);
}

describe('readLambdaEnvironment', () => {
  it('needs the configuration parameter name', () => {
    expect(() => readLambdaEnvironment({})).toThrow('CONFIG_PARAMETER must name the SSM parameter that holds the configuration');
  });

  it('reads the tag the role may run commands on', () => {
    expect(readLambdaEnvironment({ CONFIG_PARAMETER: '/a', TARGET_TAG_KEY: 'haproxy-weighter', TARGET_TAG_VALUE: 'prod' }).targetTag).toEqual({ key: 'haproxy-weighter', value: 'prod' });
    expect(readLambdaEnvironment({ CONFIG_PARAMETER: '/a' }).targetTag).toBeUndefined();
  });

  it.each([
    ['a value without a key', { TARGET_TAG_VALUE: 'prod' }],
    ['a key without a value', { TARGET_TAG_KEY: 'haproxy-weighter' }],
    ['a value with a space', { TARGET_TAG_KEY: 'haproxy-weighter', TARGET_TAG_VALUE: 'pr od' }],
  ])('refuses %s, naming both settings', (_label, env) => {
    expect(() => readLambdaEnvironment({ CONFIG_PARAMETER: '/a', ...env })).toThrow(/^TARGET_TAG_KEY and TARGET_TAG_VALUE must both name the tag/);
  });

  it('treats an empty key parameter as none', () => {
    expect(readLambdaEnvironment({ CONFIG_PARAMETER: '/a', GRAPHITE_KEY_PARAMETER: '' }).graphiteKeyParameter).toBeUndefined();
  });
});

describe('loadLambdaConfig', () => {
  it('accepts YAML text, as @middy/ssm hands it over', async () => {
    expect((await loadLambdaConfig(yaml, ENV)).relay.targets).toEqual({ instanceIds: ['i-0123456789abcdef0'] });
  });

  it('accepts a JSON document that @middy/ssm already parsed', async () => {
    expect((await loadLambdaConfig(base, ENV)).relay.documentName).toBe('hw-prod-relay');
  });

  it.each([
    ['the socket relay', { ...base, relay: { type: 'socket', loadBalancers: [{ name: 'lb1', endpoint: '/run/haproxy/admin.sock' }] } }, 'relay.type: the Lambda reaches load balancers through SSM Run Command: use "ssm" (got "socket")'],
    ['another document', { ...base, relay: { ...base.relay, documentName: 'AWS-RunShellScript' } }, 'relay.documentName: this stack deploys and may only run the document "hw-prod-relay" (got "AWS-RunShellScript")'],
    ['a hostile backend name', { ...base, backends: [{ ...base.backends[0], name: 'a;shutdown sessions' }] }, 'backends.0.name: must be 1-1024 characters'],
    [
      'a history token in another variable than the Graphite secret',
      { ...base, history: { http: { url: 'https://g.test/graphite/metrics', auth: { type: 'basic', username: '1', passwordEnv: 'HISTORY_TOKEN' } } } },
      'history.http.auth: the Lambda reads one secret, the Graphite one (GRAPHITE_KEY_PARAMETER): name the same variable as graphite.auth (GRAPHITE_API_KEY)',
    ],
  ])('rejects %s, naming the key', async (_label, doc, message) => {
    expect(await rejection(loadLambdaConfig(doc, ENV))).toContain(message);
  });

  it('takes a history token from the Graphite secret, and a carbon history without any', async () => {
    const history = { http: { url: 'https://g.test/graphite/metrics', auth: { type: 'header', header: 'Authorization', prefix: 'Bearer ', valueEnv: 'GRAPHITE_API_KEY' } } };
    expect((await loadLambdaConfig({ ...base, history }, ENV)).config.history?.http?.url).toBe('https://g.test/graphite/metrics');
    expect((await loadLambdaConfig({ ...base, history: { carbon: { host: '10.0.0.5' } } }, ENV)).config.history?.carbon?.port).toBe(2003);
  });

  it('names the parameter when it is empty', async () => {
    expect(await rejection(loadLambdaConfig(undefined, ENV))).toBe('SSM parameter /hw/prod/config is empty or missing');
  });
});

describe('graphiteEnvironment', () => {
  const config = parseConfig(base);

  it('hands the adapter only the variable its auth names', () => {
    expect(graphiteSecretName(config)).toBe('GRAPHITE_API_KEY');
    expect(graphiteEnvironment(config, 'k3y-value', ENV)).toEqual({ GRAPHITE_API_KEY: 'k3y-value' });
  });

  it('needs no secret when Graphite has no auth', () => {
    const open = parseConfig({ ...base, graphite: { url: 'https://graphite.example.com/' } });
    expect(graphiteEnvironment(open, undefined, readLambdaEnvironment({ CONFIG_PARAMETER: '/a' }))).toEqual({});
  });

  it.each([
    ['no key parameter configured', undefined, readLambdaEnvironment({ CONFIG_PARAMETER: '/a' }), 'set GRAPHITE_KEY_PARAMETER'],
    ['an empty secret', '', ENV, 'SSM parameter /hw/prod/graphite-key must hold the Graphite secret as a plain, non-empty string'],
    ['a secret that parsed as JSON', { key: 'x' }, ENV, 'must hold the Graphite secret as a plain, non-empty string'],
  ])('fails clearly with %s', (_label, secret, env, message) => {
    expect(issuesOf(() => graphiteEnvironment(config, secret, env))).toContain(message);
  });
});

describe('redact', () => {
  it('replaces the secret wherever it appears in a report-shaped value', () => {
    const value = { problems: ['GET https://g/abcd1234/render failed', 'ok'], nested: { url: 'abcd1234' }, n: 3, none: null };
    expect(redact(value, ['abcd1234'])).toEqual({ problems: ['GET https://g/***/render failed', 'ok'], nested: { url: '***' }, n: 3, none: null });
  });

  it('leaves values alone when there is no secret worth masking', () => {
    const value = { a: 'abc' };
    expect(redact(value, ['', 'a'])).toBe(value);
  });
});

describe('createHandler without its environment', () => {
  it('fails every invocation with the missing setting named, instead of failing the import', async () => {
    const { createHandler } = await import('../../functions/handler.js');
    const { Logger } = await import('@aws-lambda-powertools/logger');
    const handler = createHandler({ env: {}, logger: new Logger({ logLevel: 'SILENT' }), cache: { key: 'unit-no-env', expiryMs: 0 } });
    const context = {
      callbackWaitsForEmptyEventLoop: true,
      functionName: 'f',
      functionVersion: '$LATEST',
      invokedFunctionArn: 'arn:aws:lambda:us-east-1:123456789012:function:f',
      memoryLimitInMB: '128',
      awsRequestId: 'r',
      logGroupName: 'g',
      logStreamName: 's',
      getRemainingTimeInMillis: () => 1000,
      done: () => undefined,
      fail: () => undefined,
      succeed: () => undefined,
    };
    await expect(handler({}, context)).rejects.toThrow('CONFIG_PARAMETER must name the SSM parameter that holds the configuration');
  });
});
