import { setTimeout as delay } from 'node:timers/promises';
import { createHash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import type { S3Client } from '@aws-sdk/client-s3';
import {
  DescribeInstanceInformationCommand,
  GetCommandInvocationCommand,
  ListCommandInvocationsCommand,
  SendCommandCommand,
  SSMClient,
  type CommandInvocation,
  type CommandPlugin,
  type SSMClientConfig,
  type DescribeInstanceInformationCommandInput,
  type DescribeInstanceInformationCommandOutput,
  type GetCommandInvocationCommandInput,
  type GetCommandInvocationCommandOutput,
  type InstanceInformation,
  type InstanceInformationStringFilter,
  type ListCommandInvocationsCommandInput,
  type ListCommandInvocationsCommandOutput,
  type SendCommandCommandInput,
  type SendCommandCommandOutput,
} from '@aws-sdk/client-ssm';
import type { SsmRelayConfig } from '../core/config.js';
import { RelayError, UnsafeInputError, describeError, snippet } from '../core/errors.js';
import { isAllowedCommand } from '../core/runtime-grammar.js';
import type { RelayRequest, RelayResult, RelayRunOptions, RuntimeRelay } from '../core/types.js';

/**
 * Reaches every load balancer's HAProxy runtime API through AWS Systems Manager Run Command and the
 * custom document in `infra/ssm-document.yaml`. A load balancer is an instance id. Load balancers
 * whose batches are identical share one SendCommand (up to 50 instance ids per call), and every
 * SendCommand of a call runs at once (up to `maxConcurrentCommands` in flight).
 *
 * Each command is polled as a whole with ListCommandInvocations (Details: the status and the first
 * 2,500 characters of each instance's output, 50 instances a page), with backoff, until every
 * instance's invocation is final. A reply that fits those 2,500 characters needs no other call;
 * a longer one is read once its invocation is final: from the output bucket when there is one,
 * else with GetCommandInvocation (24,000 characters). A failed invocation is looked up with
 * GetCommandInvocation for its exit code and stderr. Every reply is decoded and verified: a reply
 * cut off by an output limit is an error, never a short reply.
 *
 * With an output bucket, the agent writes each instance's output to S3 (no size limit): then the
 * observation of every backend is one command for up to 50 load balancers (for more found by tag,
 * one command to the tag), whatever the number of servers. Without one, observation is cut into
 * one command per backend, each within the output limit (the document sends only the columns the
 * weighter reads, so a 1,000-server backend fits).
 *
 * Writes are never split here: the cycle cuts them to `maxBatchChars`, each part with its own
 * operator-state read, so that every write is guarded by the state read in the same exchange.
 */

/** SendCommand accepts at most this many `InstanceIds`. */
export const MAX_INSTANCE_IDS_PER_COMMAND = 50;

/** GetCommandInvocation returns at most this many characters of stdout. */
export const STDOUT_LIMIT_CHARS = 24_000;

/** ListCommandInvocations (Details) returns at most this many characters of a step's output (CommandPlugin.Output). */
export const PLUGIN_OUTPUT_LIMIT_CHARS = 2_500;

/** ListCommandInvocations and DescribeInstanceInformation return at most this many items a page. */
export const MAX_RESULTS_PER_PAGE = 50;

/** SSM's MaxDocumentSizeExceeded: "The size limit of a document is 64 KB", the document and its parameter values together. */
export const MAX_DOCUMENT_BYTES = 64 * 1024;

/**
 * Room kept for the deployed document itself (its JSON, as CloudFormation sends it); a unit test
 * checks that `infra/ssm-document.yaml` stays within it.
 */
export const DOCUMENT_ALLOWANCE_BYTES = 16 * 1024;

/** The longest SocketPath its allowedPattern admits (`/` and 200 characters). */
export const MAX_SOCKET_PATH_BYTES = 201;

/**
 * Longest `Commands` value one SendCommand carries: what the 64 KB quota leaves once the document
 * and the longest socket path are counted. Commands are ASCII, so characters are bytes.
 */
export const MAX_COMMANDS_CHARS = MAX_DOCUMENT_BYTES - DOCUMENT_ALLOWANCE_BYTES - MAX_SOCKET_PATH_BYTES;

/**
 * `show` commands per SendCommand without an output bucket: one backend's `show stat` and `show
 * servers state`, as the document cuts them, print about 12,000 characters for 1,000 servers that
 * carry traffic, within the 24,000 of GetCommandInvocation; two such backends would not fit.
 */
export const INLINE_MAX_SHOW_COMMANDS = 2;

/**
 * SendCommands in flight at once, so that many distinct batches do not trip the API rate. A
 * command in flight costs one ListCommandInvocations a poll (a page per 50 instances), so 20 cost
 * fewer calls than 10 did when each instance was polled apart; 20 lets the 12 write commands of
 * 20 backends of 500 servers run together with room to spare (`npm run bench:ssm`).
 */
export const DEFAULT_MAX_CONCURRENT_COMMANDS = 20;

/** Polls at `pollIntervalMs` before the interval starts to grow (Run Command takes 1-3 s). */
export const STEADY_POLLS = 5;

/** How long a command is expected to take before this relay has timed one (Run Command takes 1-3 s). */
export const DEFAULT_EXPECTED_COMMAND_MS = 5_000;

/** Connections the SSM client keeps open at once (polls of many instances run together). */
const MAX_SOCKETS = 128;

/** The one step of the document: the agent names its S3 output after it. */
export const DOCUMENT_STEP_NAME = 'relayRuntimeCommands';

const REPLY_HEADER = /^HAPROXY-WEIGHTER-REPLY 1 bytes=(\d{1,12}) sha256=([0-9a-f]{64})$/;
const REPLY_END = 'HAPROXY-WEIGHTER-END';
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Statuses (or status details) after which an invocation never changes again. */
const FINAL_STATUSES = new Set(['Success', 'Failed', 'TimedOut', 'Cancelled', 'Undeliverable', 'Terminated', 'DeliveryTimedOut', 'ExecutionTimedOut']);

/** The SSM operations the relay uses; `ssmApiFromClient` adapts the SDK client. */
export interface SsmApi {
  sendCommand(input: SendCommandCommandInput): Promise<SendCommandCommandOutput>;
  listCommandInvocations(input: ListCommandInvocationsCommandInput): Promise<ListCommandInvocationsCommandOutput>;
  getCommandInvocation(input: GetCommandInvocationCommandInput): Promise<GetCommandInvocationCommandOutput>;
  describeInstanceInformation(input: DescribeInstanceInformationCommandInput): Promise<DescribeInstanceInformationCommandOutput>;
}

export interface SsmClientOptions {
  /** A custom endpoint (the local SSM emulator in tests); the regional AWS endpoint otherwise. */
  readonly endpoint?: string;
  readonly region?: string;
  /** Attempts per API call including the first; throttled calls are retried by the SDK. */
  readonly maxAttempts?: number;
  readonly credentials?: { readonly accessKeyId: string; readonly secretAccessKey: string; readonly sessionToken?: string };
}

/**
 * The SSM client settings, for Run Command here and for Parameter Store (@middy/ssm) alike: adaptive
 * retry mode, so client-side rate limiting backs off when SSM throttles.
 */
export function ssmClientConfig(options: SsmClientOptions = {}): SSMClientConfig {
  return {
    retryMode: 'adaptive',
    maxAttempts: options.maxAttempts ?? 6,
    // Every instance of every command in flight is polled: more than the SDK's default 50 sockets.
    requestHandler: { httpAgent: { maxSockets: MAX_SOCKETS }, httpsAgent: { maxSockets: MAX_SOCKETS } },
    ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
    ...(options.region === undefined ? {} : { region: options.region }),
    ...(options.credentials === undefined ? {} : { credentials: { ...options.credentials } }),
  };
}

export function createSsmClient(options: SsmClientOptions = {}): SSMClient {
  return new SSMClient(ssmClientConfig(options));
}

export function ssmApiFromClient(client: SSMClient): SsmApi {
  return {
    sendCommand: (input) => client.send(new SendCommandCommand(input)),
    listCommandInvocations: (input) => client.send(new ListCommandInvocationsCommand(input)),
    getCommandInvocation: (input) => client.send(new GetCommandInvocationCommand(input)),
    describeInstanceInformation: (input) => client.send(new DescribeInstanceInformationCommand(input)),
  };
}

export type SsmRelaySettings = Pick<SsmRelayConfig, 'documentName' | 'socketPath' | 'targets' | 'commandTimeoutSeconds' | 'pollIntervalMs' | 'maxWaitMs'>;

export interface SentCommand {
  readonly commandId: string;
  readonly instanceIds: readonly string[];
  /** 1-based position of this part when a read batch is split; `parts` is 1 when it is not. */
  readonly part: number;
  readonly parts: number;
  readonly commands: number;
}

/** The one S3 operation the relay needs; `s3ApiFromClient` adapts the SDK client. */
export interface S3Api {
  getObject(bucket: string, key: string, signal?: AbortSignal): Promise<string>;
}

export function s3ApiFromClient(client: S3Client): S3Api {
  return {
    async getObject(bucket, key, signal) {
      // Loaded with the first output read (the handler loads the client then too), not at start-up.
      const { GetObjectCommand } = await import('./s3-client.js');
      const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }), signal === undefined ? {} : { abortSignal: signal });
      if (out.Body === undefined) throw new Error(`s3://${bucket}/${key} has no body`);
      return out.Body.transformToString('utf8');
    },
  };
}

