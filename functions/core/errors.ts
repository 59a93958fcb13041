/**
 * The error hierarchy of haproxy-weighter. Every error carries the input that failed (backend,
 * server, load balancer, URL, a snippet of the reply) so that a report or a log line can say
 * exactly what broke without a stack trace. Foreign errors are wrapped with `cause`.
 */
import { displaySafe } from './display.js';

/** Longest reply excerpt kept on an error: enough to recognise it, never a whole payload. */
const SNIPPET_CHARS = 200;

/**
 * Shortens untrusted text for messages: one line, bounded, and every control, bidi and invisible
 * character made visible (displaySafe), so a hostile reply can neither forge a log line nor
 * reorder what is shown.
 */
export function snippet(text: string, max = SNIPPET_CHARS): string {
  const visible = displaySafe(text);
  return visible.length > max ? `${visible.slice(0, max)}…` : visible;
}

export interface ErrorContext {
  readonly backend?: string;
  readonly server?: string;
  readonly loadBalancer?: string;
  readonly url?: string;
  readonly status?: number | string;
  readonly reply?: string;
}

export abstract class WeighterError extends Error {
  /** Each class names itself: a minified bundle renames classes, and operators read the name. */
  abstract override readonly name: string;
  abstract readonly code: string;
  readonly context: ErrorContext;

  constructor(message: string, context: ErrorContext = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.context = context.reply === undefined ? context : { ...context, reply: snippet(context.reply) };
  }

  toJSON(): { code: string; message: string; context: ErrorContext } {
    return { code: this.code, message: this.message, context: this.context };
  }
}

/** The configuration file or a manual invoke payload is invalid. */
export class ConfigError extends WeighterError {
  override readonly name = 'ConfigError';
  readonly code = 'config';
  readonly issues: readonly string[];
  constructor(message: string, issues: readonly string[] = [], options?: { cause?: unknown }) {
    super(issues.length > 0 ? `${message}:\n  - ${issues.join('\n  - ')}` : message, {}, options);
    this.issues = issues;
  }
}

/**
 * How Graphite failed: not reached (connection, timeout, or 429/5xx after every retry), an HTTP
 * status we do not retry, a refused credential (401/403), or a reply we cannot trust.
 */
export type GraphiteErrorKind = 'unreachable' | 'http-status' | 'auth' | 'bad-reply';

/** Graphite could not be reached, answered with an error, or answered something we cannot trust. */
export class GraphiteError extends WeighterError {
  override readonly name = 'GraphiteError';
  readonly code = 'graphite';
  readonly kind: GraphiteErrorKind;
  /** Without a kind, the reply is one we cannot trust: most Graphite errors are validation errors. */
  constructor(message: string, context: ErrorContext = {}, options?: { cause?: unknown; kind?: GraphiteErrorKind }) {
    super(message, context, options);
    this.kind = options?.kind ?? 'bad-reply';
  }
}

/** A name or value that must never reach the runtime API or a shell. */
export class UnsafeInputError extends WeighterError {
  override readonly name = 'UnsafeInputError';
  readonly code = 'unsafe-input';
}

export type HaproxyErrorKind =
  | 'no-such-backend'
  | 'no-such-server'
  | 'permission-denied'
  | 'static-algorithm'
  | 'out-of-range'
  | 'bad-weight-string'
  | 'unexpected-reply';

/** HAProxy answered a runtime command with an error, or with a reply we cannot parse. */
export class HaproxyError extends WeighterError {
  override readonly name = 'HaproxyError';
  readonly code = 'haproxy';
  readonly kind: HaproxyErrorKind;
  constructor(kind: HaproxyErrorKind, message: string, context: ErrorContext = {}, options?: { cause?: unknown }) {
    super(message, context, options);
    this.kind = kind;
  }
}

/** A load balancer's runtime API could not be reached or did not answer in time. */
export class RelayError extends WeighterError {
  override readonly name = 'RelayError';
  readonly code = 'relay';
  /** True when the batch reached the load balancer before the failure: it may have run, in part. */
  readonly mayHaveRun: boolean;
  /** True when the batch was never sent because the cycle's time budget ran out: nothing of it ran. */
  readonly notStarted: boolean;
  constructor(message: string, context: ErrorContext = {}, options?: { cause?: unknown; mayHaveRun?: boolean; notStarted?: boolean }) {
    super(message, context, options);
    this.mayHaveRun = options?.mayHaveRun === true;
    this.notStarted = options?.notStarted === true;
  }
}

/** The weight history could not be sent to Graphite (carbon or the HTTP ingestion API). Never fails a cycle. */
export class HistoryError extends WeighterError {
  override readonly name = 'HistoryError';
  readonly code = 'history';
}

/**
 * Describes any thrown value for reports. Our own errors are built with their untrusted parts
 * already escaped (and a ConfigError lists its issues one per line); any other error's message is
 * someone else's text and is made one visible line.
 */
export function describeError(error: unknown): string {
  if (error instanceof WeighterError) return error.message;
  if (error instanceof Error) return displaySafe(error.message);
  return snippet(String(error));
}
