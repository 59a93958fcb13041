// The esbuild options of every bundle we ship, in one place: dist/cli.mjs, dist/handler.mjs, and the
// copies the cold-start benchmark and the serverless package test build into temp directories.
import { build } from 'esbuild';
import { builtinModules } from 'node:module';
import { fileURLToPath } from 'node:url';
import { basename, dirname, join } from 'node:path';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));

// ESM bundles of CommonJS dependencies need a real require.
const REQUIRE_SHIM = "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);";

/** `undici` resolves to the few parts of it the adapters use (see scripts/undici-parts.cjs). */
const undiciParts = {
  name: 'undici-parts',
  setup(build) {
    build.onResolve({ filter: /^undici$/ }, () => ({ path: join(ROOT, 'scripts/undici-parts.cjs') }));
    // HTTP/1.1 only: undici's HTTP/2 client loads node:http2 when required (about 10 ms of a
    // start-up), and the Graphite client turns allowH2 off, so no connection negotiates HTTP/2.
    build.onResolve({ filter: /^\.\/client-h2\.js$/ }, (args) =>
      args.importer.endsWith(join('undici', 'lib', 'dispatcher', 'client.js')) ? { path: join(ROOT, 'scripts/undici-no-h2.cjs') } : undefined,
    );
  },
};

/**
 * Node.js built-in modules imported by ES modules are loaded with require instead: an ES import of
 * a built-in makes Node build its ES-module facade, which reads every export, and node:http's
 * lazy WebSocket and EventSource exports then load Node's own copy of undici (about 10 ms of a
 * cold start, measured with --cpu-prof). A require also waits until the importing module runs.
 */
const builtinsByRequire = {
  name: 'builtins-by-require',
  setup(build) {
    build.onResolve({ filter: /^(node:)?[a-z_]+(\/[a-z_]+)?$/ }, (args) => {
      const name = args.path.replace(/^node:/, '');
      if (args.kind !== 'import-statement' || !builtinModules.includes(name)) return undefined;
      return { path: name, namespace: 'node-builtin' };
    });
    build.onLoad({ filter: /.*/, namespace: 'node-builtin' }, (args) => ({ contents: `module.exports = require(${JSON.stringify(`node:${args.path}`)});`, loader: 'js' }));
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
  plugins: [undiciParts, builtinsByRequire],
  sourcemap: false,
  legalComments: 'none',
  // No keepNames: it wraps every function and class of every package in a naming call at start-up
  // (50 KB of the Lambda bundle). Our error classes name themselves (functions/core/errors.ts).
  keepNames: false,
  logLevel: 'warning',
};

/**
 * One entry point bundled to `outfile`, with, beside it, the chunks `<name>-*.mjs` that it loads
 * only when a dynamic import asks for them (esbuild code splitting): the YAML parser for a YAML
 * configuration only, the AWS SDK's other credential providers only when the environment has no
 * credentials, and the CLI's cycle only for plan, apply and run.
 */
function bundleWithChunks(entry, outfile, options) {
  const name = basename(outfile, '.mjs');
  return build({
    ...common,
    entryPoints: { [name]: join(ROOT, entry) },
    outdir: dirname(outfile),
    splitting: true,
    chunkNames: `${name}-[name]-[hash]`,
    outExtension: { '.js': '.mjs' },
    ...options,
  });
}

/** The Lambda handler, minified (smaller bundle, faster cold start). */
export function bundleHandler(outfile, extra = {}) {
  return bundleWithChunks('functions/handler.ts', outfile, { minify: true, banner: { js: REQUIRE_SHIM }, ...extra });
}

/** The CLI, with its shebang so that the package's bin runs as is; --help and a usage error load no chunk. */
export function bundleCli(outfile, extra = {}) {
  return bundleWithChunks('functions/cli/bin.ts', outfile, { banner: { js: `#!/usr/bin/env node\n${REQUIRE_SHIM}` }, ...extra });
}