/** Where the agent writes command output (SendCommand's OutputS3BucketName and OutputS3KeyPrefix). */
export interface SsmOutputBucket {
  readonly bucket: string;
  /** Without a trailing `/`. */
  readonly keyPrefix: string;
  readonly s3: S3Api;
}

export interface SsmRelayOptions {
  readonly api: SsmApi;
  /** Command output to S3: no output limit, so observation is one command per 50 load balancers. */
  readonly output?: SsmOutputBucket;
  /** Injected so that unit tests do not wait for real polling. */
  readonly sleep?: (ms: number) => Promise<void>;
  /** Milliseconds since the epoch, for the `maxWaitMs` deadline and the time budget. */
  readonly now?: () => number;
  readonly maxCommandChars?: number;
  readonly maxShowCommands?: number;
  readonly maxConcurrentCommands?: number;
  /** A command's expected duration until one has been timed (the longest timed one after that). */
  readonly expectedCommandMs?: number;
  /** Told about every SendCommand, e.g. to log its command id. */
  readonly onCommand?: (sent: SentCommand) => void;
  /**
   * Load balancers that cannot run the document now (offline, not Linux), with why: each request
   * to one fails with that reason and nothing is sent to it (see `resolveLoadBalancers`).
   */
  readonly unreachable?: ReadonlyMap<string, string>;
}

