import { setTimeout as delay } from 'node:timers/promises';
import { createHash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import {
  DescribeInstanceInformationCommand,
  GetCommandInvocationCommand,
  SendCommandCommand,
  SSMClient,
  type SSMClientConfig,
  type DescribeInstanceInformationCommandInput,
  type DescribeInstanceInformationCommandOutput,
  type GetCommandInvocationCommandInput,
  type GetCommandInvocationCommandOutput,
  type SendCommandCommandInput,
  type SendCommandCommandOutput,
} from '@aws-sdk/client-ssm';
import type { SsmRelayConfig } from '../core/config.js';
import { RelayError, UnsafeInputError, describeError, snippet } from '../core/errors.js';
import { isAllowedCommand } from '../core/runtime-grammar.js';
import type { RelayRequest, RelayResult, RuntimeRelay } from '../core/types.js';

/**
 * Reaches every load balancer's HAProxy runtime API through AWS Systems Manager Run Command and the
 * custom document in `infra/ssm-document.yaml`. A load balancer is an instance id. Load balancers
 * whose batches are identical share one SendCommand (up to 50 instance ids per call); each
 * instance's invocation is polled with backoff until it reaches a final status, and its output is
 * decoded and verified: a reply cut off by the 24,000-character output limit is an error, never a
 * short reply.
 */

/** SendCommand accepts at most this many `InstanceIds`. */
export const MAX_INSTANCE_IDS_PER_COMMAND = 50;

/** GetCommandInvocation returns at most this many characters of stdout. */
export const STDOUT_LIMIT_CHARS = 24_000;

/**
 * Longest `Commands` value sent in one SendCommand. The SendCommand API reference puts no length
 * constraint on parameter values and the document itself may be 64 KB, but the only figure we
 * found for the payload a command may carry is 16 KB (third-party, unverified), so a batch longer
 * than this is split into several commands, run one after the other.
 */
export const DEFAULT_MAX_COMMAND_CHARS = 16_000;

/**
 * `show` commands per SendCommand. One backend's observation (`show stat` + `show servers state`)
 * of 500 servers prints about 13 KB once compressed and encoded, so two `show` commands fit in the
 * 24,000 characters GetCommandInvocation returns and two backends would not.
 */
export const DEFAULT_MAX_SHOW_COMMANDS = 2;

/** SendCommands in flight at once, so that many distinct batches do not trip the API rate. */
export const DEFAULT_MAX_CONCURRENT_COMMANDS = 10;

const REPLY_HEADER = /^HAPROXY-WEIGHTER-REPLY 1 bytes=(\d{1,12}) sha256=([0-9a-f]{64})$/;
const REPLY_END = 'HAPROXY-WEIGHTER-END';
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Statuses (or status details) after which an invocation never changes again. */
const FINAL_STATUSES = new Set(['Success', 'Failed', 'TimedOut', 'Cancelled', 'Undeliverable', 'Terminated', 'DeliveryTimedOut', 'ExecutionTimedOut']);

/** The three SSM operations the relay uses; `ssmApiFromClient` adapts the SDK client. */
export interface SsmApi {
  sendCommand(input: SendCommandCommandInput): Promise<SendCommandCommandOutput>;
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
    getCommandInvocation: (input) => client.send(new GetCommandInvocationCommand(input)),
    describeInstanceInformation: (input) => client.send(new DescribeInstanceInformationCommand(input)),
  };
}

export type SsmRelaySettings = Pick<SsmRelayConfig, 'documentName' | 'socketPath' | 'targets' | 'commandTimeoutSeconds' | 'pollIntervalMs' | 'maxWaitMs'>;

export interface SentCommand {
  readonly commandId: string;
  readonly instanceIds: readonly string[];
  /** 1-based position of this part when a batch is split; `parts` is 1 when it is not. */
  readonly part: number;
  readonly parts: number;
  readonly commands: number;
}

export interface SsmRelayOptions {
  readonly api: SsmApi;
  /** Injected so that unit tests do not wait for real polling. */
  readonly sleep?: (ms: number) => Promise<void>;
  /** Milliseconds since the epoch, for the `maxWaitMs` deadline. */
  readonly now?: () => number;
  readonly maxCommandChars?: number;
  readonly maxShowCommands?: number;
  readonly maxConcurrentCommands?: number;
  /** Told about every SendCommand, e.g. to log its command id. */
  readonly onCommand?: (sent: SentCommand) => void;
}

