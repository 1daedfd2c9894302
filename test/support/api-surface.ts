/**
 * The package's public surface as a user gets it from the build: for each
 * entry (`parallel-wal`, `parallel-wal/replication`), every exported name and
 * its kind, read from the declarations (dist/esm/*.d.ts and dist/cjs/*.d.cts,
 * through the TypeScript compiler) and checked against the values the built
 * modules really export (an ES `import` of dist/esm, a `require` of dist/cjs).
 *
 * `npm run api:report` writes it to test/package/api-surface.json;
 * test/package/api-surface.test.ts compares the build with that file, so
 * that every change to the exports is deliberate and shows in review.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

export const REPO = path.resolve(import.meta.dirname, '../..');
/** The checked-in report. */
export const REPORT_PATH = path.join(REPO, 'test', 'package', 'api-surface.json');
/** The command that rewrites the report from the build. */
export const UPDATE_COMMAND = 'npm run build && npm run api:report';

/** Exported name → kind (`class`, `function`, `const`, `enum`, `interface`, `type`, or several joined by `+`). */
export type EntrySurface = Record<string, string>;
/** Package specifier → its surface. */
export type ApiSurface = Record<string, EntrySurface>;

/** The package's entries and their built files (declarations and modules, per format). */
export const ENTRIES: readonly {
  specifier: string;
  esm: { module: string; types: string };
  cjs: { module: string; types: string };
}[] = [
  {
    specifier: 'parallel-wal',
    esm: { module: 'dist/esm/index.js', types: 'dist/esm/index.d.ts' },
    cjs: { module: 'dist/cjs/index.cjs', types: 'dist/cjs/index.d.cts' },
  },
  {
    specifier: 'parallel-wal/replication',
    esm: { module: 'dist/esm/replication/index.js', types: 'dist/esm/replication/index.d.ts' },
    cjs: {
      module: 'dist/cjs/replication/index.cjs',
      types: 'dist/cjs/replication/index.d.cts',
    },
  },
];

/** Kinds that exist at run time (the others are erased). */
const VALUE_KINDS = new Set(['class', 'function', 'const', 'let', 'enum', 'namespace']);

/** The kinds a declared symbol has, in a fixed order. */
function kindsOf(symbol: ts.Symbol): string[] {
  const f = symbol.flags;
  const kinds: string[] = [];
  if (f & ts.SymbolFlags.Class) kinds.push('class');
  if (f & ts.SymbolFlags.Function) kinds.push('function');
  if (f & ts.SymbolFlags.Enum) kinds.push('enum');
  if (f & ts.SymbolFlags.BlockScopedVariable) {
    const declaration = symbol.valueDeclaration;
    const list = declaration?.parent;
    const isConst =
      list !== undefined && ts.isVariableDeclarationList(list)
        ? (list.flags & ts.NodeFlags.Const) !== 0
        : true;
    kinds.push(isConst ? 'const' : 'let');
  } else if (f & ts.SymbolFlags.FunctionScopedVariable) {
    kinds.push('var');
  }
  if (f & ts.SymbolFlags.ValueModule) kinds.push('namespace');
  if (f & ts.SymbolFlags.Interface && !(f & ts.SymbolFlags.Class)) kinds.push('interface');
  if (f & ts.SymbolFlags.TypeAlias) kinds.push('type');
  if (kinds.length === 0) kinds.push(`unknown(${f})`);
  return kinds;
}

/** Every exported name of a declaration file and its kind, read by the TypeScript compiler. */
export function declaredSurface(typesFile: string): EntrySurface {
  const file = path.resolve(REPO, typesFile);
  if (!fs.existsSync(file)) throw new Error(`${typesFile} missing: run npm run build first`);
  const program = ts.createProgram([file], {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2023,
    types: ['node'],
    noEmit: true,
  });
  const checker = program.getTypeChecker();
  const source = program.getSourceFile(file);
  const moduleSymbol = source === undefined ? undefined : checker.getSymbolAtLocation(source);
  if (moduleSymbol === undefined) throw new Error(`${typesFile} is not a module`);
  const surface: EntrySurface = {};
  for (const exported of checker.getExportsOfModule(moduleSymbol)) {
    const target =
      exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
    surface[exported.getName()] = kindsOf(target).join('+');
  }
  return sorted(surface);
}

