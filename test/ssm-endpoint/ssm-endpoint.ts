/**
 * A local AWS Systems Manager endpoint for tests. It speaks the AWS JSON 1.1 protocol
 * (`x-amz-target: AmazonSSM.<Operation>`) to the real `@aws-sdk/client-ssm`, loads the real
 * Command document from `infra/`, enforces each parameter's `allowedPattern`, and executes the
 * document's `aws:runShellScript` step with a real shell for every emulated instance, the way the
 * SSM Agent does: the `runCommand` lines are written to `_script.sh` and run with `sh -c <path>`,
 * `{{ Parameter }}` placeholders are substituted into the text, and parameters declared with
 * `interpolationType: ENV_VAR` are also exported as `SSM_<Parameter>` environment variables, by an
 * agent of 3.3.2746.0 or later (an older one runs the script without them). GetDocument answers the
 * stack's document with its content; DescribeInstanceInformation each instance's ping status and
 * agent version.
 *
 * Behaviour that matters to the relay is reproduced: `InvocationDoesNotExist` right after
 * SendCommand (and the invocation left out of ListCommandInvocations), Pending → InProgress →
 * final statuses, stdout cut at 24,000 characters and stderr at 8,000 in GetCommandInvocation and
 * the step's output at 2,500 in ListCommandInvocations (Details), paging with NextToken and
 * MaxResults as the API reference bounds them, DescribeInstanceInformation's filters (keys,
 * values, tag filters never combined with other types), at most 50 instance ids per SendCommand, the 64 KB quota on
 * the document plus its parameters (`MaxDocumentSizeExceeded`), command output written to an S3
 * bucket (`OutputS3BucketName`, uncut) through a local S3 endpoint with the real S3 SDK, as the
 * agent uploads it, and on demand throttling (a number of calls, or a rate per operation), a
 * failing, undeliverable, delayed or timed-out instance, and an invocation that stays invisible
 * for many polls. `latency` adds realistic delays: every API call takes tens of milliseconds and a
 * command takes 1-3 s to complete, as measured against the real service. `onRequest` lets a test
 * arm a fault at an exact step (e.g. only for the command that writes weights).
 *
 * Each emulated instance has its own view of the file system through `paths`: a path as the
 * instance sees it (e.g. `/run/haproxy/admin.sock`) maps to a real path on this machine (the admin
 * socket of that instance's HAProxy process). The mapping applies to parameter values that are
 * exactly such a path.
 */
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { fork, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { closeHttpServer, listenAsAwsEndpoint } from '../harness/loopback-server.js';
import { makeTempDir, removeTempDir } from '../harness/processes.js';

export const STDOUT_LIMIT = 24_000;
export const STDERR_LIMIT = 8_000;
/** CommandPlugin.Output in ListCommandInvocations: "Maximum length of 2500". */
export const PLUGIN_OUTPUT_LIMIT = 2_500;
export const MAX_INSTANCE_IDS = 50;
/** MaxDocumentSizeExceeded: "The size limit of a document is 64 KB" (SSM API reference), document and parameters together. */
export const MAX_DOCUMENT_BYTES = 64 * 1024;

/** What the agent host answers for one run of a step. */
interface AgentResult {
  readonly id: number;
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;
}
const AGENT_HOST = fileURLToPath(new URL('./agent-host.mjs', import.meta.url));

/** DescribeInstanceInformation's filter keys besides tag-key and tag:<key> (API reference, InstanceInformationStringFilter). */
const FILTER_KEYS = new Set(['ActivationIds', 'AgentVersion', 'AssociationStatus', 'IamRole', 'InstanceIds', 'PingStatus', 'PlatformTypes', 'ResourceType', 'SourceIds', 'SourceTypes']);
/** The legacy InstanceInformationFilterList's keys (InstanceInformationFilter): no tags. */
const LEGACY_FILTER_KEYS = new Set(['InstanceIds', 'AgentVersion', 'PingStatus', 'PlatformTypes', 'ActivationIds', 'IamRole', 'ResourceType', 'AssociationStatus']);
/** The values the reference allows for the filter keys that have a fixed set. */
const FILTER_VALUES: Readonly<Record<string, readonly string[]>> = {
  AssociationStatus: ['Success', 'Pending', 'Failed'],
  PingStatus: ['Online', 'ConnectionLost', 'Inactive'],
  PlatformTypes: ['Windows', 'Linux', 'MacOS'],
  ResourceType: ['EC2Instance', 'ManagedInstance'],
  SourceTypes: ['AWS::EC2::Instance', 'AWS::SSM::ManagedInstance', 'AWS::IoT::Thing', 'Microsoft.Compute/virtualMachines'],
};

/** The access key id an emulated instance signs its S3 uploads with (its instance profile's). */
export function instanceAccessKeyId(instanceId: string): string {
  return `ASIA${instanceId.replace(/[^0-9a-z]/gi, '').toUpperCase()}`.slice(0, 20);
}

/** Realistic delays, drawn uniformly from each range with a seeded generator (repeatable runs). */
export interface Latency {
  /** Every API call is answered after this many ms (SSM answers in tens of ms). */
  readonly apiMs?: readonly [number, number];
  /** A command's invocation is final no earlier than this many ms after SendCommand (1-3 s on AWS). */
  readonly commandMs?: readonly [number, number];
  readonly seed?: number;
}

export interface EmulatedInstance {
  readonly id: string;
  readonly tags?: Readonly<Record<string, string>>;
  /** Paths as the instance sees them → real paths on this machine. */
  readonly paths?: Readonly<Record<string, string>>;
  /**
   * An offline instance (its agent lost the connection) is listed by DescribeInstanceInformation
   * as ConnectionLost and never runs anything: its invocations stay Pending until the command's
   * delivery timeout, then end TimedOut (DeliveryTimedOut).
   */
  readonly online?: boolean;
  /** Linux by default. */
  readonly platform?: 'Linux' | 'Windows' | 'MacOS';
  /**
   * The SSM Agent's version (DEFAULT_AGENT_VERSION when absent). An agent older than
   * ENV_VAR_AGENT_VERSION does not know `interpolationType: ENV_VAR`: it runs the script without the
   * `SSM_<Parameter>` variables, as the real one does.
   */
  readonly agentVersion?: string;
}

/** The first SSM Agent that exports ENV_VAR parameters (the SSM document reference, interpolationType). */
const ENV_VAR_AGENT_VERSION = '3.3.2746.0';
export const DEFAULT_AGENT_VERSION = '3.3.2746.0';

/** Whether dotted version a is at least b. */
function atLeast(a: string, b: string): boolean {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return d > 0;
  }
  return true;
}

export interface StoredParameter {
  readonly type: 'String' | 'StringList' | 'SecureString';
  readonly value: string;
}