/** Which instances are load balancers: the configured ids, or the online Linux instances with the tag. */
export async function resolveLoadBalancers(targets: SsmRelaySettings['targets'], api: SsmApi): Promise<readonly string[]> {
  if ('instanceIds' in targets) return [...new Set(targets.instanceIds)];
  const { key, value } = targets.tag;
  const ids: string[] = [];
  let nextToken: string | undefined;
  do {
    let page: DescribeInstanceInformationCommandOutput;
    try {
      page = await api.describeInstanceInformation({
        Filters: [
          { Key: `tag:${key}`, Values: [value] },
          { Key: 'PingStatus', Values: ['Online'] },
          { Key: 'PlatformTypes', Values: ['Linux'] },
        ],
        MaxResults: 50,
        ...(nextToken === undefined ? {} : { NextToken: nextToken }),
      });
    } catch (error) {
      throw new RelayError(`Cannot list the managed instances tagged ${key}=${value}: ${describeError(error)}`, {}, { cause: error });
    }
    for (const info of page.InstanceInformationList ?? []) {
      if (typeof info.InstanceId === 'string' && !ids.includes(info.InstanceId)) ids.push(info.InstanceId);
    }
    nextToken = page.NextToken;
  } while (nextToken !== undefined && nextToken !== '');
  if (ids.length === 0) throw new RelayError(`No online Linux managed instance carries the tag ${key}=${value}: no load balancer to reach`);
  return ids.sort();
}

/** Resolves the targets, then builds the relay. */
export async function createSsmRelay(settings: SsmRelaySettings, options: SsmRelayOptions): Promise<RuntimeRelay> {
  return createSsmRelayFor(settings, await resolveLoadBalancers(settings.targets, options.api), options);
}

/**
 * Splits a batch into the parts sent as separate commands: each part stays under `maxChars` once
 * joined and holds at most `maxShow` `show` commands, whose replies are the large ones.
 */
