import * as z from 'zod';
import { displaySafe, hasUnsafeCharacters } from './display.js';
import { ConfigError, snippet } from './errors.js';
import { SAFE_NAME, SAFE_NAME_RULE, SOCKET_PATH } from './runtime-grammar.js';

/**
 * The configuration of haproxy-weighter, validated once at the edge into a frozen, typed object.
 * Unknown keys are rejected everywhere so that a typo (`agressiveness`) is an error, not a default.
 */

// A configuration is validated once per process or invocation: zod's generated fast path (code
// built with new Function for each object schema) costs more to build than it then saves, about
// 5 ms of a CLI start-up (measured with tsx, first parse of a small configuration).
z.config({ jitless: true });

const safeName = z.string().regex(SAFE_NAME, SAFE_NAME_RULE);

/** Graphite `from`/`until` values: relative (`-5min`) or absolute epoch seconds. */
const timeSpec = z
  .string()
  .regex(/^(-\d{1,6}(s|sec|seconds?|min|minutes?|h|hours?|d|days?)|\d{9,11}|now)$/, 'must look like -5min, -60s, -1h, now or epoch seconds');

/** Environment variable names that hold secrets: the value itself never sits in the file. */
const envName = z.string().regex(/^[A-Z_][A-Z0-9_]{0,127}$/, 'must be an environment variable name like GRAPHITE_API_KEY');

const graphiteAuth = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('none') }),
  /** Hosted Graphite style: the key is the first path segment, `https://host/<key>/render`. */
  z.strictObject({ type: z.literal('url-key'), keyEnv: envName }),
  z.strictObject({ type: z.literal('basic'), username: z.string().min(1).max(256), passwordEnv: envName }),
  z.strictObject({
    type: z.literal('header'),
    header: z.string().regex(/^[A-Za-z0-9-]{1,64}$/, 'must be an HTTP header name'),
    valueEnv: envName,
    /** Prefix such as `Bearer ` put before the secret value. */
    prefix: z.string().max(32).default(''),
  }),
]);

const graphite = z.strictObject({
  url: z
    .url({ protocol: /^https?$/, error: 'must be an http(s) URL' })
    .refine((u) => {
      // z.url() has already reported a string that is no URL; refinements still run after it.
      if (!URL.canParse(u)) return true;
      const url = new URL(u);
      return !/@/.test(url.host) && url.username === '';
    }, 'must not embed credentials: use auth'),
  auth: graphiteAuth.default({ type: 'none' }),
  timeoutMs: z.number().int().min(100).max(120_000).default(10_000),
  retries: z.number().int().min(0).max(5).default(2),
  maxResponseBytes: z.number().int().min(1024).max(256 * 1024 * 1024).default(16 * 1024 * 1024),
});

const limitedProportions = z.strictObject({
  function: z.literal('limited-proportions'),
  /** Loads are floored at mean / limitingFactor before inversion. */
  limitingFactor: z.number().min(1).max(1000).default(4),
  /** Exponent on the inverse proportions: >1 spreads weights, <1 narrows them. */
  aggressiveness: z.number().gt(0).max(10).default(1),
});

const normalisedExponential = z.strictObject({
  function: z.literal('normalised-exponential'),
  /** Inverse temperature of the softmax over -load/mean. */
  aggressiveness: z.number().gt(0).max(50).default(1),
});

const feedback = z.strictObject({
  function: z.literal('feedback'),
  /** Share of each server's load deficit (in average connections) asked for per cycle (1 = all of it). */
  gain: z.number().gt(0).max(1).default(0.25),
  /** Servers within this fraction of the mean load keep their weight, against needless changes. */
  deadband: z.number().min(0).max(0.5).default(0.02),
  /**
   * Mean sessions per server below which the live counts are too few to trust (a new backend, the
   * new process after a reload): the difference is spread evenly, so the weights follow the loads
   * gently instead of integrating on noise.
   */
  minSessions: z.number().min(0).max(100_000).default(10),
});

export const weightingSchema = z.discriminatedUnion('function', [limitedProportions, normalisedExponential, feedback]);

const serverMap = z.strictObject({
  /** Regular expression applied to the series name (after Graphite's aliasing). */
  pattern: z.string().min(1).max(512).refine(isValidRegex, 'must be a valid regular expression'),
  /** Replacement using $1.. groups; the result must be a safe HAProxy server name. */
  template: z.string().min(1).max(128),
});

const backend = z.strictObject({
  name: safeName,
  /** Graphite target that returns one series per server, e.g. aliasByNode(ingest.*.points, 1). */
  target: z
    .string()
    .min(1)
    .max(2048)
    // eslint-disable-next-line no-control-regex
    .refine((t) => !/[\u0000-\u001f\u007f]/.test(t), 'must not contain control characters'),
  /**
   * Render window. With the leading edge a wide window costs nothing (the newest point is used)
   * and survives a Graphite several minutes late (a 5-minute resolution plus a minute of delay
   * needs 11 minutes); a server whose newest point is older is reported, see the report.
   */
  from: timeSpec.default('-15min'),
  until: timeSpec.optional(),
  serverMap: serverMap.optional(),
  aggregation: z.enum(['leading-edge', 'average']).default('leading-edge'),
  /** The default policy (feedback at its defaults) reads the backend's algorithm: leastconn or roundrobin. */
  weighting: weightingSchema.default({ function: 'feedback', gain: 0.25, deadband: 0.02, minSessions: 10 }),
  /** Share of the backend's eligible servers that must have data, else the backend is skipped. */
  quorum: z.number().gt(0).max(1).default(0.5),
  /** Largest change of one server's weight in one cycle (absolute weight units). */
  maxChangePerCycle: z.number().int().min(1).max(255).optional(),
  /**
   * Every weighed server's weight stays within these multiples of the mean weight of the weighed
   * servers (gRPC's weighted round robin clamps at 0.01..10x): no server starves or floods because
   * of one cycle's measurement.
   */
  bounds: z
    .strictObject({ min: z.number().gt(0).max(1).default(0.25), max: z.number().min(1).max(256).default(10) })
    .default({ min: 0.25, max: 10 }),
  /**
   * Share of new connections a server new to the backend gets until its metrics arrive, relative
   * to the mean weight of the weighed servers (1 = an average server's share).
   */
  newServerShare: z.number().gt(0).max(10).default(1),
});

