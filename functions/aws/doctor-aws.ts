import type {
  DescribeInstanceInformationCommandInput,
  DescribeInstanceInformationCommandOutput,
  GetDocumentCommandInput,
  GetDocumentCommandOutput,
  InstanceInformation,
} from '@aws-sdk/client-ssm';
import type { SsmRelayConfig } from '../core/config.js';
import { failed, listOf, ok, skipped, warning, type DoctorCheck } from '../core/doctor.js';
import { describeError } from '../core/errors.js';
import { COMMANDS_PATTERN_SOURCE } from '../core/runtime-grammar.js';
import { listInstanceInformation } from '../adapters/ssm-relay.js';
import type { TargetTag } from './lambda-config.js';

/**
 * The doctor's AWS checks, run beside the runtime checks that go through the relay: the Command
 * document (it exists, is an active Command document, and accepts exactly this version's command
 * grammar), the targeted instances (found, online, carrying the tag the function's role may run
 * commands on) and their SSM Agent (3.3.2746.0 or later, for `interpolationType: ENV_VAR`). Only
 * reads: GetDocument and DescribeInstanceInformation.
 */

/** The two read-only SSM calls the checks make. */
export interface AwsDoctorApi {
  describeInstanceInformation(input: DescribeInstanceInformationCommandInput): Promise<DescribeInstanceInformationCommandOutput>;
  getDocument(input: GetDocumentCommandInput): Promise<GetDocumentCommandOutput>;
}

export interface AwsDoctorSettings {
  readonly relay: Pick<SsmRelayConfig, 'documentName' | 'targets'>;
  /** The tag the function's role may run commands on (TARGET_TAG_KEY/VALUE), when the stack names one. */
  readonly targetTag: TargetTag | undefined;
}

/** The first SSM Agent that passes document parameters as environment variables (interpolationType ENV_VAR). */
export const MIN_AGENT_VERSION = '3.3.2746.0';

