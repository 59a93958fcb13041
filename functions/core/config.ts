import * as z from 'zod/mini';
import en from 'zod/v4/locales/en.js';
import { displaySafe, hasUnsafeCharacters } from './display.js';
import { ConfigError, snippet } from './errors.js';
import { SAFE_NAME, SAFE_NAME_RULE, SOCKET_PATH } from './runtime-grammar.js';

/**
 * The configuration of haproxy-weighter, validated once at the edge into a frozen, typed object.
 * Unknown keys are rejected everywhere so that a typo (`agressiveness`) is an error, not a default.
 */

// zod's mini API over the same core as its classic one (the same checks, the same issues): a
// classic schema gets some fifty methods as it is built, which a configuration validated once per
// process never calls, and building them was most of the schema's share of a CLI start-up
// (docs/performance.md). English messages, as classic zod has by default.
z.config(en());
// A configuration is validated once per process or invocation: zod's generated fast path (code
// built with new Function for each object schema) costs more to build than it then saves, about
// 5 ms of a CLI start-up (measured with tsx, first parse of a small configuration).
z.config({ jitless: true });

/** Integers in [min, max]. */
const integer = (min: number, max: number) => z.int().check(z.gte(min), z.lte(max));
/** Numbers in [min, max]. */
const between = (min: number, max: number) => z.number().check(z.gte(min), z.lte(max));
/** Numbers in (min, max]. */
const above = (min: number, max: number) => z.number().check(z.gt(min), z.lte(max));
/** Strings matching `pattern`, `message` otherwise. */
const matching = (pattern: RegExp, message?: string) => z.string().check(z.regex(pattern, message));

const safeName = matching(SAFE_NAME, SAFE_NAME_RULE);

/** Graphite `from`/`until` values: relative (`-5min`) or absolute epoch seconds. */
const timeSpec = matching(/^(-\d{1,6}(s|sec|seconds?|min|minutes?|h|hours?|d|days?)|\d{9,11}|now)$/, 'must look like -5min, -60s, -1h, now or epoch seconds');

/** Environment variable names that hold secrets: the value itself never sits in the file. */
const envName = matching(/^[A-Z_][A-Z0-9_]{0,127}$/, 'must be an environment variable name like GRAPHITE_API_KEY');

/** An http(s) URL without a user name in it: secrets go through `auth`. */
const httpUrl = z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }).check(
  // z.url() has already reported a string that is no URL; refinements still run after it.
  z.refine((u) => !URL.canParse(u) || new URL(u).username === '', 'must not embed credentials: use auth'),
);

/** The ways of authenticating over HTTP that Graphite's render API and its HTTP ingestion share. */
const noAuth = z.strictObject({ type: z.literal('none') });
const basicAuth = z.strictObject({ type: z.literal('basic'), username: z.string().check(z.minLength(1), z.maxLength(256)), passwordEnv: envName });
const headerAuth = z.strictObject({
  type: z.literal('header'),
  header: matching(/^[A-Za-z0-9-]{1,64}$/, 'must be an HTTP header name'),
  valueEnv: envName,
  /** Prefix such as `Bearer ` put before the secret value. */
  prefix: z._default(z.string().check(z.maxLength(32)), ''),
});

const graphiteAuth = z.discriminatedUnion('type', [
  noAuth,
  /** Hosted Graphite style: the key is the first path segment, `https://host/<key>/render`. */
  z.strictObject({ type: z.literal('url-key'), keyEnv: envName }),
  basicAuth,
  headerAuth,
]);

const graphite = z.strictObject({
  url: httpUrl,
  auth: z._default(graphiteAuth, { type: 'none' }),
  timeoutMs: z._default(integer(100, 120_000), 10_000),
  retries: z._default(integer(0, 5), 2),
  maxResponseBytes: z._default(integer(1024, 256 * 1024 * 1024), 16 * 1024 * 1024),
});

const limitedProportions = z.strictObject({
  function: z.literal('limited-proportions'),
  /** Loads are floored at mean / limitingFactor before inversion. */
  limitingFactor: z._default(between(1, 1000), 4),
  /** Exponent on the inverse proportions: >1 spreads weights, <1 narrows them. */
  aggressiveness: z._default(above(0, 10), 1),
});

const normalisedExponential = z.strictObject({
  function: z.literal('normalised-exponential'),
  /** Inverse temperature of the softmax over -load/mean. */
  aggressiveness: z._default(above(0, 50), 1),
});

const feedback = z.strictObject({
  function: z.literal('feedback'),
  /** Share of each server's load deficit (in average connections) asked for per cycle (1 = all of it). */
  gain: z._default(above(0, 1), 0.25),
  /** Servers within this fraction of the mean load keep their weight, against needless changes. */
  deadband: z._default(between(0, 0.5), 0.02),
  /**
   * Mean sessions per server below which the live counts are too few to trust (a new backend, the
   * new process after a reload): the difference is spread evenly, so the weights follow the loads
   * gently instead of integrating on noise.
   */
  minSessions: z._default(between(0, 100_000), 10),
});