/** The load balancers, and those among them that cannot run the document now, with why. */
export interface ResolvedLoadBalancers {
  readonly loadBalancers: readonly string[];
  readonly unreachable: ReadonlyMap<string, string>;
}

/**
 * Why an instance Systems Manager lists cannot run the document now, or undefined when it can: its
 * agent must be online and the node Linux (the document's only step has a Linux precondition).
 */
export function whyUnreachable(info: InstanceInformation): string | undefined {
  if (info.PingStatus !== 'Online') {
    const at = info.LastPingDateTime instanceof Date && !Number.isNaN(info.LastPingDateTime.getTime()) ? `, last ping ${info.LastPingDateTime.toISOString()}` : '';
    return `Systems Manager reports its SSM Agent as ${snippet(info.PingStatus ?? 'not reporting', 40)}${at}: it cannot run a command now`;
  }
  if (info.PlatformType !== 'Linux') return `it is a ${snippet(info.PlatformType ?? 'unknown platform', 40)} node; the document runs only on Linux`;
  return undefined;
}

/** Every instance Systems Manager lists for one filter, page after page. The SDK's errors pass through. */
export async function listInstanceInformation(api: Pick<SsmApi, 'describeInstanceInformation'>, filter: InstanceInformationStringFilter): Promise<InstanceInformation[]> {
  const out: InstanceInformation[] = [];
  let nextToken: string | undefined;
  do {
    const page = await api.describeInstanceInformation({ Filters: [filter], MaxResults: MAX_RESULTS_PER_PAGE, ...(nextToken === undefined ? {} : { NextToken: nextToken }) });
    out.push(...(page.InstanceInformationList ?? []));
    nextToken = page.NextToken === '' ? undefined : page.NextToken;
  } while (nextToken !== undefined);
  return out;
}

/**
 * Which instances are load balancers: the configured ids, or every instance Systems Manager lists
 * with the tag. The tag filter is sent alone (the API reference: "Tag filters can't be combined
 * with other filter types"); whether each instance is online and Linux is checked here, and one
 * that is not stays a load balancer, reported as unreachable rather than silently left out.
 */
export async function resolveLoadBalancers(targets: SsmRelaySettings['targets'], api: Pick<SsmApi, 'describeInstanceInformation'>): Promise<ResolvedLoadBalancers> {
  if ('instanceIds' in targets) return { loadBalancers: [...new Set(targets.instanceIds)], unreachable: new Map() };
  const { key, value } = targets.tag;
  let listed: InstanceInformation[];
  try {
    listed = await listInstanceInformation(api, { Key: `tag:${key}`, Values: [value] });
  } catch (error) {
    throw new RelayError(`Cannot list the managed instances tagged ${key}=${value}: ${describeError(error)}`, {}, { cause: error });
  }
  const found = new Map<string, InstanceInformation>();
  for (const info of listed) if (typeof info.InstanceId === 'string' && info.InstanceId !== '') found.set(info.InstanceId, info);
  if (found.size === 0) throw new RelayError(`No managed instance carries the tag ${key}=${value} (Systems Manager lists none in this region): no load balancer to reach`);
  const unreachable = new Map<string, string>();
  for (const [id, info] of found) {
    const why = whyUnreachable(info);
    if (why !== undefined) unreachable.set(id, why);
  }
  return { loadBalancers: [...found.keys()].sort(), unreachable };
}

/** Resolves the targets, then builds the relay. */
export async function createSsmRelay(settings: SsmRelaySettings, options: SsmRelayOptions): Promise<RuntimeRelay> {
  const { loadBalancers, unreachable } = await resolveLoadBalancers(settings.targets, options.api);
  return createSsmRelayFor(settings, loadBalancers, { ...options, unreachable });
}

const isRead = (command: string): boolean => command.startsWith('show ') || command.startsWith('get ');

