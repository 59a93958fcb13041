import type { InstanceInformationStringFilter } from '@aws-sdk/client-ssm';
import { listInstanceInformation, type SsmApi } from '../adapters/ssm-relay.js';
import type { SsmRelayConfig } from '../core/config.js';
import { ConfigError, RelayError, describeError } from '../core/errors.js';
import type { TargetTag } from './lambda-config.js';

/**
 * Stage isolation, checked before anything is sent: the configured targets must be instances the
 * function's role may run commands on, i.e. instances carrying the stack's tag (the role's
 * `ssm:SendCommand` condition). IAM would refuse the others anyway, but only with an
 * AccessDenied for a whole SendCommand; this says which value is wrong.
 *
 * - `targets.tag` must be exactly the stack's tag: compared, no API call.
 * - `targets.instanceIds`: every id must be among the instances Systems Manager lists with the
 *   stack's tag (DescribeInstanceInformation, tag filter alone: the API does not combine tag
 *   filters with other filter types). Ids that are not are then looked up by id, so that the
 *   message tells an instance with another tag (or none) from one Systems Manager does not know
 *   in this region. Offline instances pass: the relay reports them per load balancer.
 */

export type InstanceListing = Pick<SsmApi, 'describeInstanceInformation'>;

async function listIds(api: InstanceListing, filter: InstanceInformationStringFilter, what: string): Promise<Set<string>> {
  try {
    return new Set((await listInstanceInformation(api, filter)).flatMap((info) => (typeof info.InstanceId === 'string' ? [info.InstanceId] : [])));
  } catch (error) {
    throw new RelayError(`Cannot list ${what} to check the configured targets: ${describeError(error)}`, {}, { cause: error });
  }
}

export async function checkTargetsAllowed(targets: SsmRelayConfig['targets'], allowed: TargetTag, api: InstanceListing, source: string): Promise<void> {
  const allowedText = `${allowed.key}=${allowed.value}`;
  if ('tag' in targets) {
    const { key, value } = targets.tag;
    if (key === allowed.key && value === allowed.value) return;
    throw new ConfigError(`Invalid configuration in ${source}`, [
      `relay.targets.tag: this stack's role may only run commands on instances tagged ${allowedText}; the configuration targets ${key}=${value}`,
    ]);
  }
  const tagged = await listIds(api, { Key: `tag:${allowed.key}`, Values: [allowed.value] }, `the managed instances tagged ${allowedText}`);
  const outside = [...new Set(targets.instanceIds)].filter((id) => !tagged.has(id));
  if (outside.length === 0) return;
  const known = new Set<string>();
  for (let i = 0; i < outside.length; i += 50) {
    for (const id of await listIds(api, { Key: 'InstanceIds', Values: outside.slice(i, i + 50) }, 'the configured instances')) known.add(id);
  }
  const otherTag = outside.filter((id) => known.has(id));
  const unknown = outside.filter((id) => !known.has(id));
  throw new ConfigError(`Invalid configuration in ${source}`, [
    ...(otherTag.length === 0 ? [] : [`relay.targets.instanceIds: ${otherTag.join(', ')} not tagged ${allowedText}, the only instances this stack's role may run commands on`]),
    ...(unknown.length === 0 ? [] : [`relay.targets.instanceIds: ${unknown.join(', ')} not registered with Systems Manager in this region`]),
  ]);
}