/** The value exports a built module really has at run time: name → `typeof`. */
export function runtimeExports(moduleFile: string, format: 'esm' | 'cjs'): Record<string, string> {
  const file = path.resolve(REPO, moduleFile);
  if (!fs.existsSync(file)) throw new Error(`${moduleFile} missing: run npm run build first`);
  const load =
    format === 'esm'
      ? `const m = await import(${JSON.stringify(pathToUrl(file))});`
      : `const { createRequire } = await import('node:module');
         const m = createRequire(import.meta.url)(${JSON.stringify(file)});`;
  const program = `${load}
    const out = {};
    for (const name of Object.keys(m)) out[name] = typeof m[name];
    console.log(JSON.stringify(out));`;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', program], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (run.status !== 0) throw new Error(`loading ${moduleFile} failed:\n${run.stderr}`);
  return JSON.parse(run.stdout.trim()) as Record<string, string>;
}

function pathToUrl(file: string): string {
  return new URL(`file://${file}`).href;
}

/**
 * Problems where a built module and its declarations disagree: a value the
 * module exports but the declarations do not name (or name only as a type),
 * a declared value the module lacks, a class or function that is not a function.
 */
export function runtimeMismatches(
  declared: EntrySurface,
  runtime: Record<string, string>,
  label: string,
): string[] {
  const problems: string[] = [];
  for (const [name, kind] of Object.entries(declared)) {
    const kinds = kind.split('+');
    const isValue = kinds.some((k) => VALUE_KINDS.has(k));
    const actual = runtime[name];
    if (isValue && actual === undefined) {
      problems.push(`${label}: declared ${kind} ${name} is missing`);
    }
    if (!isValue && actual !== undefined) {
      problems.push(`${label}: ${name} is a value (${actual}) but declared only as ${kind}`);
    }
    if ((kinds.includes('class') || kinds.includes('function')) && actual !== undefined) {
      if (actual !== 'function') problems.push(`${label}: ${kind} ${name} is a ${actual}`);
    }
  }
  for (const [name, type] of Object.entries(runtime)) {
    if (declared[name] === undefined) problems.push(`${label}: ${name} (${type}) is not declared`);
  }
  return problems;
}

/**
 * The surface of the build: the ESM declarations' names and kinds, checked
 * against the CommonJS declarations and both built modules. Throws, listing
 * every disagreement, if the formats do not export the same thing.
 */
export function builtSurface(): ApiSurface {
  const surface: ApiSurface = {};
  const problems: string[] = [];
  for (const entry of ENTRIES) {
    const esm = declaredSurface(entry.esm.types);
    const cjs = declaredSurface(entry.cjs.types);
    problems.push(
      ...diffSurface({ [entry.specifier]: esm }, { [entry.specifier]: cjs }).map(
        (line) => `${entry.cjs.types} vs ${entry.esm.types}: ${line}`,
      ),
    );
    problems.push(
      ...runtimeMismatches(esm, runtimeExports(entry.esm.module, 'esm'), entry.esm.module),
      ...runtimeMismatches(esm, runtimeExports(entry.cjs.module, 'cjs'), entry.cjs.module),
    );
    surface[entry.specifier] = esm;
  }
  if (problems.length > 0) {
    throw new Error(`the built formats disagree:\n${problems.join('\n')}`);
  }
  return surface;
}

/**
 * What changed from `expected` (the checked-in report) to `actual` (the
 * build), one line per export: `+ name (kind)` added, `- name (kind)`
 * removed, `~ name: old → new` kind changed; entries as `+ entry` / `- entry`.
 * Empty when they are the same.
 */
export function diffSurface(expected: ApiSurface, actual: ApiSurface): string[] {
  const lines: string[] = [];
  const entries = [...new Set([...Object.keys(expected), ...Object.keys(actual)])].sort();
  for (const entry of entries) {
    const before = expected[entry];
    const after = actual[entry];
    if (before === undefined) {
      lines.push(`+ entry ${entry}`);
      continue;
    }
    if (after === undefined) {
      lines.push(`- entry ${entry}`);
      continue;
    }
    const names = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
    for (const name of names) {
      const was = before[name];
      const now = after[name];
      if (was === undefined) lines.push(`+ ${entry}: ${name} (${now})`);
      else if (now === undefined) lines.push(`- ${entry}: ${name} (${was})`);
      else if (was !== now) lines.push(`~ ${entry}: ${name}: ${was} → ${now}`);
    }
  }
  return lines;
}

/** The report file's text for a surface: names in order, one per line. */
export function formatReport(surface: ApiSurface): string {
  const ordered: ApiSurface = {};
  for (const entry of Object.keys(surface).sort()) ordered[entry] = sorted(surface[entry] ?? {});
  return `${JSON.stringify(ordered, null, 2)}\n`;
}

/** The checked-in report. */
export function readReport(): ApiSurface {
  return JSON.parse(fs.readFileSync(REPORT_PATH, 'utf8')) as ApiSurface;
}

function sorted(surface: EntrySurface): EntrySurface {
  const out: EntrySurface = {};
  for (const name of Object.keys(surface).sort()) out[name] = surface[name] as string;
  return out;
}
