import type { DescribeInstanceInformationCommandInput, DescribeInstanceInformationCommandOutput } from '@aws-sdk/client-ssm';
import { describe, expect, it } from 'vitest';
import { checkTargetsAllowed, type InstanceListing } from '../../functions/aws/target-guard.js';
import { ConfigError, RelayError } from '../../functions/core/errors.js';

/**
 * The stage-isolation check on its own, against an in-process listing that pages like
 * DescribeInstanceInformation (50 per page). The handler's integration tests run it through the
 * real SDK and the local SSM endpoint.
 */

const TAG = { key: 'haproxy-weighter', value: 'prod' };
const id = (n: number): string => `i-0${n.toString(16).padStart(16, '0')}`;

/** Instances with their tag value; answers the tag filter or the InstanceIds filter, 50 per page. */
function listing(instances: Readonly<Record<string, string | null>>): InstanceListing & { readonly calls: DescribeInstanceInformationCommandInput[] } {
  const calls: DescribeInstanceInformationCommandInput[] = [];
  return {
    calls,
    describeInstanceInformation: (input) => {
      calls.push(input);
      const [filter] = input.Filters ?? [];
      if ((input.Filters ?? []).length !== 1 || filter === undefined) throw new Error('tag filters cannot be combined with other filter types');
      const ids = Object.keys(instances).filter((i) =>
        filter.Key === 'InstanceIds' ? (filter.Values ?? []).includes(i) : filter.Key === `tag:${TAG.key}` && (filter.Values ?? []).includes(instances[i] ?? '\u0000'),
      );
      const start = Number(input.NextToken ?? 0);
      const page = ids.slice(start, start + 50);
      const out: DescribeInstanceInformationCommandOutput = {
        InstanceInformationList: page.map((InstanceId) => ({ InstanceId })),
        ...(start + 50 < ids.length ? { NextToken: String(start + 50) } : {}),
        $metadata: {},
      };
      return Promise.resolve(out);
    },
  };
}

function configErrorOf(promise: Promise<void>): Promise<string> {
  return promise.then(
    () => 'no error',
    (error: unknown) => (error instanceof ConfigError ? error.message : `not a ConfigError: ${String(error)}`),
  );
}

describe('checkTargetsAllowed', () => {
  it('accepts the stack’s own tag without asking the API', async () => {
    const api = listing({});
    await checkTargetsAllowed({ tag: TAG }, TAG, api, 'SSM parameter /hw/prod/config');
    expect(api.calls).toEqual([]);
  });

  it.each([
    ['another value', { key: 'haproxy-weighter', value: 'dev' }, 'haproxy-weighter=dev'],
    ['another key', { key: 'weighter', value: 'prod' }, 'weighter=prod'],
  ])('refuses a tag with %s, naming both tags', async (_label, tag, shown) => {
    expect(await configErrorOf(checkTargetsAllowed({ tag }, TAG, listing({}), 'SSM parameter /hw/prod/config'))).toBe(
      `Invalid configuration in SSM parameter /hw/prod/config:\n  - relay.targets.tag: this stack's role may only run commands on instances tagged haproxy-weighter=prod; the configuration targets ${shown}`,
    );
  });

  it('accepts instance ids that all carry the tag, reading every page of the listing', async () => {
    const fleet = Object.fromEntries(Array.from({ length: 120 }, (_, n) => [id(n), 'prod']));
    const api = listing(fleet);
    await checkTargetsAllowed({ instanceIds: [id(0), id(77), id(119)] }, TAG, api, 's');
    expect(api.calls.map((c) => c.NextToken ?? 'first')).toEqual(['first', '50', '100']);
  });

  it('names the ids with another tag or none, and the ids Systems Manager does not know', async () => {
    const message = await configErrorOf(checkTargetsAllowed({ instanceIds: [id(1), id(2), id(3), id(4)] }, TAG, listing({ [id(1)]: 'prod', [id(2)]: 'dev', [id(3)]: null }), 's'));
    expect(message).toContain(`relay.targets.instanceIds: ${id(2)}, ${id(3)} not tagged haproxy-weighter=prod, the only instances this stack's role may run commands on`);
    expect(message).toContain(`relay.targets.instanceIds: ${id(4)} not registered with Systems Manager in this region`);
  });

  it('looks up at most 50 unknown ids per call', async () => {
    const ids = Array.from({ length: 120 }, (_, n) => id(n));
    const api = listing({});
    await configErrorOf(checkTargetsAllowed({ instanceIds: ids }, TAG, api, 's'));
    expect(api.calls.filter((c) => c.Filters?.[0]?.Key === 'InstanceIds').map((c) => c.Filters?.[0]?.Values?.length)).toEqual([50, 50, 20]);
  });

  it('wraps a failing API call in a RelayError that says what it was for', async () => {
    const api: InstanceListing = { describeInstanceInformation: () => Promise.reject(new Error('AccessDeniedException: not authorized')) };
    const error = await checkTargetsAllowed({ instanceIds: [id(1)] }, TAG, api, 's').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RelayError);
    expect(String(error)).toContain('Cannot list the managed instances tagged haproxy-weighter=prod to check the configured targets: AccessDeniedException: not authorized');
  });
});