/** The commands whose replies are large: a backend's rows. `show cli level` answers one word. */
const isLargeShow = (command: string): boolean => command.startsWith('show stat ') || command.startsWith('show servers state ');

/**
 * Splits a read batch into the parts sent as separate commands: each part stays under `maxChars`
 * once joined and holds at most `maxShow` `show stat` or `show servers state` commands, whose
 * replies are the large ones.
 */
export function splitBatch(commands: readonly string[], maxChars: number, maxShow: number): string[][] {
  const parts: string[][] = [];
  let current: string[] = [];
  let chars = 0;
  let shows = 0;
  for (const command of commands) {
    const isShow = isLargeShow(command);
    const added = current.length === 0 ? command.length : command.length + 2;
    if (current.length > 0 && (chars + added > maxChars || (isShow && shows >= maxShow))) {
      parts.push(current);
      current = [];
      chars = 0;
      shows = 0;
    }
    chars += current.length === 0 ? command.length : command.length + 2;
    if (isShow) shows++;
    current.push(command);
  }
  if (current.length > 0) parts.push(current);
  return parts;
}

/**
 * Decodes what the document printed and checks it: the header's byte count and SHA-256 must match
 * the decompressed reply, and the end marker must be there. Throws a RelayError otherwise.
 */
export function decodeDocumentOutput(stdout: string, loadBalancer: string, limit: number | null = STDOUT_LIMIT_CHARS): string {
  const lines = stdout.split('\n');
  const header = REPLY_HEADER.exec(lines[0] ?? '');
  const body = lines[1] ?? '';
  const endSeen = lines[2] === REPLY_END && lines.slice(3).every((l) => l === '');
  if (header === null || !endSeen) {
    if (limit !== null && stdout.length >= limit) {
      throw new RelayError(
        `${loadBalancer}: the reply was cut off at the ${limit.toLocaleString('en-US')}-character output limit of GetCommandInvocation; send fewer commands per call or give the relay an output bucket`,
        { loadBalancer, reply: stdout.slice(0, 120) },
        { mayHaveRun: true },
      );
    }
    throw new RelayError(`${loadBalancer}: the SSM document printed something other than an encoded reply`, { loadBalancer, reply: stdout }, { mayHaveRun: true });
  }
  if (!BASE64.test(body)) throw new RelayError(`${loadBalancer}: the encoded reply is not base64`, { loadBalancer, reply: body }, { mayHaveRun: true });
  let raw: Buffer;
  try {
    raw = gunzipSync(Buffer.from(body, 'base64'));
  } catch (cause) {
    throw new RelayError(`${loadBalancer}: the encoded reply does not decompress: ${describeError(cause)}`, { loadBalancer, reply: body }, { cause, mayHaveRun: true });
  }
  const bytes = Number(header[1]);
  const sha = createHash('sha256').update(raw).digest('hex');
  if (raw.length !== bytes || sha !== header[2]) {
    throw new RelayError(`${loadBalancer}: the decoded reply is ${raw.length} bytes with SHA-256 ${sha}, the instance announced ${bytes} bytes with ${String(header[2])}`, { loadBalancer }, { mayHaveRun: true });
  }
  return raw.toString('utf8');
}

/** The reply, when `text` is a whole, verified document output; undefined when it is not (cut, or not an encoded reply). */
export function decodeIfWhole(text: string, loadBalancer: string): string | undefined {
  try {
    return decodeDocumentOutput(text, loadBalancer, null);
  } catch {
    return undefined;
  }
}

/**
 * The S3 key of an invocation's stdout: taken from GetCommandInvocation's StandardOutputUrl
 * (path-style or virtual-hosted), or built the way the agent names it when the URL is empty; either
 * way it must lie under `<prefix>/<command id>/<instance id>/`, so that a forged URL cannot make
 * the relay read another object.
 */
export function outputKeyOf(url: string, bucket: string, keyPrefix: string, commandId: string, instanceId: string): string | null {
  const base = `${keyPrefix === '' ? '' : `${keyPrefix}/`}${commandId}/${instanceId}/`;
  if (url === '') return `${base}awsrunShellScript/${DOCUMENT_STEP_NAME}/stdout`;
  if (!URL.canParse(url)) return null;
  const parsed = new URL(url);
  let path: string;
  try {
    path = parsed.pathname.split('/').map(decodeURIComponent).join('/');
  } catch {
    return null;
  }
  const key = parsed.hostname.startsWith(`${bucket}.`) ? path.slice(1) : path.startsWith(`/${bucket}/`) ? path.slice(bucket.length + 2) : null;
  return key !== null && key.startsWith(base) && !key.includes('..') ? key : null;
}

type PartOutcome = { readonly ok: true; readonly reply: string } | { readonly ok: false; readonly error: RelayError };

function errorName(error: unknown): string {
  return error instanceof Error ? error.name : '';
}

