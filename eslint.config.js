import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const zodNamespaceOnly = {
  selector: "ImportDeclaration[source.value=/^zod(\\/mini)?$/] > :matches(ImportSpecifier, ImportDefaultSpecifier)",
  message: "Use import * as z from 'zod' (or 'zod/mini'): the named import keeps all of zod's locales (about 270 KB) in the bundles.",
};

/** The bundles' schemas are zod mini's: a classic schema builds some fifty methods as it is made (docs/performance.md). */
const zodMiniInBundles = {
  selector: "ImportDeclaration[source.value='zod']",
  message: "Use import * as z from 'zod/mini' in the product code: classic zod's schemas cost a CLI start-up about 10 ms more to build.",
};

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.serverless/**', 'coverage/**', 'research/lab/results/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-non-null-assertion': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-syntax': ['error', zodNamespaceOnly],
    },
  },
  {
    files: ['functions/**/*.ts'],
    rules: { 'no-restricted-syntax': ['error', zodNamespaceOnly, zodMiniInBundles, { selector: 'ExportDefaultDeclaration', message: 'Use named exports.' }] },
  },
  {
    // The reports' schemas describe them for their JSON Schemas (npm run schema) and the tests; no bundle loads them.
    files: ['functions/core/report-schema.ts', 'functions/core/doctor-schema.ts'],
    rules: { 'no-restricted-syntax': ['error', zodNamespaceOnly, { selector: 'ExportDefaultDeclaration', message: 'Use named exports.' }] },
  },
  {
    files: ['**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: { require: 'readonly', module: 'writable' } },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    files: ['**/*.mjs', '**/*.js'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', URL: 'readonly', setTimeout: 'readonly' } },
  },
);
