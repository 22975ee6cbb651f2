import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// ---------------------------------------------------------------- layers
// Which folder may import which (DESIGN.md, "Parts and folders"). Folders are
// in layers, lowest first: a source file may import its own folder and the
// folders of lower layers, never a higher one. So no two folders import each
// other (no cycle between folders can form), and the data-model folders
// (model, record, policy, spec, plan) never import a service, apply, the CLI
// or a provider. Tests, testdata and benchmarks are not held to it.
//
// If you add a top-level folder, put it in LAYERS; if a folder must import a
// higher one, the design changed: change the order here and say why.
const LAYERS = [
  'engine/diags', // diagnostics and their codes: imports nothing
  'engine/model', // addresses, sizes, operations, the plan document, the loaded stack's views
  'engine/transport', // TLS material and checks of every service and client
  'engine/observability', // metrics and probes of the services
  'protocol', // the wire contract and the HTTP layer both services share
  'engine/durability',
  'engine/record',
  'engine/policy', // the pack: its lifecycle and rules
  'engine/spec', // loads a stack: its specs and its pack
  'engine/plan',
  'engine/ui', // the record's dashboard, served by a service
  'engine/authority',
  'providers', // providers, DMZ client, drivers, embedded start-up
  'engine/apply',
  'engine/cli',
];

/** An import path that reaches `folder` (relative, from anywhere in the repo). */
function reaching(folder) {
  const last = folder.split('/').at(-1);
  const tail = folder.startsWith('engine/') ? `(engine/)?${last}` : last;
  return `^(\\.\\./)+${tail}(/|\\.ts$|$)`;
}

/**
 * Imports a file of `folder` may not make: every higher layer, less
 * `allow` (an exception below), plus `extra` patterns of its own.
 */
function layerPatterns(folder, allow = [], extra = []) {
  const higher = LAYERS.slice(LAYERS.indexOf(folder) + 1).filter((f) => !allow.includes(f));
  return [
    ...higher.map((f) => ({ regex: reaching(f), message: `${folder} is below ${f} (eslint.config.js, LAYERS): it may not import it.` })),
    ...extra,
  ];
}

/**
 * fleet apply reaches a DMZ client only through its data center's provider
 * (providers/provider.ts): engine/apply may not import the HTTP client, the
 * DMZ client service or a driver.
 */
const APPLY_EXTRA = [
  {
    regex: '^(\\.\\./)+providers/(client|http-send)\\.ts$|^(\\.\\./)+providers/(dmz-client|drivers)/',
    message: 'engine/apply reaches a DMZ client only through a provider (providers/provider.ts).',
  },
];

const NOT_SOURCE = ['**/*.test.ts', '**/testdata/**', '**/test-support.ts', '**/testing.ts'];

const layerConfigs = LAYERS.map((folder) => ({
  files: [`${folder}/**/*.ts`],
  ignores: NOT_SOURCE,
  rules: { 'no-restricted-imports': ['error', { patterns: layerPatterns(folder, [], folder === 'engine/apply' ? APPLY_EXTRA : []) }] },
}));


export default tseslint.config(
  { ignores: ['node_modules/**', 'dist/**', '**/node_modules/**', '**/.fleet/**', 'specs/types/**', 'specs/validators/**', 'coverage/**', '.ci/cache/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
    },
  },
  ...layerConfigs,
  {
    files: ['bin/**/*.mjs', 'providers/pulumi/**/*.mjs', 'bench/**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', URL: 'readonly', performance: 'readonly', Buffer: 'readonly' } },
  },
);