export interface SsmEndpointOptions {
  readonly documentPath: string;
  readonly documentName: string;
  readonly instances: readonly EmulatedInstance[];
  /** Parameter Store content, for GetParameters (what @middy/ssm reads). */
  readonly parameters?: Readonly<Record<string, StoredParameter>>;
  /** GetCommandInvocation answers InvocationDoesNotExist this many times per invocation (default 1). */
  readonly notFoundPolls?: number;
  /** Polls answered Pending before InProgress (default 1). */
  readonly pendingPolls?: number;
  readonly region?: string;
  readonly latency?: Latency;
  /** Calls per second above which an operation answers ThrottlingException (token bucket, burst of one second). */
  readonly rateLimits?: Readonly<Record<string, number>>;
  /** Where the agent uploads output when SendCommand names an OutputS3BucketName. */
  readonly s3?: { readonly endpoint: string };
  /**
   * A DIAGNOSTIC for benchmarks, never for tests of behaviour: instances with the same key share
   * one run of each command's document (the first one's), each getting its output as its own. It
   * takes the instances' document CPU out of a measurement, e.g. where many emulated instances
   * share a few HAProxy processes and the documents' CPU would otherwise dominate.
   */
  readonly shareRunsBy?: (instanceId: string) => string;
}

export interface CallRecord {
  readonly operation: string;
  readonly body: unknown;
  /** HTTP status of the answer; 400 for errors such as throttling. */
  readonly status: number;
  readonly error?: string;
}

export type InvocationStatus = 'Pending' | 'InProgress' | 'Delayed' | 'Success' | 'Failed' | 'TimedOut' | 'Cancelled';

