#!/usr/bin/env node
/**
 * Keeps the source tree's shape (docs/design.md#layers): no file in `src/` over
 * `fileLinesMax` lines and no function over `functionLinesMax` lines, so that a
 * reader can see each concept and each step of the commit and recovery paths
 * whole. Run by `npm run lint`; `node scripts/check-shape.mjs [dir]` checks
 * another tree (the test suite points it at a fixture that breaks both limits).
 *
 * Exit code 0: within both limits; 1: the offenders are listed.
 */
import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

/** A file of one concept: about 600 lines, with room for its doc comments. */
export const fileLinesMax = 620;
/** A function a reader sees whole. */
export const functionLinesMax = 70;

/** Every `.ts` file under `dir`, sorted. */
function sourceFiles(dir) {
  const found = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) found.push(...sourceFiles(full));
    else if (entry.name.endsWith('.ts')) found.push(full);
  }
  return found.sort();
}

/** True for a node that has a body of its own: functions, methods, accessors, constructors. */
function isFunctionLike(node) {
  return (
    (ts.isFunctionDeclaration(node) ||
      ts.isMethodDeclaration(node) ||
      ts.isArrowFunction(node) ||
      ts.isFunctionExpression(node) ||
      ts.isConstructorDeclaration(node) ||
      ts.isGetAccessorDeclaration(node) ||
      ts.isSetAccessorDeclaration(node)) &&
    node.body !== undefined
  );
}

/** The offences in one file: `{ file, line, what, lines }`. */
function checkFile(file) {
  const text = fs.readFileSync(file, 'utf8');
  const offences = [];
  const fileLines = text.split('\n').length - (text.endsWith('\n') ? 1 : 0);
  if (fileLines > fileLinesMax) {
    offences.push({ file, line: 1, what: 'file', lines: fileLines, max: fileLinesMax });
  }
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const visit = (node) => {
    if (isFunctionLike(node)) {
      const first = source.getLineAndCharacterOfPosition(node.getStart(source)).line;
      const last = source.getLineAndCharacterOfPosition(node.end).line;
      const lines = last - first + 1;
      if (lines > functionLinesMax) {
        const name = node.name?.getText(source) ?? '(anonymous function)';
        offences.push({ file, line: first + 1, what: name, lines, max: functionLinesMax });
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return offences;
}

const root = path.resolve(process.argv[2] ?? 'src');
const offences = sourceFiles(root).flatMap(checkFile);
if (offences.length === 0) {
  process.stdout.write(
    `shape: ${root}: no file over ${fileLinesMax} lines, no function over ${functionLinesMax}\n`,
  );
} else {
  for (const o of offences) {
    const where = `${path.relative(process.cwd(), o.file)}:${o.line}`;
    process.stderr.write(`${where}: ${o.what} has ${o.lines} lines (at most ${o.max})\n`);
  }
  process.stderr.write(
    `shape: ${offences.length} over the limits; cut along the seams a reader needs to see whole\n`,
  );
  process.exitCode = 1;
}
