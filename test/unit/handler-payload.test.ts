import { describe, expect, it } from 'vitest';
import { metricsTimestamp, parseInvocation } from '../../functions/aws/payload.js';
import { ConfigError } from '../../functions/core/errors.js';

const SCHEDULED = { version: '0', id: 'x', 'detail-type': 'Scheduled Event', source: 'aws.events', account: '1', time: 't', region: 'r', resources: [], detail: {} };

describe('parseInvocation', () => {
  it.each([
    ['the EventBridge schedule', SCHEDULED, { trigger: 'schedule', mode: 'apply', force: false }],
    ['an empty manual payload', {}, { trigger: 'manual', mode: 'apply', force: false }],
    ['no payload at all', undefined, { trigger: 'manual', mode: 'apply', force: false }],
    ['a null payload', null, { trigger: 'manual', mode: 'apply', force: false }],
    ['a dry run', { dryRun: true }, { trigger: 'manual', mode: 'plan', force: false }],
    ['dryRun false', { dryRun: false }, { trigger: 'manual', mode: 'apply', force: false }],
    ['a subset of backends', { backends: ['be_ingest', 'be_api'] }, { trigger: 'manual', mode: 'apply', backends: ['be_ingest', 'be_api'], force: false }],
    ['a forced rebalance', { force: true }, { trigger: 'manual', mode: 'apply', force: true }],
    ['a forced dry run of one backend', { dryRun: true, force: true, backends: ['be_ingest'] }, { trigger: 'manual', mode: 'plan', backends: ['be_ingest'], force: true }],
    ['the doctor', { doctor: true }, { trigger: 'manual', mode: 'doctor', force: false }],
    ['the doctor of one backend', { doctor: true, backends: ['be_ingest'] }, { trigger: 'manual', mode: 'doctor', backends: ['be_ingest'], force: false }],
    ['doctor false', { doctor: false }, { trigger: 'manual', mode: 'apply', force: false }],
  ])('reads %s', (_label, event, expected) => {
    expect(parseInvocation(event)).toEqual(expected);
  });

  it.each([
    ['a string dryRun', { dryRun: 'true' }, 'dryRun: Invalid input: expected boolean, received string (got "true")'],
    ['a numeric force', { force: 1 }, 'force: Invalid input: expected boolean, received number (got 1)'],
    ['a misspelt key', { dryrun: true }, '(root): unknown key(s) "dryrun"'],
    ['backends as a string', { backends: 'be_ingest' }, 'backends: Invalid input: expected array, received string (got "be_ingest")'],
    ['an empty backend list', { backends: [] }, 'backends: Too small: expected array to have >=1 items (got [])'],
    ['a repeated backend', { backends: ['a', 'a'] }, 'backends: must not repeat a backend (got ["a","a"])'],
    ['a command separator in a backend', { backends: ['a;shutdown sessions'] }, 'backends.0: must be 1-1024 characters of A-Z a-z 0-9 _ . : - (got "a;shutdown sessions")'],
    ['a command substitution in a backend', { backends: ['$(reboot)'] }, 'backends.0: must be 1-1024 characters of A-Z a-z 0-9 _ . : - (got "$(reboot)")'],
    ['a newline in a backend', { backends: ['be\nshutdown'] }, 'backends.0: must be 1-1024 characters of A-Z a-z 0-9 _ . : - (got "be\\nshutdown")'],
    ['an array payload', [], '(root): Invalid input: expected object, received array (got [])'],
    ['a string doctor', { doctor: 'yes' }, 'doctor: Invalid input: expected boolean, received string (got "yes")'],
    ['the doctor with force', { doctor: true, force: true }, 'force: the doctor changes nothing; only "backends" goes with "doctor"'],
    ['the doctor with dryRun', { doctor: true, dryRun: true }, 'dryRun: the doctor changes nothing; only "backends" goes with "doctor"'],
    ['a scheduled-looking event from another source', { ...SCHEDULED, source: 'custom.app' }, '(root): unknown key(s)'],
  ])('rejects %s, naming the field', (_label, event, issue) => {
    let caught: unknown;
    try {
      parseInvocation(event);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    const issues = caught instanceof ConfigError ? caught.issues : [];
    expect(issues.some((i) => i.startsWith(issue))).toBe(true);
  });
});

describe('metricsTimestamp', () => {
  const start = Date.parse('2026-11-30T10:07:41.500Z');
  const tick = (time: unknown) => ({ ...SCHEDULED, time });

  it.each([
    ['the tick of a scheduled event', tick('2026-11-30T10:07:00Z'), Date.parse('2026-11-30T10:07:00Z')],
    ['the tick of a throttled event that Lambda retried 50 s later', tick('2026-11-30T10:06:51Z'), Date.parse('2026-11-30T10:06:51Z')],
    ['the start for a manual invoke', { time: '2026-11-30T10:07:00Z' }, start],
    ['the start when the time is not a date', tick('t'), start],
    ['the start when the tick is more than 15 minutes old', tick('2026-11-30T09:50:00Z'), start],
    ['the start when the tick lies in the future', tick('2026-11-30T10:09:00Z'), start],
  ])('stamps a cycle’s metrics with %s', (_label, event, expected) => {
    expect(metricsTimestamp(event, start)).toBe(expected);
  });
});
