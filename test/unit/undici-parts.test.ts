/**
 * The bundles resolve `undici` to scripts/undici-parts.cjs (scripts/bundle.mjs): the parts must be
 * undici's own objects, and every value functions/ imports from undici must be among them, or a
 * bundle would fail where the tests (which load undici's index) pass. The integration tests run
 * the CLI bundle, so their Graphite requests go through these parts.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import * as undici from 'undici';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../harness/paths.js';

const require = createRequire(import.meta.url);
const parts = require('../../scripts/undici-parts.cjs') as Record<string, unknown>;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? sourceFiles(join(dir, entry.name)) : entry.name.endsWith('.ts') ? [join(dir, entry.name)] : [],
  );
}

/** The value (not type-only) names taken from 'undici' anywhere under functions/, by import or by dynamic import. */
function undiciValueImports(): string[] {
  const names = new Set<string>();
  const add = (list: string): void => {
    for (const spec of list.split(',')) {
      const name = spec.trim();
      if (name !== '' && !name.startsWith('type ')) names.add(name.split(/\s+as\s+|\s*:\s*/)[0] ?? name);
    }
  };
  for (const file of sourceFiles(join(REPO_ROOT, 'functions'))) {
    const text = readFileSync(file, 'utf8');
    for (const match of text.matchAll(/^import (type )?\{([^}]*)\} from 'undici';$/gm)) if (match[1] === undefined) add(match[2] ?? '');
    for (const match of text.matchAll(/import\('undici'\)\.then\(\(\{ default: \{([^}]*)\} \}\)/g)) add(match[1] ?? '');
  }
  return [...names].sort();
}

describe('the undici parts the bundles carry', () => {
  it('leave HTTP/2 out, which only a client with allowH2 off never needs', () => {
    const graphite = readFileSync(join(REPO_ROOT, 'functions/adapters/graphite.ts'), 'utf8');
    expect(graphite).toMatch(/new Agent\(\{[^}]*allowH2: false,/);
    expect(() => (require('../../scripts/undici-no-h2.cjs') as () => unknown)()).toThrow(/HTTP\/2 is not in this bundle/);
  });

  it('are the objects undici itself exports', () => {
    expect(parts.Agent).toBe(undici.Agent);
    expect(parts.Dispatcher).toBe(undici.Dispatcher);
    expect((parts.interceptors as Record<string, unknown>).retry).toBe(undici.interceptors.retry);
  });

  it('include every value functions/ imports from undici', () => {
    const imported = undiciValueImports();
    expect(imported).toEqual(['Agent', 'interceptors']);
    for (const name of imported) expect(parts[name], name).toBeDefined();
  });
});