export interface InvocationRecord {
  readonly commandId: string;
  readonly instanceId: string;
  readonly parameters: Readonly<Record<string, string>>;
  /** The S3 object the agent uploaded stdout to, when the command asked for S3 output. */
  readonly outputKey: string | undefined;
  /** Whether the script was started on this instance. */
  readonly ran: boolean;
  /** Answers that did not show it yet: InvocationDoesNotExist, or left out of ListCommandInvocations. */
  readonly hidden: number;
  /** When SendCommand created it, when it may be final at the earliest (the command latency), when its script ended (ms since the epoch). */
  readonly sentAt: number;
  readonly readyAt: number;
  readonly endedAt: number | undefined;
  readonly exitCode: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Sees one API request (operation name and parsed JSON body) before it is handled. */
export type RequestListener = (operation: string, body: Readonly<Record<string, unknown>>) => void;

type Fault =
  | { readonly kind: 'fail'; readonly message: string }
  | { readonly kind: 'undeliverable' }
  | { readonly kind: 'timeout'; readonly polls: number; readonly afterRunning: boolean }
  | { readonly kind: 'delay'; readonly polls: number }
  | { readonly kind: 'status'; readonly status: InvocationStatus; readonly details: string };

export interface SsmEndpoint {
  /** `http://127.0.0.1:<port>` for the SDK's `endpoint`. */
  readonly url: string;
  readonly calls: readonly CallRecord[];
  /** The next `times` calls of `operation` (e.g. `SendCommand`, or `*`) answer ThrottlingException. */
  throttle(operation: string, times: number): void;
  /** Invocations on this instance fail without running (as when the agent reports a failure). */
  failInstance(instanceId: string, message?: string): void;
  /** Invocations on this instance end Undeliverable (the node does not answer). */
  undeliverable(instanceId: string): void;
  /**
   * Invocations on this instance stay InProgress for `polls` polls, then end TimedOut
   * (ExecutionTimedOut). By default the script never starts; with `afterRunning` it runs to its
   * end first, so the caller sees a timeout for a command whose effect did land (an outcome it
   * cannot know).
   */
  timeOut(instanceId: string, polls?: number, options?: { readonly afterRunning?: boolean }): void;
  /**
   * Invocations created on this instance from now on answer InvocationDoesNotExist for `polls`
   * polls (instead of the endpoint's `notFoundPolls`); the script still runs at once, as the agent
   * may run a command before the API lists its invocation.
   */
  invocationNotFound(instanceId: string, polls: number): void;
  /** Invocations on this instance report Delayed for `polls` polls before they run. */
  delay(instanceId: string, polls: number): void;
  /** Invocations on this instance end with this status without running (e.g. Cancelled, Terminated). */
  forceStatus(instanceId: string, status: InvocationStatus, details: string): void;
  clearFaults(): void;
  /** Creates or replaces a Parameter Store parameter. */
  setParameter(name: string, parameter: StoredParameter): void;
  /** Changes an instance from now on: its agent version, its tags, online or not. */
  updateInstance(instanceId: string, patch: Partial<Omit<EmulatedInstance, 'id'>>): void;
  /**
   * Called with every well-formed API request before throttling and faults apply, so that a fault
   * armed by the listener already applies to that request. Returns an unsubscribe function.
   */
  onRequest(listener: RequestListener): () => void;
  invocations(): readonly InvocationRecord[];
  /** CPU seconds the instances' agents and the steps they ran have used so far (what each instance would spend on its own cores). */
  agentsCpuSeconds(): number;
  close(): Promise<void>;
}

interface DocumentParameter {
  readonly type: string;
  readonly default?: unknown;
  readonly allowedPattern?: string;
  readonly allowedValues?: readonly string[];
  readonly interpolationType?: string;
}

interface ShellStep {
  readonly name: string;
  readonly runCommand: readonly string[];
  readonly timeoutSeconds: number;
}

interface LoadedDocument {
  readonly parameters: ReadonlyMap<string, DocumentParameter>;
  readonly steps: readonly ShellStep[];
  /** Bytes of the document content as deployed (CloudFormation sends it as JSON). */
  readonly contentBytes: number;
}

class ApiError extends Error {
  constructor(
    readonly type: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Loads and checks the Command document as SSM would on CreateDocument. */
export function loadCommandDocument(path: string): LoadedDocument {
  const doc: unknown = parseYaml(readFileSync(path, 'utf8'));
  if (!isRecord(doc) || doc.schemaVersion !== '2.2') throw new Error(`${path}: a Command document with schemaVersion '2.2' is expected`);
  const parameters = new Map<string, DocumentParameter>();
  const declared = isRecord(doc.parameters) ? doc.parameters : {};
  for (const [name, raw] of Object.entries(declared)) {
    if (!/^[a-zA-Z0-9]+$/.test(name)) throw new Error(`${path}: invalid parameter name ${name}`);
    if (!isRecord(raw) || typeof raw.type !== 'string') throw new Error(`${path}: parameter ${name} needs a type`);
    if (raw.interpolationType !== undefined && raw.interpolationType !== 'ENV_VAR') throw new Error(`${path}: parameter ${name}: unknown interpolationType`);
    const param: DocumentParameter = {
      type: raw.type,
      ...(raw.default === undefined ? {} : { default: raw.default }),
      ...(typeof raw.allowedPattern === 'string' ? { allowedPattern: raw.allowedPattern } : {}),
      ...(Array.isArray(raw.allowedValues) ? { allowedValues: raw.allowedValues.map(String) } : {}),
      ...(raw.interpolationType === 'ENV_VAR' ? { interpolationType: 'ENV_VAR' } : {}),
    };
    if (param.allowedPattern !== undefined) new RegExp(param.allowedPattern);
    parameters.set(name, param);
  }
  if (!Array.isArray(doc.mainSteps) || doc.mainSteps.length === 0) throw new Error(`${path}: mainSteps are required`);
  const steps = doc.mainSteps.map((step: unknown): ShellStep => {
    if (!isRecord(step) || step.action !== 'aws:runShellScript' || typeof step.name !== 'string' || !isRecord(step.inputs)) {
      throw new Error(`${path}: only aws:runShellScript steps are emulated`);
    }
    const lines = step.inputs.runCommand;
    if (!Array.isArray(lines) || !lines.every((l): l is string => typeof l === 'string')) throw new Error(`${path}: ${step.name}: runCommand must be a list of strings`);
    const timeout = Number(step.inputs.timeoutSeconds ?? 3600);
    return { name: step.name, runCommand: lines, timeoutSeconds: Number.isFinite(timeout) ? timeout : 3600 };
  });
  return { parameters, steps, contentBytes: Buffer.byteLength(JSON.stringify(doc)) };
}

/** Bytes a SendCommand weighs against the 64 KB quota: the document content and every parameter value. */
export function commandBytes(documentBytes: number, parameters: Readonly<Record<string, string>>): number {
  return documentBytes + Object.values(parameters).reduce((n, v) => n + Buffer.byteLength(v), 0);
}

/** The SSM Agent's text substitution of `{{ name }}` (it happens whatever the interpolationType). */
function substitute(text: string, values: Readonly<Record<string, string>>): string {
  let out = text;
  for (const [name, value] of Object.entries(values)) {
    out = out.replace(new RegExp(`{{\\s*${name}\\s*}}`, 'g'), () => value);
  }
  return out;
}

interface Invocation {
  readonly commandId: string;
  readonly instanceId: string;
  readonly parameters: Record<string, string>;
  readonly fault: Fault | undefined;
  readonly startedAt: Date;
  /** Never final before this instant (ms since the epoch): the command's completion latency. */
  readonly readyAt: number;
  /** The command's TimeoutSeconds from SendCommand: an offline instance's invocation ends DeliveryTimedOut then. */
  readonly deliveryDeadline: number;
  readonly documentName: string;
  readonly comment: string;
  /** Statuses follow time (latency given), not the number of polls. */
  readonly timed: boolean;
  readonly output: { readonly bucket: string; readonly prefix: string } | undefined;
  outputKey: string | undefined;
  /** InvocationDoesNotExist answers still to give. */
  notFoundLeft: number;
  hidden: number;
  /** Polls answered since the invocation became visible. */
  polls: number;
  ran: boolean;
  finished: boolean;
  exitCode: number | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
  endedAt: Date | undefined;
  /** Set once the final status was reported, so that it never changes afterwards. */
  reported: { status: InvocationStatus; details: string } | undefined;
  /** Invocations of the same command that take this one's run as theirs (`shareRunsBy`). */
  readonly followers: Invocation[];
}

export async function startSsmEndpoint(options: SsmEndpointOptions): Promise<SsmEndpoint> {
  const document = loadCommandDocument(options.documentPath);
  const instances = new Map(options.instances.map((i) => [i.id, i]));
  const region = options.region ?? 'us-east-1';
  const notFoundPolls = options.notFoundPolls ?? 1;
  const pendingPolls = options.pendingPolls ?? 1;
  const root = makeTempDir('hw-ssm');
  const calls: CallRecord[] = [];
  const throttles = new Map<string, number>();
  const faults = new Map<string, Fault>();
  const notFoundOverrides = new Map<string, number>();
  const listeners = new Set<RequestListener>();
  const invocations = new Map<string, Invocation>();
  const commandIds = new Set<string>();
  // The instances' agents run each step in a process of their own (agent-host.mjs).
  let agentHost: ChildProcess | undefined;
  let nextRun = 1;
  const runsAwaited = new Map<number, (result: AgentResult) => void>();
  const agents = (): ChildProcess => {
    if (agentHost === undefined) {
      const host = fork(AGENT_HOST, [], { execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      host.on('message', (message: AgentResult) => {
        const done = runsAwaited.get(message.id);
        runsAwaited.delete(message.id);
        done?.(message);
      });
      agentHost = host;
    }
    return agentHost;
  };
  const stored = new Map<string, StoredParameter>(Object.entries(options.parameters ?? {}));
  // Park-Miller: the same seed gives the same delays, so benchmark runs can be compared.
  let seed = (options.latency?.seed ?? 1) % 2147483647 || 1;
  const random = (): number => {
    seed = (seed * 48271) % 2147483647;
    return seed / 2147483647;
  };
  const draw = (range: readonly [number, number] | undefined): number => (range === undefined ? 0 : range[0] + (range[1] - range[0]) * random());
  const buckets = new Map<string, { tokens: number; at: number }>();
  const overRate = (operation: string): boolean => {
    const rate = options.rateLimits?.[operation];
    if (rate === undefined) return false;
    const now = Date.now();
    const b = buckets.get(operation) ?? { tokens: rate, at: now };
    b.tokens = Math.min(rate, b.tokens + ((now - b.at) / 1000) * rate);
    b.at = now;
    buckets.set(operation, b);
    if (b.tokens < 1) return true;
    b.tokens -= 1;
    return false;
  };
  const s3Clients = new Map<string, S3Client>();
  const s3For = (instanceId: string): S3Client | undefined => {
    if (options.s3 === undefined) return undefined;
    let client = s3Clients.get(instanceId);
    if (client === undefined) {
      client = new S3Client({
        endpoint: options.s3.endpoint,
        forcePathStyle: true,
        region,
        credentials: { accessKeyId: instanceAccessKeyId(instanceId), secretAccessKey: 'instance-profile-secret-not-real' },
        maxAttempts: 2,
      });
      s3Clients.set(instanceId, client);
    }
    return client;
  };
  /** What the agent does once the plugin ended: upload stdout and stderr to the bucket, then report. */
  const upload = async (inv: Invocation, stepName: string): Promise<void> => {
    const client = s3For(inv.instanceId);
    if (inv.output === undefined || client === undefined) return;
    const base = `${inv.output.prefix === '' ? '' : `${inv.output.prefix}/`}${inv.commandId}/${inv.instanceId}/awsrunShellScript/${stepName}`;
    try {
      await client.send(new PutObjectCommand({ Bucket: inv.output.bucket, Key: `${base}/stdout`, Body: inv.stdout }));
      if (inv.stderr !== '') await client.send(new PutObjectCommand({ Bucket: inv.output.bucket, Key: `${base}/stderr`, Body: inv.stderr }));
      inv.outputKey = `${base}/stdout`;
    } catch {
      // As the agent: a failed upload is only in the agent's log; the invocation's status is unchanged.
      inv.outputKey = `${base}/stdout`;
    }
  };

  const run = (inv: Invocation, instance: EmulatedInstance): void => {
    const step = document.steps[0];
    if (step === undefined) return;
    const dir = join(root, inv.commandId, inv.instanceId, 'awsrunShellScript', step.name);
    mkdirSync(dir, { recursive: true });
    const script = join(dir, '_script.sh');
    writeFileSync(script, substitute(step.runCommand.join('\n'), inv.parameters), { mode: 0o755 });
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      HOME: dir,
      AWS_SSM_INSTANCE_ID: inv.instanceId,
      AWS_SSM_REGION_NAME: region,
    };
    const knowsEnvVar = atLeast(instance.agentVersion ?? DEFAULT_AGENT_VERSION, ENV_VAR_AGENT_VERSION);
    for (const [name, param] of document.parameters) {
      const value = inv.parameters[name];
      if (knowsEnvVar && param.interpolationType === 'ENV_VAR' && value !== undefined) env[`SSM_${name}`] = instance.paths?.[value] ?? value;
    }
    inv.ran = true;
    const id = nextRun++;
    runsAwaited.set(id, (result) => {
      for (const one of [inv, ...inv.followers]) {
        Object.assign(one, { ran: true, exitCode: result.code, endedAt: new Date(), stdout: result.stdout, stderr: result.stderr, timedOut: result.timedOut });
        void upload(one, step.name).finally(() => {
          one.finished = true;
        });
      }
    });
    agents().send({ id, script, cwd: dir, env, timeoutMs: step.timeoutSeconds * 1000 });
  };

  const sendCommand = (body: Record<string, unknown>): unknown => {
    if (body.DocumentName !== options.documentName) throw new ApiError('InvalidDocument', `Document ${String(body.DocumentName)} does not exist`);
    const hasIds = Array.isArray(body.InstanceIds) && body.InstanceIds.length > 0;
    const hasTargets = Array.isArray(body.Targets) && body.Targets.length > 0;
    if (hasIds === hasTargets) throw new ApiError('ValidationException', 'Exactly one of InstanceIds and Targets must be given');
    let ids: string[];
    if (hasIds && Array.isArray(body.InstanceIds)) {
      ids = body.InstanceIds.map(String);
      if (ids.length > MAX_INSTANCE_IDS) {
        throw new ApiError('ValidationException', `1 validation error detected: Value at 'instanceIds' failed to satisfy constraint: Member must have length less than or equal to ${MAX_INSTANCE_IDS}`);
      }
      if (new Set(ids).size !== ids.length) throw new ApiError('DuplicateInstanceId', 'Instance ids must be unique');
      const unknown = ids.filter((id) => !instances.has(id));
      if (unknown.length > 0) throw new ApiError('InvalidInstanceId', `Instances [${unknown.join(', ')}] not in a valid state for account`);
    } else {
      ids = targetsToIds(body.Targets);
    }
    const timeout = body.TimeoutSeconds === undefined ? 3600 : Number(body.TimeoutSeconds);
    if (!Number.isInteger(timeout) || timeout < 30 || timeout > 2_592_000) throw new ApiError('ValidationException', 'TimeoutSeconds must be between 30 and 2592000');
    if (body.Comment !== undefined && String(body.Comment).length > 100) throw new ApiError('ValidationException', "Value at 'comment' failed to satisfy constraint: Member must have length less than or equal to 100");
    for (const key of ['MaxConcurrency', 'MaxErrors'] as const) {
      if (body[key] !== undefined && !/^([1-9][0-9]*|[0]|[1-9][0-9]%|[0-9]%|100%)$/.test(String(body[key]))) throw new ApiError('ValidationException', `${key} is not valid`);
    }
    const parameters = resolveParameters(body.Parameters);
    const size = commandBytes(document.contentBytes, parameters);
    if (size > MAX_DOCUMENT_BYTES) throw new ApiError('MaxDocumentSizeExceeded', `The size limit of a document is 64 KB (document and parameters: ${size} bytes)`);
    let output: Invocation['output'];
    if (body.OutputS3BucketName !== undefined) {
      const bucket = String(body.OutputS3BucketName);
      const prefix = body.OutputS3KeyPrefix === undefined ? '' : String(body.OutputS3KeyPrefix);
      if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) throw new ApiError('InvalidOutputFolder', `${bucket} is not a bucket name`);
      if (prefix.length > 500) throw new ApiError('ValidationException', 'OutputS3KeyPrefix must be at most 500 characters');
      if (options.s3 === undefined) throw new ApiError('InvalidOutputFolder', 'S3 output is not emulated by this endpoint (start it with s3)');
      output = { bucket, prefix: prefix.replace(/\/+$/, '') };
    }
    const commandId = randomUUID();
    commandIds.add(commandId);
    const leaders = new Map<string, Invocation>();
    for (const id of ids) {
      const inv: Invocation = {
        commandId,
        instanceId: id,
        parameters,
        fault: faults.get(id),
        startedAt: new Date(),
        readyAt: Date.now() + draw(options.latency?.commandMs),
        deliveryDeadline: Date.now() + timeout * 1000,
        documentName: options.documentName,
        comment: body.Comment === undefined ? '' : String(body.Comment),
        timed: options.latency?.commandMs !== undefined,
        output,
        outputKey: undefined,
        notFoundLeft: notFoundOverrides.get(id) ?? (options.latency?.commandMs === undefined ? notFoundPolls : 0),
        hidden: 0,
        polls: 0,
        ran: false,
        finished: false,
        exitCode: null,
        timedOut: false,
        stdout: '',
        stderr: '',
        endedAt: undefined,
        reported: undefined,
        followers: [],
      };
      invocations.set(`${commandId}/${id}`, inv);
      const instance = instances.get(id);
      const runsNow = inv.fault === undefined || (inv.fault.kind === 'timeout' && inv.fault.afterRunning);
      if (runsNow && instance !== undefined && instance.online !== false) {
        const key = options.shareRunsBy?.(id);
        const leader = key === undefined ? undefined : leaders.get(key);
        if (leader !== undefined) leader.followers.push(inv);
        else {
          if (key !== undefined) leaders.set(key, inv);
          // SendCommand answers at once; each instance starts its run on its own, after it.
          setImmediate(() => run(inv, instance));
        }
      }
    }
    const now = Date.now() / 1000;
    return {
      Command: {
        CommandId: commandId,
        DocumentName: options.documentName,
        DocumentVersion: '$DEFAULT',
        Comment: body.Comment ?? '',
        ExpiresAfter: now + timeout,
        Parameters: Object.fromEntries(Object.entries(parameters).map(([k, v]) => [k, [v]])),
        InstanceIds: hasIds ? ids : [],
        Targets: hasTargets ? body.Targets : [],
        RequestedDateTime: now,
        Status: 'Pending',
        StatusDetails: 'Pending',
        MaxConcurrency: body.MaxConcurrency ?? '50',
        MaxErrors: body.MaxErrors ?? '0',
        TargetCount: ids.length,
        CompletedCount: 0,
        ErrorCount: 0,
        DeliveryTimedOutCount: 0,
        TimeoutSeconds: timeout,
      },
    };
  };

  const targetsToIds = (targets: unknown): string[] => {
    if (!Array.isArray(targets) || targets.length !== 1 || !isRecord(targets[0])) throw new ApiError('InvalidParameters', 'Exactly one tag target is emulated');
    const key = String(targets[0].Key);
    const values = Array.isArray(targets[0].Values) ? targets[0].Values.map(String) : [];
    const tag = /^tag:(.+)$/.exec(key)?.[1];
    if (tag === undefined) throw new ApiError('InvalidParameters', `Target key ${key} is not emulated`);
    return [...instances.values()].filter((i) => values.includes(i.tags?.[tag] ?? '\u0000')).map((i) => i.id);
  };

  /** Applies defaults and checks every value as SSM does before anything is sent. */
  const resolveParameters = (given: unknown): Record<string, string> => {
    const values: Record<string, string> = {};
    const supplied = isRecord(given) ? given : {};
    for (const name of Object.keys(supplied)) {
      if (!document.parameters.has(name)) throw new ApiError('InvalidParameters', `Parameter "${name}" is not defined in document ${options.documentName}`);
    }
    for (const [name, param] of document.parameters) {
      const raw = supplied[name];
      let value: string;
      if (raw === undefined) {
        if (param.default === undefined) throw new ApiError('InvalidParameters', `Parameter "${name}" is required but was not given`);
        value = String(param.default);
      } else {
        if (!Array.isArray(raw) || raw.length !== 1 || typeof raw[0] !== 'string') {
          throw new ApiError('InvalidParameters', `Parameter "${name}" of type ${param.type} takes exactly one string value`);
        }
        value = raw[0];
      }
      if (param.allowedPattern !== undefined && !new RegExp(param.allowedPattern).test(value)) {
        throw new ApiError('InvalidParameters', `Parameter "${name}" "${value.slice(0, 200)}" fails to match pattern "${param.allowedPattern.slice(0, 60)}..."`);
      }
      if (param.allowedValues !== undefined && !param.allowedValues.includes(value)) {
        throw new ApiError('InvalidParameters', `Parameter "${name}" "${value}" is not an allowed value`);
      }
      values[name] = value;
    }
    return values;
  };

  /** Advances one invocation by one poll and describes it as GetCommandInvocation does. */
  const statusOf = (inv: Invocation): { status: InvocationStatus; details: string } => {
    if (inv.reported !== undefined) return inv.reported;
    inv.polls++;
    const afterPending = inv.polls - pendingPolls;
    const fault = inv.fault;
    let result: { status: InvocationStatus; details: string } | undefined;
    if (fault === undefined && instances.get(inv.instanceId)?.online === false) {
      // Never delivered: Pending until the command's delivery timeout.
      result = Date.now() < inv.deliveryDeadline ? { status: 'Pending', details: 'Pending' } : { status: 'TimedOut', details: 'DeliveryTimedOut' };
    } else if (inv.timed && fault === undefined) {
      // With latency, time decides as on AWS: Pending while the agent picks the command up (the
      // first quarter of its duration), InProgress until it is done, whatever the number of polls.
      const now = Date.now();
      const span = inv.readyAt - inv.startedAt.getTime();
      if (now < inv.startedAt.getTime() + span / 4) result = { status: 'Pending', details: 'Pending' };
      else if (!inv.finished || now < inv.readyAt) result = { status: 'InProgress', details: 'InProgress' };
      else if (inv.timedOut) result = { status: 'TimedOut', details: 'ExecutionTimedOut' };
      else result = inv.exitCode === 0 ? { status: 'Success', details: 'Success' } : { status: 'Failed', details: 'Failed' };
    } else if (afterPending <= 0) result = { status: 'Pending', details: 'Pending' };
    else if (fault?.kind === 'delay' && afterPending <= fault.polls) result = { status: 'Delayed', details: 'Delayed' };
    else if (fault?.kind === 'undeliverable') result = { status: 'Failed', details: 'Undeliverable' };
    else if (fault?.kind === 'fail') result = { status: 'Failed', details: 'Failed' };
    else if (fault?.kind === 'status') result = { status: fault.status, details: fault.details };
    else if (fault?.kind === 'timeout') {
      const stillRunning = fault.afterRunning && !inv.finished;
      result = afterPending <= fault.polls || stillRunning ? { status: 'InProgress', details: 'InProgress' } : { status: 'TimedOut', details: 'ExecutionTimedOut' };
    } else {
      if (fault?.kind === 'delay' && !inv.ran) {
        const instance = instances.get(inv.instanceId);
        if (instance !== undefined) run(inv, instance);
      }
      // At least one InProgress answer, then the real outcome once the script has ended.
      const firstRunningPoll = fault?.kind === 'delay' ? fault.polls + 1 : 1;
      if (!inv.finished || afterPending <= firstRunningPoll || Date.now() < inv.readyAt) result = { status: 'InProgress', details: 'InProgress' };
      else if (inv.timedOut) result = { status: 'TimedOut', details: 'ExecutionTimedOut' };
      else result = inv.exitCode === 0 ? { status: 'Success', details: 'Success' } : { status: 'Failed', details: 'Failed' };
    }
    if (!['Pending', 'InProgress', 'Delayed'].includes(result.status)) inv.reported = result;
    return result;
  };

  /**
   * Whether an invocation shows yet: right after SendCommand it does not (for a tenth of the
   * command's latency, or for the number of answers armed by `notFoundPolls`/`invocationNotFound`).
   * Every answer that does not show it counts.
   */
  const visible = (inv: Invocation): boolean => {
    const early = inv.timed && !notFoundOverrides.has(inv.instanceId) && Date.now() < inv.startedAt.getTime() + (inv.readyAt - inv.startedAt.getTime()) / 10;
    if (early || inv.notFoundLeft > 0) {
      if (!early) inv.notFoundLeft--;
      inv.hidden++;
      return false;
    }
    return true;
  };

  /** One poll of an invocation: its status, and once final what it printed, as the agent reported it. */
  const viewOf = (inv: Invocation) => {
    const { status, details } = statusOf(inv);
    const final = !['Pending', 'InProgress', 'Delayed'].includes(status);
    const stdout = final ? (inv.fault === undefined || inv.fault.kind === 'delay' ? inv.stdout : '') : '';
    let stderr = final ? inv.stderr : '';
    if (final && inv.fault?.kind === 'fail') stderr = inv.fault.message;
    const responseCode = final && inv.ran && !inv.timedOut && inv.fault?.kind !== 'timeout' && inv.exitCode !== null ? inv.exitCode : -1;
    const stdoutUrl = final && inv.output !== undefined && inv.outputKey !== undefined ? s3Url(inv.output.bucket, inv.outputKey) : '';
    const stderrUrl = final && inv.output !== undefined && inv.outputKey !== undefined && stderr !== '' ? s3Url(inv.output.bucket, inv.outputKey.replace(/stdout$/, 'stderr')) : '';
    return { status, details, final, stdout, stderr, responseCode, stdoutUrl, stderrUrl };
  };

  const getCommandInvocation = (body: Record<string, unknown>): unknown => {
    const commandId = String(body.CommandId ?? '');
    const instanceId = String(body.InstanceId ?? '');
    if (body.PluginName !== undefined && !document.steps.some((s) => s.name === body.PluginName)) throw new ApiError('InvalidPluginName', `No step named ${String(body.PluginName)}`);
    if (body.PluginName === undefined && document.steps.length > 1) throw new ApiError('InvalidPluginName', 'PluginName is required for a document with several steps');
    const inv = invocations.get(`${commandId}/${instanceId}`);
    if (inv === undefined) throw new ApiError('InvocationDoesNotExist', '');
    if (!visible(inv)) throw new ApiError('InvocationDoesNotExist', '');
    const view = viewOf(inv);
    return {
      CommandId: commandId,
      InstanceId: instanceId,
      Comment: inv.comment,
      DocumentName: inv.documentName,
      DocumentVersion: '$DEFAULT',
      PluginName: document.steps[0]?.name ?? '',
      ResponseCode: view.responseCode,
      ExecutionStartDateTime: inv.ran ? inv.startedAt.toISOString() : '',
      ExecutionElapsedTime: inv.endedAt === undefined ? '' : `PT${((inv.endedAt.getTime() - inv.startedAt.getTime()) / 1000).toFixed(3)}S`,
      ExecutionEndDateTime: view.final && inv.endedAt !== undefined ? inv.endedAt.toISOString() : '',
      Status: view.status,
      StatusDetails: view.details,
      StandardOutputContent: view.stdout.slice(0, STDOUT_LIMIT),
      StandardOutputUrl: view.stdoutUrl,
      StandardErrorContent: view.stderr.slice(0, STDERR_LIMIT),
      StandardErrorUrl: view.stderrUrl,
      CloudWatchOutputConfig: { CloudWatchLogGroupName: '', CloudWatchOutputEnabled: false },
    };
  };

  /**
   * Paging: the first call of a listing takes a snapshot, and its NextToken (opaque, bound to the
   * query) serves the following pages from it, so that one listing is one consistent view.
   */
  const snapshots = new Map<string, readonly unknown[]>();
  const page = (items: () => readonly unknown[], token: unknown, query: string, max: number): { readonly items: readonly unknown[]; readonly next: string | undefined } => {
    let all: readonly unknown[];
    let start = 0;
    let id: string;
    if (token === undefined) {
      all = items();
      id = randomUUID();
    } else {
      let parsed: unknown;
      try {
        parsed = JSON.parse(Buffer.from(String(token), 'base64url').toString('utf8'));
      } catch {
        parsed = undefined;
      }
      const found = isRecord(parsed) && typeof parsed.id === 'string' ? snapshots.get(parsed.id) : undefined;
      if (!isRecord(parsed) || found === undefined || parsed.query !== query || typeof parsed.offset !== 'number' || !Number.isInteger(parsed.offset) || parsed.offset < 0) {
        throw new ApiError('InvalidNextToken', "The specified token isn't valid.");
      }
      all = found;
      start = parsed.offset;
      id = String(parsed.id);
    }
    if (start + max >= all.length) {
      snapshots.delete(id);
      return { items: all.slice(start), next: undefined };
    }
    snapshots.set(id, all);
    return { items: all.slice(start, start + max), next: Buffer.from(JSON.stringify({ id, query, offset: start + max })).toString('base64url') };
  };
  /** MaxResults within the reference's valid range, or its default. */
  const maxResults = (value: unknown, min: number, max: number, fallback: number): number => {
    if (value === undefined) return fallback;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      throw new ApiError('ValidationException', `1 validation error detected: Value '${String(value)}' at 'maxResults' failed to satisfy constraint: Member must have value ${typeof value === 'number' && value > max ? `less than or equal to ${max}` : `greater than or equal to ${min}`}`);
    }
    return value;
  };

  const COMMAND_FILTER_KEYS = new Set(['InvokedAfter', 'InvokedBefore', 'Status', 'ExecutionStage', 'DocumentName']);
  const INVOCATION_STATUSES = new Set(['Pending', 'InProgress', 'Success', 'Cancelled', 'Failed', 'TimedOut', 'Cancelling']);

  /**
   * ListCommandInvocations: the invocations of one command (or of all), 1-50 a page (default 50),
   * with CommandPlugins (status, exit code, the step's output cut at 2,500 characters, the S3 URLs)
   * only when Details is true. Each listing is one poll of each invocation it shows.
   */
  const listCommandInvocations = (body: Record<string, unknown>): unknown => {
    const commandId = body.CommandId === undefined ? undefined : String(body.CommandId);
    if (commandId !== undefined && commandId.length !== 36) throw new ApiError('ValidationException', "1 validation error detected: Value at 'commandId' failed to satisfy constraint: Member must have length 36");
    if (commandId !== undefined && !commandIds.has(commandId)) throw new ApiError('InvalidCommandId', '');
    const instanceId = body.InstanceId === undefined ? undefined : String(body.InstanceId);
    if (instanceId !== undefined && !/(^i-(\w{8}|\w{17})$)|(^mi-\w{17}$)/.test(instanceId)) throw new ApiError('ValidationException', "1 validation error detected: Value at 'instanceId' failed to satisfy constraint: Member must satisfy regular expression pattern");
    const max = maxResults(body.MaxResults, 1, 50, 50);
    const filters = body.Filters === undefined ? [] : Array.isArray(body.Filters) ? body.Filters : null;
    if (filters === null || (body.Filters !== undefined && (filters.length < 1 || filters.length > 5))) throw new ApiError('ValidationException', 'Filters must hold 1 to 5 filters');
    const tests: ((inv: Invocation, status: string) => boolean)[] = [];
    for (const f of filters) {
      if (!isRecord(f) || typeof f.key !== 'string' || typeof f.value !== 'string' || f.value === '') throw new ApiError('ValidationException', 'A filter needs a key and a value');
      const value = f.value;
      if (!COMMAND_FILTER_KEYS.has(f.key) || f.key === 'ExecutionStage') throw new ApiError('InvalidFilterKey', '');
      if (f.key === 'Status') {
        if (!INVOCATION_STATUSES.has(value)) throw new ApiError('InvalidFilterValue', `${value} is not a status`);
        tests.push((_inv, status) => status === value);
      } else if (f.key === 'DocumentName') tests.push((inv) => inv.documentName === value);
      else {
        const at = Date.parse(value);
        if (Number.isNaN(at)) throw new ApiError('InvalidFilterValue', `${value} is not a timestamp`);
        tests.push(f.key === 'InvokedAfter' ? (inv) => inv.startedAt.getTime() >= at : (inv) => inv.startedAt.getTime() <= at);
      }
    }
    const details = body.Details === true;
    const listing = (): Record<string, unknown>[] => {
      const shown: Record<string, unknown>[] = [];
      for (const inv of invocations.values()) {
        if ((commandId !== undefined && inv.commandId !== commandId) || (instanceId !== undefined && inv.instanceId !== instanceId)) continue;
        if (!visible(inv)) continue;
        const view = viewOf(inv);
        if (!tests.every((t) => t(inv, view.status))) continue;
        const step = document.steps[0]?.name ?? '';
        const output = view.final ? `${view.stdout}${view.stderr === '' ? '' : `\n----------ERROR-------\n${view.stderr}`}` : '';
        shown.push({
          CommandId: inv.commandId,
          InstanceId: inv.instanceId,
          InstanceName: '',
          Comment: inv.comment,
          DocumentName: inv.documentName,
          DocumentVersion: '$DEFAULT',
          RequestedDateTime: inv.startedAt.getTime() / 1000,
          Status: view.status,
          StatusDetails: view.details,
          TraceOutput: '',
          StandardOutputUrl: view.stdoutUrl,
          StandardErrorUrl: view.stderrUrl,
          CommandPlugins: details
            ? [
                {
                  Name: step,
                  Status: view.status,
                  StatusDetails: view.details,
                  ResponseCode: view.responseCode,
                  ...(inv.ran ? { ResponseStartDateTime: inv.startedAt.getTime() / 1000 } : {}),
                  ...(view.final && inv.endedAt !== undefined ? { ResponseFinishDateTime: inv.endedAt.getTime() / 1000 } : {}),
                  Output: output.slice(0, PLUGIN_OUTPUT_LIMIT),
                  StandardOutputUrl: view.stdoutUrl,
                  StandardErrorUrl: view.stderrUrl,
                  OutputS3BucketName: inv.output?.bucket ?? '',
                  OutputS3KeyPrefix: inv.output?.prefix ?? '',
                  OutputS3Region: inv.output === undefined ? '' : region,
                },
              ]
            : [],
          CloudWatchOutputConfig: { CloudWatchLogGroupName: '', CloudWatchOutputEnabled: false },
        });
      }
      return shown;
    };
    const { items, next } = page(listing, body.NextToken, JSON.stringify([commandId, instanceId, filters, details]), max);
    return { CommandInvocations: items, ...(next === undefined ? {} : { NextToken: next }) };
  };

  /** The URL form GetCommandInvocation gives (path style on the regional endpoint). */
  const s3Url = (bucket: string, key: string): string => `https://s3.${region}.amazonaws.com/${bucket}/${key.split('/').map(encodeURIComponent).join('/')}`;

  const getParameters = (body: Record<string, unknown>): unknown => {
    const names = Array.isArray(body.Names) ? body.Names.map(String) : [];
    if (names.length === 0 || names.length > 10) throw new ApiError('ValidationException', 'Names must hold 1 to 10 names');
    const decrypt = body.WithDecryption === true;
    const found = names.filter((n) => stored.has(n));
    return {
      Parameters: found.map((name) => {
        const p = stored.get(name);
        const value = p === undefined ? '' : p.type === 'SecureString' && !decrypt ? Buffer.from(`encrypted:${name}`).toString('base64') : p.value;
        return { Name: name, Type: p?.type ?? 'String', Value: value, Version: 1, LastModifiedDate: Date.now() / 1000, ARN: `arn:aws:ssm:${region}:000000000000:parameter${name.startsWith('/') ? '' : '/'}${name}`, DataType: 'text' };
      }),
      InvalidParameters: names.filter((n) => !stored.has(n)),
    };
  };

  /** What DescribeInstanceInformation tells of an instance, field by field as its filters read it. */
  const infoOf = (i: EmulatedInstance) => ({
    InstanceIds: i.id,
    AgentVersion: i.agentVersion ?? DEFAULT_AGENT_VERSION,
    PingStatus: i.online === false ? 'ConnectionLost' : 'Online',
    PlatformTypes: i.platform ?? 'Linux',
    ResourceType: 'EC2Instance',
    SourceIds: i.id,
    SourceTypes: 'AWS::EC2::Instance',
  });

  /**
   * DescribeInstanceInformation as the API reference has it: Filters (Key/Values, 1-100 values;
   * keys ActivationIds, AgentVersion, AssociationStatus, IamRole, InstanceIds, PingStatus,
   * PlatformTypes, ResourceType, SourceIds, SourceTypes, tag-key and tag:<key>; any other key
   * answers InvalidFilterKey), or the legacy InstanceInformationFilterList (key/valueSet, no tags),
   * never both; "Tag filters can't be combined with other filter types"; values of one filter
   * match any, filters all; MaxResults 5-50, 10 by default, NextToken for the rest. The reference
   * names no error for a tag filter combined with another type, nor for both lists at once: both
   * answer ValidationException here, so that no request the service may refuse passes the tests.
   */
  const describeInstanceInformation = (body: Record<string, unknown>): unknown => {
    if (body.Filters !== undefined && body.InstanceInformationFilterList !== undefined) {
      throw new ApiError('ValidationException', 'InstanceInformationFilterList and Filters cannot be used together');
    }
    const legacy = body.InstanceInformationFilterList !== undefined;
    const raw = legacy ? body.InstanceInformationFilterList : body.Filters;
    if (raw !== undefined && !Array.isArray(raw)) throw new ApiError('SerializationException', 'Filters must be a list');
    const filters = (Array.isArray(raw) ? raw : []).map((f: unknown) => {
      const key = isRecord(f) ? (legacy ? f.key : f.Key) : undefined;
      const values = isRecord(f) ? (legacy ? f.valueSet : f.Values) : undefined;
      if (typeof key !== 'string' || key === '' || !Array.isArray(values) || values.length < 1 || values.length > 100 || !values.every((v) => typeof v === 'string' && v !== '')) {
        throw new ApiError('ValidationException', 'Each filter needs a key and 1 to 100 non-empty values');
      }
      return { key, values: values.map(String) };
    });
    const isTag = (key: string): boolean => key === 'tag-key' || /^tag:.+$/.test(key);
    for (const { key, values } of filters) {
      if (legacy ? !LEGACY_FILTER_KEYS.has(key) : !isTag(key) && !FILTER_KEYS.has(key)) throw new ApiError('InvalidFilterKey', `${key} is not a valid filter key`);
      const allowed = FILTER_VALUES[key];
      const bad = allowed === undefined ? undefined : values.find((v) => !allowed.includes(v));
      if (bad !== undefined) throw new ApiError('InvalidInstanceInformationFilterValue', `${bad} is not a valid value for ${key}`);
      if (key === 'InstanceIds' && values.some((v) => !/^(i-(\w{8}|\w{17})|mi-\w{17})$/.test(v))) throw new ApiError('InvalidInstanceId', 'Instance ids must be i-… or mi-… ids');
    }
    if (filters.some((f) => isTag(f.key)) && filters.some((f) => !isTag(f.key))) throw new ApiError('ValidationException', "Tag filters can't be combined with other filter types");
    const max = maxResults(body.MaxResults, 5, 50, 10);
    const matches = (i: EmulatedInstance): boolean =>
      filters.every(({ key, values }) => {
        if (key === 'tag-key') return Object.keys(i.tags ?? {}).some((k) => values.includes(k));
        const tag = /^tag:(.+)$/.exec(key)?.[1];
        if (tag !== undefined) return i.tags?.[tag] !== undefined && values.includes(i.tags[tag]);
        const field = (infoOf(i) as Readonly<Record<string, string>>)[key];
        // ActivationIds, AssociationStatus, IamRole: an EC2 instance without an activation, association or Quick Setup role has none.
        return field !== undefined && values.includes(field);
      });
    const { items, next } = page(
      () =>
        [...instances.values()].filter(matches).map((i) => ({
          InstanceId: i.id,
          PingStatus: infoOf(i).PingStatus,
          // An instance that lost its connection was last seen a while ago.
          LastPingDateTime: (Date.now() - (i.online === false ? 3_600_000 : 30_000)) / 1000,
          AgentVersion: i.agentVersion ?? DEFAULT_AGENT_VERSION,
          IsLatestVersion: false,
          PlatformType: infoOf(i).PlatformTypes,
          PlatformName: i.platform === undefined || i.platform === 'Linux' ? 'Debian GNU/Linux' : i.platform,
          PlatformVersion: '12',
          ResourceType: 'EC2Instance',
          IPAddress: '127.0.0.1',
          ComputerName: `${i.id}.local`,
          SourceId: i.id,
          SourceType: 'AWS::EC2::Instance',
        })),
      body.NextToken,
      JSON.stringify(['DescribeInstanceInformation', filters, legacy]),
      max,
    );
    return { InstanceInformationList: items, ...(next === undefined ? {} : { NextToken: next }) };
  };

  const documentText = readFileSync(options.documentPath, 'utf8');
  /** GetDocument: the stack's document as SSM stores it (its content, as deployed); any other name does not exist. */
  const getDocument = (body: Record<string, unknown>): unknown => {
    if (body.Name !== options.documentName) throw new ApiError('InvalidDocument', `Document with name ${String(body.Name)} does not exist.`);
    return { Name: options.documentName, DocumentVersion: '1', Status: 'Active', Content: documentText, DocumentType: 'Command', DocumentFormat: 'YAML', CreatedDate: 1_700_000_000 };
  };

  const operations: Record<string, (body: Record<string, unknown>) => unknown> = {
    SendCommand: sendCommand,
    GetCommandInvocation: getCommandInvocation,
    GetParameters: getParameters,
    DescribeInstanceInformation: describeInstanceInformation,
    GetDocument: getDocument,
    ListCommandInvocations: listCommandInvocations,
  };

  const respond = (res: ServerResponse, status: number, payload: unknown): void => {
    const text = JSON.stringify(payload);
    res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-requestid': randomUUID(), 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };

  const handle = (req: IncomingMessage, res: ServerResponse, raw: string): void => {
    const target = String(req.headers['x-amz-target'] ?? '');
    const operation = target.startsWith('AmazonSSM.') ? target.slice('AmazonSSM.'.length) : '';
    let body: unknown;
    try {
      body = raw === '' ? {} : JSON.parse(raw);
    } catch {
      body = undefined;
    }
    const fail = (error: ApiError): void => {
      calls.push({ operation, body, status: error.status, error: error.type });
      respond(res, error.status, { __type: error.type, Message: error.message });
    };
    if (req.method !== 'POST' || !String(req.headers['content-type'] ?? '').startsWith('application/x-amz-json-1.1')) {
      fail(new ApiError('SerializationException', 'AWS JSON 1.1 POST expected'));
      return;
    }
    if (typeof req.headers.authorization !== 'string' || !req.headers.authorization.startsWith('AWS4-HMAC-SHA256')) {
      fail(new ApiError('MissingAuthenticationTokenException', 'Request is missing a SigV4 Authorization header'));
      return;
    }
    const handler = operations[operation];
    if (handler === undefined) {
      fail(new ApiError('UnknownOperationException', `Operation ${target} is not emulated`));
      return;
    }
    if (!isRecord(body)) {
      fail(new ApiError('SerializationException', 'Request body is not a JSON object'));
      return;
    }
    for (const listener of listeners) listener(operation, body);
    for (const key of [operation, '*']) {
      const left = throttles.get(key) ?? 0;
      if (left > 0) {
        throttles.set(key, left - 1);
        fail(new ApiError('ThrottlingException', 'Rate exceeded'));
        return;
      }
    }
    if (overRate(operation)) {
      fail(new ApiError('ThrottlingException', 'Rate exceeded'));
      return;
    }
    try {
      const result = handler(body);
      calls.push({ operation, body, status: 200 });
      respond(res, 200, result);
    } catch (error) {
      if (error instanceof ApiError) fail(error);
      else fail(new ApiError('InternalServerError', error instanceof Error ? error.message : String(error), 500));
    }
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const wait = draw(options.latency?.apiMs);
      if (wait <= 0) handle(req, res, Buffer.concat(chunks).toString('utf8'));
      else setTimeout(() => handle(req, res, Buffer.concat(chunks).toString('utf8')), wait);
    });
  });
  const url = await listenAsAwsEndpoint(server, 'the SSM endpoint');