/** Runs `task` on every item with at most `limit` in flight. */
async function inParallel<T>(items: readonly T[], limit: number, task: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++];
      if (item !== undefined) await task(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function sleepUnless(sleep: (ms: number) => Promise<void>, ms: number, signal: AbortSignal | undefined): Promise<void> {
  if (signal === undefined) return sleep(ms);
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      signal.removeEventListener('abort', done);
      resolve();
    };
    signal.addEventListener('abort', done, { once: true });
    void sleep(ms).then(done, done);
  });
}

/** One SendCommand to be made: one part of one distinct batch, for up to 50 instances. */
interface Task {
  readonly group: number;
  readonly part: number;
  readonly parts: number;
  readonly commands: readonly string[];
  readonly instanceIds: readonly string[];
  /** Sent to the tag the load balancers were found by, rather than to their ids (more than 50 of them). */
  readonly byTag?: { readonly key: string; readonly value: string };
}

export function createSsmRelayFor(settings: SsmRelaySettings, loadBalancers: readonly string[], options: SsmRelayOptions): RuntimeRelay {
  const api = options.api;
  const sleep = options.sleep ?? ((ms: number) => delay(ms));
  const now = options.now ?? Date.now;
  const maxChars = Math.min(options.maxCommandChars ?? MAX_COMMANDS_CHARS, MAX_COMMANDS_CHARS);
  const maxShow = options.maxShowCommands ?? (options.output === undefined ? INLINE_MAX_SHOW_COMMANDS : Number.POSITIVE_INFINITY);
  const maxConcurrent = options.maxConcurrentCommands ?? DEFAULT_MAX_CONCURRENT_COMMANDS;
  const known = new Set(loadBalancers);
  const unreachable = options.unreachable ?? new Map<string, string>();
  const reachable = loadBalancers.filter((id) => !unreachable.has(id)).length;
  // The longest command timed so far: what the next one is expected to take.
  let longestMs: number | undefined;
  const expectedMs = (): number => longestMs ?? options.expectedCommandMs ?? DEFAULT_EXPECTED_COMMAND_MS;

  const stopped = (instanceId: string, commandId: string, last: string): PartOutcome => ({
    ok: false,
    error: new RelayError(`${instanceId}: stopped waiting for SSM command ${commandId} (last: ${last}): the cycle's time budget ran out; it may still run on the instance`, { loadBalancer: instanceId, status: last }, { mayHaveRun: true }),
  });

  const callFailed = (instanceId: string, call: string, commandId: string, error: unknown): RelayError =>
    new RelayError(`${instanceId}: ${call} for command ${commandId} failed: ${errorName(error) === '' ? '' : `${errorName(error)}: `}${describeError(error)}`, { loadBalancer: instanceId }, { cause: error, mayHaveRun: true });

  /** Every invocation of a command, page by page. */
  const listInvocations = async (commandId: string): Promise<CommandInvocation[]> => {
    const all: CommandInvocation[] = [];
    let nextToken: string | undefined;
    do {
      const page = await api.listCommandInvocations({ CommandId: commandId, Details: true, MaxResults: MAX_RESULTS_PER_PAGE, ...(nextToken === undefined ? {} : { NextToken: nextToken }) });
      all.push(...(page.CommandInvocations ?? []));
      nextToken = page.NextToken === '' ? undefined : page.NextToken;
    } while (nextToken !== undefined);
    return all;
  };

  /**
   * Polls one command until every one of `instanceIds` has a final invocation, the deadline passes
   * or the budget runs out; the output of each final one is read as soon as it is final, while the
   * others are still polled.
   */
  const waitForCommand = async (commandId: string, instanceIds: readonly string[], started: number, signal: AbortSignal | undefined): Promise<Map<string, PartOutcome>> => {
    const deadline = now() + settings.maxWaitMs;
    const outcomes = new Map<string, PartOutcome>();
    const reads: Promise<void>[] = [];
    const pending = new Set(instanceIds);
    // Right after SendCommand an invocation may not be listed yet: it counts as not registered.
    const last = new Map<string, string>();
    const lastOf = (id: string): string => last.get(id) ?? 'not yet registered (not listed by ListCommandInvocations)';
    let wait = settings.pollIntervalMs;
    for (let polls = 1; pending.size > 0; polls++) {
      await sleepUnless(sleep, wait, signal);
      if (signal?.aborted === true) {
        for (const id of pending) outcomes.set(id, stopped(id, commandId, lastOf(id)));
        break;
      }
      // Steady while a command usually ends, then growing by half up to 8x for a slow one.
      if (polls >= STEADY_POLLS) wait = Math.min(Math.round(wait * 1.5), settings.pollIntervalMs * 8);
      let listed: CommandInvocation[];
      try {
        listed = await listInvocations(commandId);
      } catch (error) {
        for (const id of pending) outcomes.set(id, { ok: false, error: callFailed(id, 'ListCommandInvocations', commandId, error) });
        break;
      }
      for (const invocation of listed) {
        const id = invocation.InstanceId;
        if (id === undefined || !pending.has(id)) continue;
        const status = invocation.Status ?? 'unknown';
        const details = invocation.StatusDetails ?? '';
        const shown = details !== '' && details !== status ? `${status} (${details})` : status;
        last.set(id, shown);
        if (!FINAL_STATUSES.has(status) && !FINAL_STATUSES.has(details)) continue;
        pending.delete(id);
        reads.push(
          settle(commandId, id, invocation, shown, signal).then((outcome) => {
            if (outcome.ok) longestMs = Math.max(longestMs ?? 0, now() - started);
            outcomes.set(id, outcome);
          }),
        );
      }
      if (pending.size > 0 && now() >= deadline) {
        for (const id of pending) {
          const shown = lastOf(id);
          outcomes.set(id, {
            ok: false,
            error: new RelayError(`${id}: no final status for SSM command ${commandId} within ${settings.maxWaitMs} ms (last: ${shown}); it may still run on the instance`, { loadBalancer: id, status: shown }, { mayHaveRun: true }),
          });
        }
        break;
      }
    }
    await Promise.all(reads);
    return outcomes;
  };

  /** The outcome of a final invocation, from what ListCommandInvocations said of it. */
  const settle = async (commandId: string, instanceId: string, invocation: CommandInvocation, shown: string, signal: AbortSignal | undefined): Promise<PartOutcome> => {
    const plugin = invocation.CommandPlugins?.find((p) => p.Name === DOCUMENT_STEP_NAME) ?? invocation.CommandPlugins?.[0];
    if (invocation.Status === 'Success' && (invocation.StatusDetails === undefined || invocation.StatusDetails === 'Success')) {
      // The first 2,500 characters came with the status: when they are the whole reply, its
      // header, checksum and end marker prove it, and nothing else needs to be read.
      const brief = decodeIfWhole(plugin?.Output ?? '', instanceId);
      if (brief !== undefined) return { ok: true, reply: brief };
      try {
        return { ok: true, reply: await fullOutput(commandId, instanceId, plugin, signal) };
      } catch (error) {
        return { ok: false, error: error instanceof RelayError ? error : new RelayError(describeError(error), { loadBalancer: instanceId }, { cause: error, mayHaveRun: true }) };
      }
    }
    // Failed, timed out or cancelled: GetCommandInvocation has the exit code and the start of
    // stderr. Without it, the status ListCommandInvocations gave still says what happened.
    let out: GetCommandInvocationCommandOutput;
    try {
      out = await api.getCommandInvocation({ CommandId: commandId, InstanceId: instanceId });
    } catch {
      out = { $metadata: {}, ...(invocation.Status === undefined ? {} : { Status: invocation.Status }), ...(invocation.StatusDetails === undefined ? {} : { StatusDetails: invocation.StatusDetails }), ...(plugin?.ResponseCode === undefined ? {} : { ResponseCode: plugin.ResponseCode }) };
    }
    return failure(commandId, instanceId, out, shown);
  };

  /** GetCommandInvocation, its failure a RelayError naming the call. */
  const getInvocation = async (commandId: string, instanceId: string): Promise<GetCommandInvocationCommandOutput> => {
    try {
      return await api.getCommandInvocation({ CommandId: commandId, InstanceId: instanceId });
    } catch (error) {
      throw callFailed(instanceId, 'GetCommandInvocation', commandId, error);
    }
  };

  /**
   * The whole reply of a successful invocation longer than the plugin output: the S3 object when
   * there is an output bucket, else GetCommandInvocation's copy (24,000 characters).
   */
  const fullOutput = async (commandId: string, instanceId: string, plugin: CommandPlugin | undefined, signal: AbortSignal | undefined): Promise<string> => {
    const output = options.output;
    if (output === undefined) return decodeDocumentOutput((await getInvocation(commandId, instanceId)).StandardOutputContent ?? '', instanceId);
    const key = outputKeyOf(plugin?.StandardOutputUrl ?? '', output.bucket, output.keyPrefix, commandId, instanceId);
    if (key === null) {
      throw new RelayError(`${instanceId}: the output URL of SSM command ${commandId} is not an object of s3://${output.bucket}/${output.keyPrefix}: ${snippet(plugin?.StandardOutputUrl ?? '', 120)}`, { loadBalancer: instanceId }, { mayHaveRun: true });
    }
    let text: string;
    try {
      text = await output.s3.getObject(output.bucket, key, signal);
    } catch (error) {
      // The agent's upload can fail (the instance profile's permission) without failing the
      // invocation: GetCommandInvocation's copy is then the reply if it is whole.
      const inline = (await getInvocation(commandId, instanceId)).StandardOutputContent ?? '';
      if (inline.length < STDOUT_LIMIT_CHARS) return decodeDocumentOutput(inline, instanceId);
      const name = errorName(error);
      const hint =
        name === 'NoSuchKey'
          ? `: the agent did not write it; the instance profile of ${instanceId} needs s3:PutObject on arn:aws:s3:::${output.bucket}/${output.keyPrefix}/*`
          : name === 'AccessDenied'
            ? `: the function's role needs s3:GetObject on arn:aws:s3:::${output.bucket}/${output.keyPrefix}/*`
            : '';
      throw new RelayError(`${instanceId}: cannot read the output of SSM command ${commandId} from s3://${output.bucket}/${key} (${name === '' ? '' : `${name}: `}${describeError(error)})${hint}`, { loadBalancer: instanceId }, { cause: error, mayHaveRun: true });
    }
    return decodeDocumentOutput(text, instanceId, null);
  };

  /** The error of an invocation that did not succeed, and whether it may have reached the socket. */
  const failure = (commandId: string, instanceId: string, out: GetCommandInvocationCommandOutput, shown: string): PartOutcome => {
    const stderr = out.StandardErrorContent ?? '';
    const code = out.ResponseCode === undefined || out.ResponseCode === -1 ? '' : `, exit code ${out.ResponseCode}`;
    const why = stderr.trim() === '' ? '' : `: ${snippet(stderr.trim())}`;
    // Known not to have reached the socket: the document's own refusals before socat (exit 64-67,
    // 71, and 75 when another command held the socket's lock) and invocations the agent never
    // started. Anything else may have run, in part.
    const details = out.StatusDetails ?? '';
    const notRun = (out.Status === 'Failed' && [64, 65, 66, 67, 71, 75].includes(out.ResponseCode ?? -1)) || details === 'Undeliverable' || details === 'DeliveryTimedOut';
    return {
      ok: false,
      error: new RelayError(`${instanceId}: SSM command ${commandId} ended ${shown}${code}${why}`, { loadBalancer: instanceId, status: shown, reply: stderr }, { mayHaveRun: !notRun }),
    };
  };

  /** Sends one part to a set of instances (≤ 50) and waits for each of them. */
  const sendPart = async (task: Task, run: RelayRunOptions): Promise<Map<string, PartOutcome>> => {
    const outcomes = new Map<string, PartOutcome>();
    const { instanceIds } = task;
    const signal = run.signal;
    if (signal?.aborted === true || (run.deadline !== undefined && now() + expectedMs() > run.deadline)) {
      const left = run.deadline === undefined ? 0 : Math.max(0, run.deadline - now());
      const why = signal?.aborted === true ? 'the cycle ran out of time' : `${left} ms of the cycle's time budget left and a command takes about ${Math.round(expectedMs())} ms`;
      for (const id of instanceIds) outcomes.set(id, { ok: false, error: new RelayError(`${id}: not sent: ${why}`, { loadBalancer: id }, { notStarted: true }) });
      return outcomes;
    }
    const started = now();
    let commandId: string | undefined;
    try {
      const sent = await api.sendCommand({
        DocumentName: settings.documentName,
        ...(task.byTag === undefined ? { InstanceIds: [...instanceIds] } : { Targets: [{ Key: `tag:${task.byTag.key}`, Values: [task.byTag.value] }] }),
        Parameters: { Commands: [task.commands.join('; ')], SocketPath: [settings.socketPath] },
        TimeoutSeconds: settings.commandTimeoutSeconds,
        // One failing load balancer must never stop the command on the others.
        MaxConcurrency: '100%',
        MaxErrors: '100%',
        Comment: task.parts === 1 ? 'haproxy-weighter' : `haproxy-weighter part ${task.part + 1}/${task.parts}`,
        ...(options.output === undefined ? {} : { OutputS3BucketName: options.output.bucket, OutputS3KeyPrefix: options.output.keyPrefix }),
      });
      commandId = sent.Command?.CommandId;
    } catch (error) {
      const e = new RelayError(`SendCommand ${settings.documentName} failed: ${errorName(error) === '' ? '' : `${errorName(error)}: `}${describeError(error)}`, {}, { cause: error });
      for (const id of instanceIds) outcomes.set(id, { ok: false, error: new RelayError(`${id}: ${e.message}`, { loadBalancer: id }, { cause: error }) });
      return outcomes;
    }
    if (commandId === undefined || commandId === '') {
      for (const id of instanceIds) outcomes.set(id, { ok: false, error: new RelayError(`${id}: SendCommand returned no command id`, { loadBalancer: id }) });
      return outcomes;
    }
    options.onCommand?.({ commandId, instanceIds, part: task.part + 1, parts: task.parts, commands: task.commands.length });
    return waitForCommand(commandId, instanceIds, started, signal);
  };

  return {
    loadBalancers: [...loadBalancers],
    maxBatchChars: maxChars,
    async run(requests: readonly RelayRequest[], run: RelayRunOptions = {}): Promise<readonly RelayResult[]> {
      const early = new Map<number, RelayResult>();
      const groups = new Map<string, { commands: readonly string[]; instanceIds: string[] }>();
      requests.forEach((req, i) => {
        if (!known.has(req.loadBalancer)) {
          early.set(i, { loadBalancer: req.loadBalancer, ok: false, error: new RelayError(`Unknown load balancer ${req.loadBalancer}`, { loadBalancer: req.loadBalancer }) });
          return;
        }
        const why = unreachable.get(req.loadBalancer);
        if (why !== undefined) {
          early.set(i, { loadBalancer: req.loadBalancer, ok: false, error: new RelayError(`${req.loadBalancer}: not sent: ${why}`, { loadBalancer: req.loadBalancer }, { notStarted: true }) });
          return;
        }
        const bad = req.commands.find((c) => !isAllowedCommand(c));
        if (bad !== undefined || req.commands.length === 0) {
          const message =
            bad === undefined
              ? `${req.loadBalancer}: empty batch`
              : `${req.loadBalancer}: refused to send ${JSON.stringify(snippet(bad, 80))}: not one of the runtime commands the SSM document accepts`;
          early.set(i, { loadBalancer: req.loadBalancer, ok: false, error: new UnsafeInputError(message, { loadBalancer: req.loadBalancer }) });
          return;
        }
        const length = req.commands.reduce((n, c) => n + c.length + 2, -2);
        if (length > maxChars && !req.commands.every(isRead)) {
          // Split, the tail of a write batch would run without the operator-state read at its head.
          early.set(i, {
            loadBalancer: req.loadBalancer,
            ok: false,
            error: new UnsafeInputError(`${req.loadBalancer}: refused a write batch of ${length} characters: one SSM command carries at most ${maxChars}; the cycle cuts writes to fit`, { loadBalancer: req.loadBalancer }),
          });
          return;
        }
        // Commands never contain a newline (checked above), so it separates them unambiguously.
        const key = req.commands.join('\n');
        const group = groups.get(key) ?? { commands: req.commands, instanceIds: [] };
        if (!group.instanceIds.includes(req.loadBalancer)) group.instanceIds.push(req.loadBalancer);
        groups.set(key, group);
      });

      // Every part of every distinct batch, for at most 50 instances each: all of them at once.
      const entries = [...groups.values()];
      const partsOf = entries.map((g) => splitBatch(g.commands, maxChars, maxShow));
      const tasks: Task[] = [];
      entries.forEach((g, group) => {
        const parts = partsOf[group] ?? [];
        parts.forEach((commands, part) => {
          // A read for every reachable load balancer found by tag goes to the tag: one command for
          // any number of them (an unreachable one may run it later; a read is harmless). Never a
          // write: an instance offline now would run it when it comes back.
          const everyOne = g.instanceIds.length > MAX_INSTANCE_IDS_PER_COMMAND && g.instanceIds.length === reachable && commands.every(isRead);
          if (everyOne && 'tag' in settings.targets) {
            tasks.push({ group, part, parts: parts.length, commands, instanceIds: g.instanceIds, byTag: settings.targets.tag });
            return;
          }
          for (let i = 0; i < g.instanceIds.length; i += MAX_INSTANCE_IDS_PER_COMMAND) {
            tasks.push({ group, part, parts: parts.length, commands, instanceIds: g.instanceIds.slice(i, i + MAX_INSTANCE_IDS_PER_COMMAND) });
          }
        });
      });
      const outcomes = new Map<string, PartOutcome>();
      const at = (group: number, part: number, id: string): string => `${group}/${part}/${id}`;
      await inParallel(tasks, maxConcurrent, async (task) => {
        for (const [id, outcome] of await sendPart(task, run)) outcomes.set(at(task.group, task.part, id), outcome);
      });

      const results = new Map<string, RelayResult>();
      entries.forEach((g, group) => {
        const parts = partsOf[group] ?? [];
        for (const id of g.instanceIds) {
          let reply = '';
          let failure: RelayError | undefined;
          for (let part = 0; part < parts.length && failure === undefined; part++) {
            const outcome = outcomes.get(at(group, part, id));
            if (outcome === undefined) failure = new RelayError(`${id}: no result`, { loadBalancer: id });
            else if (outcome.ok) reply += outcome.reply;
            else failure = parts.length === 1 ? outcome.error : new RelayError(`${outcome.error.message} [part ${part + 1} of ${parts.length}]`, outcome.error.context, { cause: outcome.error, mayHaveRun: outcome.error.mayHaveRun, notStarted: outcome.error.notStarted });
          }
          results.set(`${group}/${id}`, failure === undefined ? { loadBalancer: id, ok: true, reply } : { loadBalancer: id, ok: false, error: failure });
        }
      });
      const groupIndex = new Map([...groups.keys()].map((key, i) => [key, i]));
      return requests.map((req, i) => {
        const failed = early.get(i);
        if (failed !== undefined) return failed;
        const result = results.get(`${groupIndex.get(req.commands.join('\n')) ?? -1}/${req.loadBalancer}`);
        return result ?? { loadBalancer: req.loadBalancer, ok: false, error: new RelayError(`${req.loadBalancer}: no result`, { loadBalancer: req.loadBalancer }) };
      });
    },
  };
}
