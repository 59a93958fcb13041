// The esbuild options of every bundle we ship, in one place: dist/cli.mjs, dist/handler.mjs, and the
// copies the cold-start benchmark and the serverless package test build into temp directories.
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));

// ESM bundles of CommonJS dependencies need a real require.
const REQUIRE_SHIM = "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);";

const common = {
  bundle: true,
  platform: 'node',
  target: 'node24',
  format: 'esm',
  sourcemap: false,
  legalComments: 'none',
  // Error class names (ConfigError, GraphiteError...) are part of what operators read.
  keepNames: true,
  logLevel: 'warning',
};

/** The Lambda handler, minified (smaller bundle, faster cold start). */
export function bundleHandler(outfile) {
  return build({ ...common, entryPoints: [join(ROOT, 'functions/handler.ts')], outfile, minify: true, banner: { js: REQUIRE_SHIM } });
}

/** The CLI, with its shebang so that the package's bin runs as is. */
export function bundleCli(outfile) {
  return build({ ...common, entryPoints: [join(ROOT, 'functions/cli/bin.ts')], outfile, banner: { js: `#!/usr/bin/env node\n${REQUIRE_SHIM}` } });
}
