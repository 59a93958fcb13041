import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../harness/paths.js';

/**
 * The suite runs on the Node.js major the Lambda runs on: the project brings Node 24 from the npm
 * registry (the `node` package), so a machine whose system Node is older still tests on 24.
 */
const LAMBDA_MAJOR = 24;

describe('runtime', () => {
  it('runs the tests on Node.js 24, the Lambda runtime major', () => {
    expect(Number(process.versions.node.split('.')[0])).toBe(LAMBDA_MAJOR);
  });

  it('deploys the function on the same major as the tests run on', () => {
    const sls: unknown = parseYaml(readFileSync(join(REPO_ROOT, 'serverless.yml'), 'utf8'));
    const runtime = typeof sls === 'object' && sls !== null ? Reflect.get(Reflect.get(sls, 'provider') as object, 'runtime') : undefined;
    expect(runtime).toBe(`nodejs${LAMBDA_MAJOR}.x`);
  });

  it('pins the node package and the engines field to that major', () => {
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; engines: Record<string, string> };
    expect(pkg.dependencies.node).toMatch(new RegExp(`^\\^${LAMBDA_MAJOR}\\.`));
    expect(pkg.engines.node).toMatch(new RegExp(`^>=${LAMBDA_MAJOR}\\.`));
  });
});
