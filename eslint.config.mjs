// ESLint flat config: typescript-eslint's recommended rules (not the type-checked set) over the TypeScript
// sources. Layout and quotes are Prettier's (.prettierrc.json); nothing here is a style rule.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/', 'bench/results/', 'packages/*/dist/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // No-op defaults and interface-shaped callbacks name the parameters they ignore with a leading `_`.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      // Keys, header values and backend messages are checked for control characters: the regexes that
      // find them must name them.
      'no-control-regex': 'off',
    },
  },
  {
    // The native uWS binding is a .node file chosen at run time (platform, arch, ABI): only require() loads it.
    files: ['src/uws.ts', 'bench/lib/uws.ts'],
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    // The admin console's page script runs in a browser (src/ops/console.ts serves it), as a classic script.
    files: ['src/ops/console/*.js'],
    languageOptions: {
      sourceType: 'script',
      globals: {
        document: 'readonly',
        location: 'readonly',
        sessionStorage: 'readonly',
        fetch: 'readonly',
        setTimeout: 'readonly',
        TextEncoder: 'readonly',
        URLSearchParams: 'readonly',
      },
    },
  },
  {
    // The launcher is plain CommonJS run by Node (no extension, so named here).
    files: ['bin/kvgate'],
    languageOptions: {
      sourceType: 'commonjs',
      globals: { require: 'readonly', __dirname: 'readonly', process: 'readonly', console: 'readonly' },
    },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
