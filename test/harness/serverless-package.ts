/**
 * `serverless package` (osls) on a copy of the service, with no AWS credentials and any HTTP(S)
 * traffic sent to a closed local port: the CloudFormation template is built offline, as an
 * operator's `npx serverless package --stage <stage>` builds it. Tests read the template.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseDocument } from 'yaml';
import { REPO_ROOT } from './paths.js';

const run = promisify(execFile);
const OSLS = join(REPO_ROOT, 'node_modules/osls/bin/serverless.js');

export interface Resource {
  readonly Type: string;
  readonly Properties: Record<string, unknown>;
}

export interface Packaged {
  readonly resources: Record<string, Resource>;
  readonly outputs: Record<string, unknown>;
  readonly zipEntries: readonly string[];
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function asList(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [value];
}

/** Flattens `Fn::Join ['', [...]]` with pseudo parameters shown as `${AWS::…}`, so ARNs can be compared as text. */
export function text(value: unknown): string {
  if (typeof value === 'string') return value;
  if (isObject(value) && typeof value.Ref === 'string') return `\${${value.Ref}}`;
  if (isObject(value) && Array.isArray(value['Fn::Join'])) {
    const [sep, parts] = value['Fn::Join'];
    return asList(parts).map(text).join(String(sep));
  }
  return JSON.stringify(value);
}

export interface ServiceCopy {
  readonly dir: string;
  /** Packages one stage; `params` are `--param key=value` options, as an operator would pass them. */
  package(stage: string, params?: Readonly<Record<string, string>>): Promise<Packaged>;
}

/**
 * Copies serverless.yml and the SSM document into `base/svc` with `bundle` as dist/handler.mjs.
 * `stageParams` adds stage parameters to the copy's `params:` block (for values `--param` cannot
 * carry, such as the VPC object), the way an operator edits the file.
 */
export async function copyService(base: string, bundle: (outfile: string) => Promise<unknown>, stageParams: Readonly<Record<string, Readonly<Record<string, unknown>>>> = {}): Promise<ServiceCopy> {
  const dir = join(base, 'svc');
  mkdirSync(join(dir, 'dist'), { recursive: true });
  mkdirSync(join(dir, 'infra'), { recursive: true });
  const doc = parseDocument(readFileSync(join(REPO_ROOT, 'serverless.yml'), 'utf8'));
  for (const [stage, params] of Object.entries(stageParams)) {
    for (const [key, value] of Object.entries(params)) doc.setIn(['params', stage, key], value);
  }
  writeFileSync(join(dir, 'serverless.yml'), doc.toString());
  copyFileSync(join(REPO_ROOT, 'infra/ssm-document.yaml'), join(dir, 'infra/ssm-document.yaml'));
  await bundle(join(dir, 'dist/handler.mjs'));
  let count = 0;
  return {
    dir,
    async package(stage, params = {}) {
      const id = `${stage}-${++count}`;
      const out = join(base, `out-${id}`);
      const home = join(base, `home-${id}`);
      mkdirSync(home);
      const paramOptions = Object.entries(params).flatMap(([k, v]) => ['--param', `${k}=${v}`]);
      // One after the other: osls keeps working files in the service directory.
      await run(process.execPath, [OSLS, 'package', '--stage', stage, '--package', out, ...paramOptions], {
        cwd: dir,
        timeout: 120_000,
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          HOME: home,
          SLS_TELEMETRY_DISABLED: '1',
          SLS_NOTIFICATIONS_MODE: 'off',
          HTTP_PROXY: 'http://127.0.0.1:9',
          HTTPS_PROXY: 'http://127.0.0.1:9',
        },
      });
      const template: unknown = JSON.parse(readFileSync(join(out, 'cloudformation-template-update-stack.json'), 'utf8'));
      if (!isObject(template) || !isObject(template.Resources)) throw new Error('no Resources in the template');
      const resources: Record<string, Resource> = {};
      for (const [name, r] of Object.entries(template.Resources)) {
        if (isObject(r) && typeof r.Type === 'string') resources[name] = { Type: r.Type, Properties: isObject(r.Properties) ? r.Properties : {} };
      }
      const listing = await run('unzip', ['-Z1', join(out, 'haproxy-weighter.zip')]);
      return { resources, outputs: isObject(template.Outputs) ? template.Outputs : {}, zipEntries: listing.stdout.split('\n').filter((l) => l !== '') };
    },
  };
}

export function ofType(p: Packaged, type: string): [string, Resource][] {
  return Object.entries(p.resources).filter(([, r]) => r.Type === type);
}