export const weightingSchema = z.discriminatedUnion('function', [limitedProportions, normalisedExponential, feedback]);

const serverMap = z.strictObject({
  /** Regular expression applied to the series name (after Graphite's aliasing). */
  pattern: z.string().check(z.minLength(1), z.maxLength(512), z.refine(isValidRegex, 'must be a valid regular expression')),
  /** Replacement using $1.. groups; the result must be a safe HAProxy server name. */
  template: z.string().check(z.minLength(1), z.maxLength(128)),
});

const backend = z.strictObject({
  name: safeName,
  /** Graphite target that returns one series per server, e.g. aliasByNode(ingest.*.points, 1). */
  target: z.string().check(
    z.minLength(1),
    z.maxLength(2048),
    // eslint-disable-next-line no-control-regex
    z.refine((t) => !/[\u0000-\u001f\u007f]/.test(t), 'must not contain control characters'),
  ),
  /**
   * Render window. With the leading edge a wide window costs nothing (the newest point is used)
   * and survives a Graphite several minutes late (a 5-minute resolution plus a minute of delay
   * needs 11 minutes); a server whose newest point is older is reported, see the report.
   */
  from: z._default(timeSpec, '-15min'),
  until: z.optional(timeSpec),
  serverMap: z.optional(serverMap),
  aggregation: z._default(z.enum(['leading-edge', 'average']), 'leading-edge'),
  /** The default policy (feedback at its defaults) reads the backend's algorithm: leastconn or roundrobin. */
  weighting: z._default(weightingSchema, { function: 'feedback', gain: 0.25, deadband: 0.02, minSessions: 10 }),
  /** Share of the backend's eligible servers that must have data, else the backend is skipped. */
  quorum: z._default(above(0, 1), 0.5),
  /** Largest change of one server's weight in one cycle (absolute weight units). */
  maxChangePerCycle: z.optional(integer(1, 255)),
  /**
   * Every weighed server's weight stays within these multiples of the mean weight of the weighed
   * servers (gRPC's weighted round robin clamps at 0.01..10x): no server starves or floods because
   * of one cycle's measurement.
   */
  bounds: z._default(z.strictObject({ min: z._default(above(0, 1), 0.25), max: z._default(between(1, 256), 10) }), { min: 0.25, max: 10 }),
  /**
   * Share of new connections a server new to the backend gets until its metrics arrive, relative
   * to the mean weight of the weighed servers (1 = an average server's share).
   */
  newServerShare: z._default(above(0, 10), 1),
});

const loadBalancer = z.strictObject({
  name: safeName,
  /** `/path/to/admin.sock` or `host:port` (IPv6 as `[::1]:9999`). */
  endpoint: z.string().check(
    z.minLength(1),
    z.maxLength(512),
    z.refine((e) => parseEndpoint(e) !== null, 'must be an absolute Unix socket path or host:port'),
  ),
});

const socketRelay = z.strictObject({
  type: z.literal('socket'),
  loadBalancers: z.array(loadBalancer).check(z.minLength(1), z.maxLength(500), z.refine(uniqueNames, 'load balancer names must be unique')),
  connectTimeoutMs: z._default(integer(50, 60_000), 2_000),
  readTimeoutMs: z._default(integer(50, 120_000), 5_000),
});

const instanceId = matching(/^(i-[0-9a-f]{8,17}|mi-[0-9a-f]{17})$/, 'must be an EC2 or managed instance id');

const ssmRelay = z.strictObject({
  type: z.literal('ssm'),
  /** Name of the custom Command document deployed with the stack. */
  documentName: matching(/^[A-Za-z0-9_.-]{3,128}$/, 'must be an SSM document name'),
  /** Admin socket path on every load balancer. */
  socketPath: matching(SOCKET_PATH, 'must be an absolute path of safe characters'),
  targets: z.union([
    z.strictObject({ instanceIds: z.array(instanceId).check(z.minLength(1), z.maxLength(500)) }),
    z.strictObject({
      tag: z.strictObject({
        key: matching(/^[A-Za-z0-9_.:/=+@-]{1,128}$/),
        value: matching(/^[A-Za-z0-9_.:/=+@-]{1,256}$/),
      }),
    }),
  ]),
  commandTimeoutSeconds: z._default(integer(30, 2_592_000), 60),
  pollIntervalMs: z._default(integer(10, 60_000), 1_000),
  maxWaitMs: z._default(integer(1_000, 900_000), 120_000),
  /** SendCommands in flight at once (each for up to 50 load balancers); more are queued. */
  maxConcurrentCommands: z._default(integer(1, 50), 20),
});

