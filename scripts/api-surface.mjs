// The public API surface, read from the compiled declarations (dist/src/index.d.ts, after tsc):
// every exported name with its kind, and the types the exports mention that are not exported
// (a caller could not name them). test/api.test.ts compares the list with api/exports.txt.
//
//   node scripts/api-surface.mjs            prints the surface, then any unexported types
//   node scripts/api-surface.mjs --update   rewrites api/exports.txt (a deliberate API change)
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const SNAPSHOT = join(repo, 'api', 'exports.txt');

function kindOf(symbol) {
  const f = symbol.flags;
  if (f & ts.SymbolFlags.Class) return 'class';
  if (f & ts.SymbolFlags.Function) return 'function';
  if (f & ts.SymbolFlags.Enum) return 'enum';
  if (f & ts.SymbolFlags.Variable) return 'const';
  if (f & ts.SymbolFlags.Interface) return 'interface';
  if (f & ts.SymbolFlags.TypeAlias) return 'type';
  if (f & ts.SymbolFlags.Module) return 'namespace';
  return 'other';
}

/** `{ lines, missing }`: "kind name" per export (sorted), and unexported types they use. */
export function apiSurface(dts = join(repo, 'dist', 'src', 'index.d.ts')) {
  const program = ts.createProgram([dts], { noEmit: true, skipLibCheck: true });
  const checker = program.getTypeChecker();
  const file = program.getSourceFile(dts);
  if (!file) throw new Error(`${dts} not found: run npx tsc -p . first`);
  const ownRoot = dirname(dts);
  const resolveAlias = (s) => (s.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(s) : s);
  const exported = new Map();
  for (const s of checker.getExportsOfModule(checker.getSymbolAtLocation(file))) {
    exported.set(resolveAlias(s), s.getName());
  }
  const lines = [...exported]
    .map(([s, name]) => `${kindOf(s)} ${name}`)
    .sort((a, b) => a.split(' ')[1].localeCompare(b.split(' ')[1]) || a.localeCompare(b));

  // Walk the declarations of every export (and of every type found) for the types they name.
  const missing = new Map();
  const seen = new Set();
  const queue = [...exported.keys()];
  const visitNode = (node, from) => {
    // Private members are not part of the surface.
    if (ts.canHaveModifiers(node) && ts.getModifiers(node)?.some((m) => m.kind === ts.SyntaxKind.PrivateKeyword)) {
      return;
    }
    let name;
    if (ts.isTypeReferenceNode(node)) name = node.typeName;
    else if (ts.isExpressionWithTypeArguments(node)) name = node.expression;
    else if (ts.isTypeQueryNode(node)) name = node.exprName;
    if (name) {
      const target = checker.getSymbolAtLocation(name);
      if (target) {
        const s = resolveAlias(target);
        const decl = s.declarations?.[0];
        const own = decl && resolve(decl.getSourceFile().fileName).startsWith(ownRoot);
        if (own && !(s.flags & ts.SymbolFlags.TypeParameter) && !exported.has(s)) {
          const where = `${s.getName()} (${decl.getSourceFile().fileName.slice(ownRoot.length + 1)}), used by ${from}`;
          if (!missing.has(s)) missing.set(s, where);
        }
        if (own && !seen.has(s)) queue.push(s);
      }
    }
    ts.forEachChild(node, (child) => visitNode(child, from));
  };
  while (queue.length > 0) {
    const s = queue.shift();
    if (seen.has(s)) continue;
    seen.add(s);
    for (const d of s.declarations ?? []) visitNode(d, exported.get(s) ?? s.getName());
  }
  return { lines, missing: [...missing.values()].sort() };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { lines, missing } = apiSurface();
  if (process.argv.includes('--update')) {
    writeFileSync(SNAPSHOT, `${lines.join('\n')}\n`);
    console.log(`api-surface: wrote ${lines.length} exports to ${SNAPSHOT}`);
  } else {
    console.log(lines.join('\n'));
    const old = readFileSync(SNAPSHOT, 'utf8');
    if (old !== `${lines.join('\n')}\n`) console.log('\n(differs from api/exports.txt)');
  }
  for (const m of missing) console.error(`not exported: ${m}`);
}
