// ESLint (flat config) for the dashboard's code, run by `make lint` from the
// repository root: eslint --config e2e/browser/eslint.config.js. File
// patterns are relative to the root; eslint and its packages are pinned in
// this directory's package.json. Rules: eslint's recommended set only.
import js from '@eslint/js';
import globals from 'globals';

export default [
  {
    // The dashboard: browser ES modules embedded in the gateway, no build step.
    files: ['services/gateway/internal/gateway/web/**/*.js'],
    ...js.configs.recommended,
    languageOptions: {
      ecmaVersion: 'latest',
      sourceType: 'module',
      globals: globals.browser,
    },
  },
  {
    // The browser tests: node ES modules (playwright-core). Callbacks passed
    // to page.evaluate run in the page, so browser globals are known too.
    files: ['e2e/browser/**/*.mjs', 'e2e/browser/eslint.config.js'],
    ...js.configs.recommended,
    languageOptions: {
      ecmaVersion: 'latest',
      sourceType: 'module',
      globals: { ...globals.node, ...globals.browser },
    },
  },
  {
    ignores: ['**/node_modules/**', 'e2e/browser/screenshots/**'],
  },
];
