import * as z from 'zod/mini';
import { formatIssues } from '../core/config.js';
import { SAFE_NAME, SAFE_NAME_RULE } from '../core/runtime-grammar.js';
import { ConfigError } from '../core/errors.js';

/**
 * What one Lambda invocation is asked to do. The EventBridge schedule sends its own event (a full
 * apply of every backend); a person invoking the function by hand sends a small JSON payload.
 */
export interface InvocationRequest {
  readonly trigger: 'schedule' | 'manual';
  /** doctor: check every piece a cycle needs, change nothing, answer the doctor report. */
  readonly mode: 'plan' | 'apply' | 'doctor';
  readonly backends?: readonly string[];
  readonly force: boolean;
}

// zod's mini API, as the configuration's schema (config.ts, which also sets its English messages).
const manualPayload = z.strictObject({
  /** Plan only: observe, measure and decide, write nothing. */
  dryRun: z.optional(z.boolean()),
  /** A subset of the configured backends. */
  backends: z.optional(
    z.array(z.string().check(z.regex(SAFE_NAME, SAFE_NAME_RULE))).check(
      z.minLength(1),
      z.maxLength(100),
      z.refine((names) => new Set(names).size === names.length, 'must not repeat a backend'),
    ),
  ),
  /** Write every eligible weight even when unchanged (e.g. after HAProxy reloaded). */
  force: z.optional(z.boolean()),
  /** Check every piece a cycle needs and change nothing (as `haproxy-weighter doctor`). */
  doctor: z.optional(z.boolean()),
});

function isScheduledEvent(event: unknown): boolean {
  if (typeof event !== 'object' || event === null) return false;
  return Reflect.get(event, 'source') === 'aws.events' && Reflect.get(event, 'detail-type') === 'Scheduled Event';
}

const PAYLOAD_SHAPE = 'Invalid invocation payload (expected {"dryRun"?: boolean, "backends"?: [names], "force"?: boolean} or {"doctor": true, "backends"?: [names]})';

/** Validates the invocation event; a bad manual payload is a ConfigError naming the bad field. */
export function parseInvocation(event: unknown): InvocationRequest {
  if (isScheduledEvent(event)) return { trigger: 'schedule', mode: 'apply', force: false };
  // `serverless invoke` without -d and the console's empty test event both send nothing useful.
  const input = event === undefined || event === null || event === '' ? {} : event;
  const result = manualPayload.safeParse(input);
  if (!result.success) {
    throw new ConfigError(PAYLOAD_SHAPE, formatIssues(result.error, input));
  }
  const { dryRun, backends, force, doctor } = result.data;
  if (doctor === true && (dryRun !== undefined || force !== undefined)) {
    throw new ConfigError(PAYLOAD_SHAPE, [`${dryRun === undefined ? 'force' : 'dryRun'}: the doctor changes nothing; only "backends" goes with "doctor"`]);
  }
  return {
    trigger: 'manual',
    mode: doctor === true ? 'doctor' : dryRun === true ? 'plan' : 'apply',
    ...(backends === undefined ? {} : { backends }),
    force: force === true,
  };
}

/** How far a scheduled event's time may lie from the cycle's start and still be its tick. */
const TICK_BEFORE_MS = 15 * 60_000;
const TICK_AFTER_MS = 60_000;

/**
 * The timestamp of a cycle's metrics (ms): the schedule tick it runs for (the scheduled event's
 * `time`, kept when Lambda retries a throttled event), else when the cycle started. One datapoint
 * per tick then lands in the tick's own period, however long the cycle takes.
 */
export function metricsTimestamp(event: unknown, startedAtMs: number): number {
  if (!isScheduledEvent(event) || typeof event !== 'object' || event === null) return startedAtMs;
  const time: unknown = Reflect.get(event, 'time');
  const tick = typeof time === 'string' ? Date.parse(time) : NaN;
  if (!Number.isFinite(tick) || tick < startedAtMs - TICK_BEFORE_MS || tick > startedAtMs + TICK_AFTER_MS) return startedAtMs;
  return tick;
}