const loadBalancer = z.strictObject({
  name: safeName,
  /** `/path/to/admin.sock` or `host:port` (IPv6 as `[::1]:9999`). */
  endpoint: z
    .string()
    .min(1)
    .max(512)
    .refine((e) => parseEndpoint(e) !== null, 'must be an absolute Unix socket path or host:port'),
});

const socketRelay = z.strictObject({
  type: z.literal('socket'),
  loadBalancers: z.array(loadBalancer).min(1).max(500).refine(uniqueNames, 'load balancer names must be unique'),
  connectTimeoutMs: z.number().int().min(50).max(60_000).default(2_000),
  readTimeoutMs: z.number().int().min(50).max(120_000).default(5_000),
});

const instanceId = z.string().regex(/^(i-[0-9a-f]{8,17}|mi-[0-9a-f]{17})$/, 'must be an EC2 or managed instance id');

const ssmRelay = z.strictObject({
  type: z.literal('ssm'),
  /** Name of the custom Command document deployed with the stack. */
  documentName: z.string().regex(/^[A-Za-z0-9_.-]{3,128}$/, 'must be an SSM document name'),
  /** Admin socket path on every load balancer. */
  socketPath: z.string().regex(SOCKET_PATH, 'must be an absolute path of safe characters'),
  targets: z.union([
    z.strictObject({ instanceIds: z.array(instanceId).min(1).max(500) }),
    z.strictObject({
      tag: z.strictObject({
        key: z.string().regex(/^[A-Za-z0-9_.:/=+@-]{1,128}$/),
        value: z.string().regex(/^[A-Za-z0-9_.:/=+@-]{1,256}$/),
      }),
    }),
  ]),
  commandTimeoutSeconds: z.number().int().min(30).max(2_592_000).default(60),
  pollIntervalMs: z.number().int().min(10).max(60_000).default(1_000),
  maxWaitMs: z.number().int().min(1_000).max(900_000).default(120_000),
  /** SendCommands in flight at once (each for up to 50 load balancers); more are queued. */
  maxConcurrentCommands: z.number().int().min(1).max(50).default(20),
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
const historyHttpAuth = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('none') }),
  z.strictObject({ type: z.literal('basic'), username: z.string().min(1).max(256), passwordEnv: envName }),
  z.strictObject({
    type: z.literal('header'),
    header: z.string().regex(/^[A-Za-z0-9-]{1,64}$/, 'must be an HTTP header name'),
    valueEnv: envName,
    prefix: z.string().max(32).default(''),
  }),
]);

const history = z
  .strictObject({
    /** Where the points go under: `<prefix>.backend.<backend>.weight.<lb>.<server>` ... */
    prefix: z.string().regex(HISTORY_PREFIX, 'must be dot-separated nodes of A-Z a-z 0-9 _ : - (at most 8 nodes of 64 characters)').default('haproxy-weighter'),
    /** carbon's plaintext protocol over TCP (a carbon-cache, carbon-relay or carbon-c-relay line receiver). */
    carbon: z
      .strictObject({
        host: z.string().regex(/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253})$/, 'must be a host name or an IP address'),
        port: z.number().int().min(1).max(65_535).default(2003),
        timeoutMs: z.number().int().min(100).max(60_000).default(5_000),
      })
      .optional(),
    /** Grafana Cloud's Graphite HTTP ingestion (POST JSON to https://<stack>.grafana.net/graphite/metrics). */
    http: z
      .strictObject({
        url: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }).refine((u) => !URL.canParse(u) || new URL(u).username === '', 'must not embed credentials: use auth'),
        auth: historyHttpAuth.default({ type: 'none' }),
        timeoutMs: z.number().int().min(100).max(60_000).default(5_000),
        /** The `interval` each point is sent with: seconds between cycles (intervalSeconds by default). */
        intervalSeconds: z.number().int().min(1).max(86_400).optional(),
      })
      .optional(),
  })
  .refine((h) => (h.carbon === undefined) !== (h.http === undefined), 'must name exactly one destination: carbon or http');

export const configSchema = z.strictObject({
  graphite,
  relay: z.discriminatedUnion('type', [socketRelay, ssmRelay]),
  backends: z.array(backend).min(1).max(100).refine(uniqueNames, 'backend names must be unique'),
  /** Seconds between cycles for `haproxy-weighter run`. */
  intervalSeconds: z.number().int().min(1).max(86_400).default(60),
  /** Opt-in: after each apply cycle, the weights, imbalances and outcome are sent to Graphite. */
  history: history.optional(),
});

export type Config = Readonly<z.infer<typeof configSchema>>;
export type BackendConfig = Config['backends'][number];
export type WeightingConfig = z.infer<typeof weightingSchema>;
export type GraphiteConfig = Config['graphite'];
export type SocketRelayConfig = Extract<Config['relay'], { type: 'socket' }>;
export type SsmRelayConfig = Extract<Config['relay'], { type: 'ssm' }>;
export type HistoryConfig = NonNullable<Config['history']>;

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
export function formatIssues(error: z.ZodError, input: unknown): string[] {
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
