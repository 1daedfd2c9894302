/**
 * The layers of src/, lowest first; an import may only point to its own
 * layer or a lower one (docs/design.md, "Layers"):
 *
 *   format → storage → engine → control → store → replication → cli
 *
 * plus the NATS rule: only src/replication/nats/ imports the `@nats-io`
 * packages (everything else in replication talks to its ReplicaClient).
 * Run by `npm run lint` (`depcruise src`); test/lint/layers.test.ts checks
 * that a back-arrow is reported.
 */
const path = require('node:path');

const layers = ['format', 'storage', 'engine', 'control', 'store', 'replication', 'cli'];

/** One rule per layer: nothing in it may import a layer above it. */
const backArrows = layers.slice(0, -1).map((layer, i) => ({
  name: `no-back-arrow-from-${layer}`,
  comment: `src/${layer}/ is below ${layers.slice(i + 1).join(', ')}: it must not import them`,
  severity: 'error',
  from: { path: `^src/${layer}/` },
  to: { path: `^src/(${layers.slice(i + 1).join('|')})/` },
}));

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    ...backArrows,
    {
      name: 'no-layer-from-shared-root',
      comment: 'src/errors.ts and src/stats-json.ts sit below every layer',
      severity: 'error',
      from: { path: '^src/(errors|stats-json)\\.ts$' },
      to: { path: `^src/(${layers.join('|')})/` },
    },
    {
      name: 'nats-only-in-its-client',
      comment:
        'the NATS client packages are imported only by src/replication/nats/ (the ReplicaClient implementation)',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/replication/nats/' },
      to: { path: '@nats-io/' },
    },
    {
      name: 'not-to-unresolvable',
      comment: 'an import that resolves to nothing is a typo or a missing dependency',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: path.join(__dirname, 'tsconfig.json') },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      extensions: ['.ts', '.js', '.d.ts'],
    },
  },
};
