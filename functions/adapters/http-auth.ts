import type { HttpAuthConfig } from '../core/config.js';
import { ConfigError } from '../core/errors.js';

/**
 * The secrets of an HTTP auth (Graphite's render API, the history's HTTP ingestion): read from the
 * environment the config names, never from the file, and never shown.
 */

export type SecretEnv = Readonly<Record<string, string | undefined>>;

/** The value of environment variable `name`; `field` is where the config names it (`graphite.auth.keyEnv`). */
export function readSecret(env: SecretEnv, name: string, field: string): string {
  const value = env[name];
  if (value === undefined || value === '') throw new ConfigError(`${field}: environment variable ${name} is not set`);
  return value;
}

/** The header that carries `auth` (none for `none`); `at` is where the auth sits in the config (`graphite.auth`). */
export function authHeaders(auth: HttpAuthConfig, env: SecretEnv, at: string): Record<string, string> {
  switch (auth.type) {
    case 'none':
      return {};
    case 'basic':
      return { authorization: `Basic ${Buffer.from(`${auth.username}:${readSecret(env, auth.passwordEnv, `${at}.passwordEnv`)}`).toString('base64')}` };
    case 'header':
      return { [auth.header.toLowerCase()]: `${auth.prefix}${readSecret(env, auth.valueEnv, `${at}.valueEnv`)}` };
  }
}