export function splitBatch(commands: readonly string[], maxChars: number, maxShow: number): string[][] {
  const parts: string[][] = [];
  let current: string[] = [];
  let chars = 0;
  let shows = 0;
  for (const command of commands) {
    const isShow = command.startsWith('show ');
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
export function decodeDocumentOutput(stdout: string, loadBalancer: string): string {
  const lines = stdout.split('\n');
  const header = REPLY_HEADER.exec(lines[0] ?? '');
  const body = lines[1] ?? '';
  const endSeen = lines[2] === REPLY_END && lines.slice(3).every((l) => l === '');
  if (header === null || !endSeen) {
    if (stdout.length >= STDOUT_LIMIT_CHARS) {
      throw new RelayError(
        `${loadBalancer}: the reply was cut off at the ${STDOUT_LIMIT_CHARS.toLocaleString('en-US')}-character output limit of GetCommandInvocation; send fewer commands per call`,
        { loadBalancer, reply: stdout.slice(0, 120) },
      );
    }
    throw new RelayError(`${loadBalancer}: the SSM document printed something other than an encoded reply`, { loadBalancer, reply: stdout });
  }
  if (!BASE64.test(body)) throw new RelayError(`${loadBalancer}: the encoded reply is not base64`, { loadBalancer, reply: body });
  let raw: Buffer;
  try {
    raw = gunzipSync(Buffer.from(body, 'base64'));
  } catch (cause) {
    throw new RelayError(`${loadBalancer}: the encoded reply does not decompress: ${describeError(cause)}`, { loadBalancer, reply: body }, { cause });
  }
  const bytes = Number(header[1]);
  const sha = createHash('sha256').update(raw).digest('hex');
  if (raw.length !== bytes || sha !== header[2]) {
    throw new RelayError(`${loadBalancer}: the decoded reply is ${raw.length} bytes with SHA-256 ${sha}, the instance announced ${bytes} bytes with ${String(header[2])}`, { loadBalancer });
  }
  return raw.toString('utf8');
}

type PartOutcome = { readonly ok: true; readonly reply: string } | { readonly ok: false; readonly error: RelayError };

function errorName(error: unknown): string {
  return error instanceof Error ? error.name : '';
}

/** Runs `tasks` with at most `limit` in flight. */
async function inBatches<T>(items: readonly T[], limit: number, task: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++];
      if (item !== undefined) await task(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

export function createSsmRelayFor(settings: SsmRelaySettings, loadBalancers: readonly string[], options: SsmRelayOptions): RuntimeRelay {
  const api = options.api;
  const sleep = options.sleep ?? ((ms: number) => delay(ms));
  const now = options.now ?? Date.now;
  const maxChars = options.maxCommandChars ?? DEFAULT_MAX_COMMAND_CHARS;
  const maxShow = options.maxShowCommands ?? DEFAULT_MAX_SHOW_COMMANDS;
  const maxConcurrent = options.maxConcurrentCommands ?? DEFAULT_MAX_CONCURRENT_COMMANDS;
  const known = new Set(loadBalancers);

  /** Polls one invocation until it is final or the deadline passes. */
  const waitFor = async (commandId: string, instanceId: string, deadline: number): Promise<PartOutcome> => {
    let delay = settings.pollIntervalMs;
    let last = 'not yet registered (InvocationDoesNotExist)';
    for (;;) {
      await sleep(delay);
      delay = Math.min(Math.round(delay * 1.5), settings.pollIntervalMs * 8);
      let out: GetCommandInvocationCommandOutput | undefined;
      try {
        out = await api.getCommandInvocation({ CommandId: commandId, InstanceId: instanceId });
      } catch (error) {
        // Right after SendCommand the invocation may not exist yet: keep polling until the deadline.
        if (errorName(error) !== 'InvocationDoesNotExist') {
          return { ok: false, error: new RelayError(`${instanceId}: GetCommandInvocation for command ${commandId} failed: ${errorName(error) === '' ? '' : `${errorName(error)}: `}${describeError(error)}`, { loadBalancer: instanceId }, { cause: error }) };
        }
      }
      if (out !== undefined) {
        const status = out.Status ?? 'unknown';
        const details = out.StatusDetails ?? '';
        last = details !== '' && details !== status ? `${status} (${details})` : status;
        if (FINAL_STATUSES.has(status) || FINAL_STATUSES.has(details)) return finish(commandId, instanceId, out, last);
      }
      if (now() >= deadline) {
        return {
          ok: false,
          error: new RelayError(`${instanceId}: no final status for SSM command ${commandId} within ${settings.maxWaitMs} ms (last: ${last}); it may still run on the instance`, {
            loadBalancer: instanceId,
            status: last,
          }),
        };
      }
    }
  };

  const finish = (commandId: string, instanceId: string, out: GetCommandInvocationCommandOutput, shown: string): PartOutcome => {
    const stderr = out.StandardErrorContent ?? '';
    if (out.Status === 'Success' && (out.StatusDetails === undefined || out.StatusDetails === 'Success')) {
      try {
        return { ok: true, reply: decodeDocumentOutput(out.StandardOutputContent ?? '', instanceId) };
      } catch (error) {
        return { ok: false, error: error instanceof RelayError ? error : new RelayError(describeError(error), { loadBalancer: instanceId }, { cause: error }) };
      }
    }
    const code = out.ResponseCode === undefined || out.ResponseCode === -1 ? '' : `, exit code ${out.ResponseCode}`;
    const why = stderr.trim() === '' ? '' : `: ${snippet(stderr.trim())}`;
    return {
      ok: false,
      error: new RelayError(`${instanceId}: SSM command ${commandId} ended ${shown}${code}${why}`, { loadBalancer: instanceId, status: shown, reply: stderr }),
    };
  };

  /** Sends one part to a set of instances (≤ 50) and waits for each of them. */
  const sendPart = async (part: readonly string[], instanceIds: readonly string[], index: number, parts: number): Promise<Map<string, PartOutcome>> => {
    const outcomes = new Map<string, PartOutcome>();
    let commandId: string | undefined;
    try {
      const sent = await api.sendCommand({
        DocumentName: settings.documentName,
        InstanceIds: [...instanceIds],
        Parameters: { Commands: [part.join('; ')], SocketPath: [settings.socketPath] },
        TimeoutSeconds: settings.commandTimeoutSeconds,
        // One failing load balancer must never stop the command on the others.
        MaxConcurrency: '100%',
        MaxErrors: '100%',
        Comment: parts === 1 ? 'haproxy-weighter' : `haproxy-weighter part ${index + 1}/${parts}`,
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
    options.onCommand?.({ commandId, instanceIds, part: index + 1, parts, commands: part.length });
    const deadline = now() + settings.maxWaitMs;
    const id = commandId;
    await Promise.all(
      instanceIds.map(async (instanceId) => {
        outcomes.set(instanceId, await waitFor(id, instanceId, deadline));
      }),
    );
    return outcomes;
  };

  /** One distinct batch for a group of load balancers: its parts in order, every part to every instance still healthy. */
  const runGroup = async (commands: readonly string[], instanceIds: readonly string[]): Promise<Map<string, RelayResult>> => {
    const parts = splitBatch(commands, maxChars, maxShow);
    const replies = new Map<string, string>(instanceIds.map((id) => [id, '']));
    const results = new Map<string, RelayResult>();
    for (let index = 0; index < parts.length; index++) {
      const part = parts[index] ?? [];
      const alive = instanceIds.filter((id) => !results.has(id));
      if (alive.length === 0) break;
      const slices: string[][] = [];
      for (let i = 0; i < alive.length; i += MAX_INSTANCE_IDS_PER_COMMAND) slices.push(alive.slice(i, i + MAX_INSTANCE_IDS_PER_COMMAND));
      const outcomes = await Promise.all(slices.map((slice) => sendPart(part, slice, index, parts.length)));
      for (const map of outcomes) {
        for (const [instanceId, outcome] of map) {
          if (outcome.ok) {
            replies.set(instanceId, (replies.get(instanceId) ?? '') + outcome.reply);
            continue;
          }
          const done = parts.slice(0, index).reduce((n, p) => n + p.length, 0);
          const error =
            parts.length === 1
              ? outcome.error
              : new RelayError(
                  `${outcome.error.message} [part ${index + 1} of ${parts.length}; the first ${done} of ${commands.length} commands had already run]`,
                  outcome.error.context,
                  { cause: outcome.error },
                );
          results.set(instanceId, { loadBalancer: instanceId, ok: false, error });
        }
      }
    }
    for (const id of instanceIds) {
      if (!results.has(id)) results.set(id, { loadBalancer: id, ok: true, reply: replies.get(id) ?? '' });
    }
    return results;
  };

  return {
    loadBalancers: [...loadBalancers],
    async run(requests: readonly RelayRequest[]): Promise<readonly RelayResult[]> {
      const early = new Map<number, RelayResult>();
      const groups = new Map<string, { commands: readonly string[]; instanceIds: string[] }>();
      requests.forEach((req, i) => {
        if (!known.has(req.loadBalancer)) {
          early.set(i, { loadBalancer: req.loadBalancer, ok: false, error: new RelayError(`Unknown load balancer ${req.loadBalancer}`, { loadBalancer: req.loadBalancer }) });
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
        // Commands never contain a newline (checked above), so it separates them unambiguously.
        const key = req.commands.join('\n');
        const group = groups.get(key) ?? { commands: req.commands, instanceIds: [] };
        if (!group.instanceIds.includes(req.loadBalancer)) group.instanceIds.push(req.loadBalancer);
        groups.set(key, group);
      });
      const byInstance = new Map<string, Map<string, RelayResult>>();
      await inBatches([...groups.entries()], maxConcurrent, async ([key, group]) => {
        byInstance.set(key, await runGroup(group.commands, group.instanceIds));
      });
      return requests.map((req, i) => {
        const failed = early.get(i);
        if (failed !== undefined) return failed;
        const result = byInstance.get(req.commands.join('\n'))?.get(req.loadBalancer);
        return result ?? { loadBalancer: req.loadBalancer, ok: false, error: new RelayError(`${req.loadBalancer}: no result`, { loadBalancer: req.loadBalancer }) };
      });
    },
  };
}