  return {
    url,
    calls,
    throttle: (operation, times) => throttles.set(operation, times),
    failInstance: (id, message = 'The SSM Agent reported a failure running the plugin') => faults.set(id, { kind: 'fail', message }),
    undeliverable: (id) => faults.set(id, { kind: 'undeliverable' }),
    timeOut: (id, polls = 2, timeoutOptions = {}) => faults.set(id, { kind: 'timeout', polls, afterRunning: timeoutOptions.afterRunning === true }),
    invocationNotFound: (id, polls) => notFoundOverrides.set(id, polls),
    delay: (id, polls) => faults.set(id, { kind: 'delay', polls }),
    forceStatus: (id, status, details) => faults.set(id, { kind: 'status', status, details }),
    setParameter: (name, parameter) => stored.set(name, parameter),
    updateInstance: (id, patch) => {
      const instance = instances.get(id);
      if (instance === undefined) throw new Error(`no emulated instance ${id}`);
      instances.set(id, { ...instance, ...patch });
    },
    onRequest: (listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    clearFaults: () => {
      faults.clear();
      throttles.clear();
      notFoundOverrides.clear();
    },
    invocations: () =>
      [...invocations.values()].map((i) => ({
        commandId: i.commandId,
        instanceId: i.instanceId,
        parameters: i.parameters,
        outputKey: i.outputKey,
        ran: i.ran,
        hidden: i.hidden,
        sentAt: i.startedAt.getTime(),
        readyAt: i.readyAt,
        endedAt: i.endedAt?.getTime(),
        exitCode: i.exitCode,
        stdout: i.stdout,
        stderr: i.stderr,
      })),
    agentsCpuSeconds: () => {
      if (agentHost?.pid === undefined) return 0;
      try {
        // utime, stime, cutime, cstime of /proc/<pid>/stat (after the command name), in ticks of 1/100 s.
        const fields = readFileSync(`/proc/${agentHost.pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
        return [11, 12, 13, 14].reduce((n, i) => n + Number(fields[i]), 0) / 100;
      } catch {
        return 0;
      }
    },
    close: async () => {
      agentHost?.disconnect();
      for (const client of s3Clients.values()) client.destroy();
      await closeHttpServer(server);
      removeTempDir(root);
    },
  };
}