/**
 * A Graphite metric path prefix: dot-separated nodes of safe characters. The weighter's own names
 * (backends, load balancers, servers) are escaped into single nodes under it (core/history.ts).
 */
export const HISTORY_PREFIX = /^[A-Za-z0-9_:-]{1,64}(\.[A-Za-z0-9_:-]{1,64}){0,7}$/;

/**
 * Grafana Cloud's Graphite ingestion authenticates with `Basic base64(<instance id>:<token>)` or
 * `Bearer <instance id>:<token>`: the header form takes the whole `<instance id>:<token>` from the
 * environment. No url-key: the key would sit in the URL of every POST.
 */
const historyHttpAuth = z.discriminatedUnion('type', [noAuth, basicAuth, headerAuth]);

const history = z
  .strictObject({
    /** Where the points go under: `<prefix>.backend.<backend>.weight.<lb>.<server>` ... */
    prefix: z._default(matching(HISTORY_PREFIX, 'must be dot-separated nodes of A-Z a-z 0-9 _ : - (at most 8 nodes of 64 characters)'), 'haproxy-weighter'),
    /** carbon's plaintext protocol over TCP (a carbon-cache, carbon-relay or carbon-c-relay line receiver). */
    carbon: z.optional(
      z.strictObject({
        host: matching(/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253})$/, 'must be a host name or an IP address'),
        port: z._default(integer(1, 65_535), 2003),
        timeoutMs: z._default(integer(100, 60_000), 5_000),
      }),
    ),
    /** Grafana Cloud's Graphite HTTP ingestion (POST JSON to https://<stack>.grafana.net/graphite/metrics). */
    http: z.optional(
      z.strictObject({
        url: httpUrl,
        auth: z._default(historyHttpAuth, { type: 'none' }),
        timeoutMs: z._default(integer(100, 60_000), 5_000),
        /** The `interval` each point is sent with: seconds between cycles (intervalSeconds by default). */
        intervalSeconds: z.optional(integer(1, 86_400)),
      }),
    ),
  })
  .check(z.refine((h) => (h.carbon === undefined) !== (h.http === undefined), 'must name exactly one destination: carbon or http'));

export const configSchema = z.strictObject({
  graphite,
  relay: z.discriminatedUnion('type', [socketRelay, ssmRelay]),
  backends: z.array(backend).check(z.minLength(1), z.maxLength(100), z.refine(uniqueNames, 'backend names must be unique')),
  /** Seconds between cycles for `haproxy-weighter run`. */
  intervalSeconds: z._default(integer(1, 86_400), 60),
  /** Opt-in: after each apply cycle, the weights, imbalances and outcome are sent to Graphite. */
  history: z.optional(history),
});

export type Config = Readonly<z.infer<typeof configSchema>>;
export type BackendConfig = Config['backends'][number];
export type WeightingConfig = z.infer<typeof weightingSchema>;
export type GraphiteConfig = Config['graphite'];
export type SocketRelayConfig = Extract<Config['relay'], { type: 'socket' }>;
export type SsmRelayConfig = Extract<Config['relay'], { type: 'ssm' }>;
export type HistoryConfig = NonNullable<Config['history']>;
/** The HTTP auths Graphite's render API and the history's HTTP ingestion both take. */
export type HttpAuthConfig = z.infer<typeof historyHttpAuth>;

/** The environment variable an auth reads its secret from; undefined for `none`. */
export function authSecretName(auth: GraphiteConfig['auth']): string | undefined {
  switch (auth.type) {
    case 'none':
      return undefined;
    case 'url-key':
      return auth.keyEnv;
    case 'basic':
      return auth.passwordEnv;
    case 'header':
      return auth.valueEnv;
  }
}

function uniqueNames(items: readonly { name: string }[]): boolean {
  return new Set(items.map((i) => i.name)).size === items.length;
}

function isValidRegex(source: string): boolean {
  try {
    new RegExp(source);
    return true;
  } catch {
    return false;
  }
}

export type Endpoint = { readonly kind: 'unix'; readonly path: string } | { readonly kind: 'tcp'; readonly host: string; readonly port: number };

/** Parses a runtime API endpoint: an absolute Unix socket path, `host:port` or `[v6]:port`. */
export function parseEndpoint(endpoint: string): Endpoint | null {
  if (endpoint.startsWith('/')) {
    // A path is shown in messages and reports: no control, bidi or invisible character in it.
    return hasUnsafeCharacters(endpoint) ? null : { kind: 'unix', path: endpoint };
  }
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(endpoint);
  if (m === null) return null;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return null;
  const host = m[1] ?? m[2];
  return host === undefined ? null : { kind: 'tcp', host, port };
}