/** Compares dotted versions numerically: negative, zero or positive. Null when either is not dotted numbers. */
export function compareVersions(a: string, b: string): number | null {
  const parse = (v: string): number[] | null => (/^\d{1,9}(\.\d{1,9}){0,5}$/.test(v) ? v.split('.').map(Number) : null);
  const x = parse(a);
  const y = parse(b);
  if (x === null || y === null) return null;
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

const errorName = (error: unknown): string => (error instanceof Error ? error.name : '');

function apiFailed(check: DoctorCheck['check'], what: string, permission: string, error: unknown): DoctorCheck {
  return failed(check, {}, 'ssm-api-failed', `${what} failed: ${errorName(error) === '' ? '' : `${errorName(error)}: `}${describeError(error)}`, `the function's role needs ${permission}; on a throttling error, invoke again`);
}

/** What the document's Commands parameter accepts, read from its content. */
async function commandsPattern(content: string): Promise<{ pattern: unknown; interpolation: unknown } | null> {
  // Loaded by the doctor only: a static import would put the YAML parser in every cold start of the
  // Lambda (the configuration loads it only when it is YAML). CommonJS: its exports are the default.
  const { default: yaml } = await import('yaml');
  let doc: unknown;
  try {
    doc = yaml.parse(content, { maxAliasCount: 10 });
  } catch {
    return null;
  }
  const params: unknown = typeof doc === 'object' && doc !== null ? Reflect.get(doc, 'parameters') : undefined;
  const commands: unknown = typeof params === 'object' && params !== null ? Reflect.get(params, 'Commands') : undefined;
  if (typeof commands !== 'object' || commands === null) return null;
  return { pattern: Reflect.get(commands, 'allowedPattern'), interpolation: Reflect.get(commands, 'interpolationType') };
}

async function documentCheck(settings: AwsDoctorSettings, api: AwsDoctorApi): Promise<DoctorCheck> {
  const name = settings.relay.documentName;
  let out: GetDocumentCommandOutput;
  try {
    out = await api.getDocument({ Name: name });
  } catch (error) {
    if (errorName(error) === 'InvalidDocument') {
      return failed('ssm-document', {}, 'document-missing', `no document ${name} in this account and region`, 'deploy the stack (npx serverless deploy --stage <stage>), which creates it, or correct relay.documentName');
    }
    return apiFailed('ssm-document', `GetDocument ${name}`, `ssm:GetDocument on the document ${name}`, error);
  }
  const redeploy = `deploy the stack of this version (npx serverless deploy --stage <stage>): the function checks every batch against its own grammar, and SSM against the document's`;
  if (out.DocumentType !== undefined && out.DocumentType !== 'Command') {
    return failed('ssm-document', {}, 'document-not-stack', `${name} is a ${out.DocumentType} document, not a Command document`, redeploy);
  }
  if (out.Status !== undefined && out.Status !== 'Active') return failed('ssm-document', {}, 'document-not-stack', `${name} is ${out.Status}, not Active`, 'wait for the deployment to finish, or deploy the stack again');
  const commands = await commandsPattern(out.Content ?? '');
  if (commands === null) return failed('ssm-document', {}, 'document-not-stack', `${name} has no Commands parameter: it is not haproxy-weighter's relay document`, redeploy);
  if (commands.pattern !== COMMANDS_PATTERN_SOURCE) {
    return failed('ssm-document', {}, 'document-not-stack', `${name} accepts another command grammar than this version sends (deployed by another version?)`, redeploy);
  }
  if (commands.interpolation !== 'ENV_VAR') return failed('ssm-document', {}, 'document-not-stack', `${name} does not pass Commands as an environment variable (interpolationType ENV_VAR)`, redeploy);
  return ok('ssm-document', {}, `${name}${out.DocumentVersion === undefined ? '' : ` (version ${out.DocumentVersion})`} is an active Command document that accepts this version's commands`);
}

function instanceChecks(info: InstanceInformation, tagged: ((id: string) => boolean) | undefined, tag: TargetTag | undefined): DoctorCheck[] {
  const id = info.InstanceId ?? '';
  const place = { loadBalancer: id };
  const checks: DoctorCheck[] = [];
  if (info.PingStatus === 'Online') checks.push(ok('instance-online', place, `online (${info.PlatformName ?? info.PlatformType ?? 'unknown platform'})`));
  else {
    const since = info.LastPingDateTime instanceof Date ? `; last seen ${info.LastPingDateTime.toISOString()}` : '';
    checks.push(failed('instance-online', place, 'instance-offline', `Systems Manager sees it ${info.PingStatus ?? 'in an unknown state'}${since}`, 'start the instance or its SSM Agent (systemctl status amazon-ssm-agent), and check its instance profile (AmazonSSMManagedInstanceCore)'));
  }
  if (tagged === undefined || tag === undefined) checks.push(skipped('instance-tag', place, 'the stack names no tag (TARGET_TAG_KEY, TARGET_TAG_VALUE)'));
  else if (tagged(id)) checks.push(ok('instance-tag', place, `tagged ${tag.key}=${tag.value}, which the function's role may run commands on`));
  else checks.push(failed('instance-tag', place, 'instance-not-tagged', `not tagged ${tag.key}=${tag.value}: the function's role may not run commands on it`, `tag the instance ${tag.key}=${tag.value}, or target only instances of this stage`));
  const version = info.AgentVersion ?? '';
  const cmp = compareVersions(version, MIN_AGENT_VERSION);
  const update = `update the SSM Agent to ${MIN_AGENT_VERSION} or later: the document passes its parameters as environment variables (interpolationType ENV_VAR), which older agents do not (the document then exits 64)`;
  if (cmp === null) checks.push(warning('ssm-agent-version', place, 'agent-too-old', `SSM Agent version ${JSON.stringify(version)} cannot be compared with ${MIN_AGENT_VERSION}`, update));
  else if (cmp < 0) checks.push(failed('ssm-agent-version', place, 'agent-too-old', `SSM Agent ${version} is older than ${MIN_AGENT_VERSION}`, update));
  else checks.push(ok('ssm-agent-version', place, `SSM Agent ${version}`));
  return checks;
}

async function instancesChecks(settings: AwsDoctorSettings, api: AwsDoctorApi): Promise<DoctorCheck[]> {
  const targets = settings.relay.targets;
  const tag = settings.targetTag;
  try {
    if ('tag' in targets) {
      const { key, value } = targets.tag;
      const found = await listInstanceInformation(api, { Key: `tag:${key}`, Values: [value] });
      if (found.length === 0) {
        return [failed('instances-found', {}, 'no-instances', `no managed instance carries the tag ${key}=${value} in this region`, `tag the load balancers ${key}=${value}, and register them with Systems Manager (SSM Agent running, an instance profile with AmazonSSMManagedInstanceCore)`)];
      }
      const sameTag = tag !== undefined && tag.key === key && tag.value === value;
      return [ok('instances-found', {}, `${found.length} managed instance(s) tagged ${key}=${value}`), ...found.flatMap((info) => instanceChecks(info, tag === undefined ? undefined : () => sameTag, tag))];
    }
    const ids = [...new Set(targets.instanceIds)];
    const known = new Map<string, InstanceInformation>();
    for (let i = 0; i < ids.length; i += 50) {
      for (const info of await listInstanceInformation(api, { Key: 'InstanceIds', Values: ids.slice(i, i + 50) })) if (info.InstanceId !== undefined) known.set(info.InstanceId, info);
    }
    const stackTagged = tag === undefined ? undefined : new Set((await listInstanceInformation(api, { Key: `tag:${tag.key}`, Values: [tag.value] })).flatMap((i) => (i.InstanceId === undefined ? [] : [i.InstanceId])));
    const unknown = ids.filter((id) => !known.has(id));
    const checks: DoctorCheck[] = [
      unknown.length === 0
        ? ok('instances-found', {}, `${ids.length} configured instance(s), all registered with Systems Manager`)
        : failed('instances-found', {}, 'instance-unknown', `${unknown.length} of ${ids.length} configured instance(s) not registered with Systems Manager in this region: ${listOf(unknown)}`, 'correct relay.targets.instanceIds, or register the instances (SSM Agent running, an instance profile with AmazonSSMManagedInstanceCore)'),
    ];
    for (const id of ids) {
      const info = known.get(id);
      if (info !== undefined) checks.push(...instanceChecks(info, stackTagged === undefined ? undefined : (i) => stackTagged.has(i), tag));
    }
    return checks;
  } catch (error) {
    return [apiFailed('instances-found', 'DescribeInstanceInformation', 'ssm:DescribeInstanceInformation', error)];
  }
}

/** Every AWS check, in order: the document, then the instances. Never throws: an API failure is a failed check. */
export async function awsDoctorChecks(settings: AwsDoctorSettings, api: AwsDoctorApi): Promise<DoctorCheck[]> {
  const [document, instances] = await Promise.all([documentCheck(settings, api), instancesChecks(settings, api)]);
  return [document, ...instances];
}
