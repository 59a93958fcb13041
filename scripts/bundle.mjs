// The esbuild options of every bundle we ship, in one place: dist/cli.mjs, dist/handler.mjs, and the
// copies the cold-start benchmark and the serverless package test build into temp directories.
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));

// ESM bundles of CommonJS dependencies need a real require.
const REQUIRE_SHIM = "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);";

/** `undici` resolves to the few parts of it the adapters use (see scripts/undici-parts.cjs). */
const undiciParts = {
  name: 'undici-parts',
  setup(build) {
    build.onResolve({ filter: /^undici$/ }, () => ({ path: join(ROOT, 'scripts/undici-parts.cjs') }));
  },
};

const common = {
  bundle: true,
  platform: 'node',
  target: 'node24',
  format: 'esm',
  // The ES-module builds where packages ship both: the AWS SDK's ES modules let esbuild keep only
  // the SSM commands the relay sends (its CommonJS build carries every command's schema, 280 KB).
  mainFields: ['module', 'main'],
  // undici's own marker for a bundled copy (Node.js core sets it too): HTTP/1 uses llhttp only, and
  // the experimental Milo parser (154 KB, off unless asked for) stays out of the bundle.
  define: { esbuildDetection: 'true' },
  plugins: [undiciParts],
  sourcemap: false,
  legalComments: 'none',
  // Error class names (ConfigError, GraphiteError...) are part of what operators read.
  keepNames: true,
  logLevel: 'warning',
};

/** The Lambda handler, minified (smaller bundle, faster cold start). */
export function bundleHandler(outfile, extra = {}) {
  return build({ ...common, entryPoints: [join(ROOT, 'functions/handler.ts')], outfile, minify: true, banner: { js: REQUIRE_SHIM }, ...extra });
}

/** The CLI, with its shebang so that the package's bin runs as is. */
export function bundleCli(outfile, extra = {}) {
  return build({ ...common, entryPoints: [join(ROOT, 'functions/cli/bin.ts')], outfile, banner: { js: `#!/usr/bin/env node\n${REQUIRE_SHIM}` }, ...extra });
}