/** Turns zod issues into lines that name the key path and the offending value. */
export function formatIssues(error: z.core.$ZodError, input: unknown): string[] {
  return error.issues.map((issue) => {
    // Keys come from the file too: shown escaped, like the values.
    const path = issue.path.length > 0 ? displaySafe(issue.path.map(String).join('.')) : '(root)';
    const value = valueAt(input, issue.path);
    const shown = value === undefined ? 'missing' : snippet(showValue(value), 80);
    if (issue.code === 'unrecognized_keys') {
      return `${path}: unknown key(s) ${issue.keys.map((k) => displaySafe(JSON.stringify(k))).join(', ')}`;
    }
    return `${path}: ${issue.message} (got ${shown})`;
  });
}

/** JSON for the message; a YAML alias inside its own anchor makes a cycle JSON cannot print. */
function showValue(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return Array.isArray(value) ? '[a list that contains itself]' : typeof value === 'bigint' ? `${value}n` : '{a mapping that contains itself}';
  }
}

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let cur: unknown = input;
  for (const key of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[key];
  }
  return cur;
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** Validates an already-parsed configuration document. */
export function parseConfig(input: unknown, source = 'config'): Config {
  const result = configSchema.safeParse(input);
  if (!result.success) throw new ConfigError(`Invalid configuration in ${source}`, formatIssues(result.error, input));
  for (const b of result.data.backends) {
    if (b.serverMap !== undefined) {
      // A template can only be checked against a name once a series arrives; reject the obvious
      // mistakes (shell or protocol characters) here.
      if (!/^[A-Za-z0-9_.:$-]+$/.test(b.serverMap.template)) {
        throw new ConfigError(`Invalid configuration in ${source}`, [
          `backends.${b.name}.serverMap.template: may only hold A-Z a-z 0-9 _ . : - and $N group references (got ${JSON.stringify(b.serverMap.template)})`,
        ]);
      }
    }
  }
  return deepFreeze(result.data);
}

/**
 * Parses a configuration text, JSON or YAML, and validates it. A JSON document (its first
 * character `{`) is read by JSON.parse, refusing a key given twice in one object as the YAML
 * parser does; anything else is YAML, whose parser is loaded only then: it is the largest part of
 * a start-up that reads JSON.
 */
export async function parseConfigText(text: string, source = 'config'): Promise<Config> {
  return parseConfig(await parseDocument(text, source), source);
}

async function parseDocument(text: string, source: string): Promise<unknown> {
  if (text.trimStart().startsWith('{')) {
    let doc: unknown = NOT_JSON;
    try {
      doc = JSON.parse(text);
    } catch {
      // A YAML flow mapping starts with `{` too; the YAML parser reads it, or says what is wrong.
    }
    if (doc !== NOT_JSON) {
      const twice = repeatedJsonKey(text);
      if (twice !== null) throw new ConfigError(`Cannot parse ${source} as JSON: ${twice}`);
      return doc;
    }
  }
  // yaml is a CommonJS package: its exports are the default export of the dynamic import, in
  // Node.js and in the bundle's chunk alike.
  const { default: yaml } = await import('yaml');
  try {
    return yaml.parse(text, { prettyErrors: true, maxAliasCount: 100 });
  } catch (cause) {
    throw new ConfigError(`Cannot parse ${source} as YAML or JSON: ${cause instanceof Error ? cause.message : String(cause)}`, [], { cause });
  }
}

const NOT_JSON = Symbol('not JSON');

/**
 * The first key given twice in one object of a valid JSON text (JSON.parse keeps the last one
 * silently), named with its path, or null.
 */
export function repeatedJsonKey(text: string): string | null {
  const open: { readonly keys: Set<string> | null; at: string | number; expectKey: boolean }[] = [];
  const path = (): string => open.map((level) => String(level.at)).join('.');
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    const top = open[open.length - 1];
    if (c === '{' || c === '[') {
      open.push({ keys: c === '{' ? new Set() : null, at: c === '{' ? '' : 0, expectKey: c === '{' });
    } else if (c === '}' || c === ']') {
      open.pop();
    } else if (c === ',' && top !== undefined) {
      if (top.keys === null) top.at = Number(top.at) + 1;
      else top.expectKey = true;
    } else if (c === '"') {
      let end = i + 1;
      while (text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      if (top !== undefined && top.keys !== null && top.expectKey) {
        const key = JSON.parse(text.slice(i, end + 1)) as string;
        top.at = key;
        top.expectKey = false;
        if (top.keys.has(key)) return `${path()}: the key ${JSON.stringify(snippet(key, 80))} appears twice in one object`;
        top.keys.add(key);
      }
      i = end;
    }
  }
  return null;
}
