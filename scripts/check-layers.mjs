// Checks the import structure of src/ (run by `npm test` before the tests; no dependencies).
//
// Every file belongs to a layer, and a file may import only from its own layer or lower ones.
// Lowest first:
//
//   errors       src/errors.ts: the error tree
//   types        src/image/types.ts: the Image and ByteSource contract (types only)
//   io           src/io: files and the system calls Node lacks
//   codec        src/codec: the decompression engine (worker pool, batch decoders, xxhash64)
//   image        src/image: the base and wrapper classes, extents, the trust rule
//   nbd          src/nbd: protocol codecs, client, server (they speak to Images)
//   formats      src/formats: probes and readers/writers of each format
//   filters      src/filters: images wrapping images (overlay, sparsify)
//   sources      src/sources: local, HTTP, NBD, tar and decompressed byte sources
//   open         src/open.ts, src/open-stream.ts: a name → an Image or a stream
//   ops          src/ops: copy, convert, compare, checksum, clone, map, info, create
//   cache        src/cache: the image cache (pull, disks, maintenance)
//   cli          src/cli: the command line
//   api          src/index.ts: the public re-exports
//
// It also fails on any import cycle between files (type-only imports included: a cycle of types
// is still two files that cannot be understood one without the other).
//
//   node scripts/check-layers.mjs          exits 1 and lists every violation
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';

const LAYERS = [
  ['errors', ['errors.ts']],
  ['types', ['image/types.ts']],
  ['io', ['io/']],
  ['codec', ['codec/']],
  ['image', ['image/']],
  ['nbd', ['nbd/']],
  ['formats', ['formats/']],
  ['filters', ['filters/']],
  ['sources', ['sources/']],
  ['open', ['open.ts', 'open-stream.ts']],
  ['ops', ['ops/']],
  ['cache', ['cache/']],
  ['cli', ['cli/']],
  ['api', ['index.ts']],
];

/** Layer index of a path relative to src/ (the most specific prefix wins). */
function layerOf(file) {
  let best = -1;
  let bestLength = -1;
  LAYERS.forEach(([, prefixes], i) => {
    for (const p of prefixes) {
      const hit = p.endsWith('/') ? file.startsWith(p) : file === p;
      if (hit && p.length > bestLength) {
        best = i;
        bestLength = p.length;
      }
    }
  });
  return best;
}

function sourceFiles(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return name.endsWith('.ts') && !name.endsWith('.d.ts') ? [path] : [];
  });
}

const IMPORT =
  /(?:^|\n)\s*(?:import|export)\s[^;]*?\sfrom\s*['"](\.[^'"]+)['"]|(?:^|\n)\s*import\s*['"](\.[^'"]+)['"]|\bimport\(\s*['"](\.[^'"]+)['"]\s*\)/g;

/** Relative imports of one file, as paths relative to src/. */
function importsOf(root, file) {
  const text = readFileSync(join(root, file), 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/[^\n]*/g, '');
  const out = new Set();
  for (const m of text.matchAll(IMPORT)) {
    const spec = m[1] ?? m[2] ?? m[3];
    const target = normalize(join(dirname(file), spec)).replace(/\.js$/, '.ts');
    out.add(target.split('\\').join('/'));
  }
  return [...out];
}

export function checkLayers(root) {
  const files = sourceFiles(root).map((f) => relative(root, f).split('\\').join('/'));
  const graph = new Map(files.map((f) => [f, importsOf(root, f)]));
  const problems = [];
  for (const [file, targets] of graph) {
    const from = layerOf(file);
    if (from < 0) problems.push(`${file}: in no layer (add it to scripts/check-layers.mjs)`);
    for (const t of targets) {
      const to = layerOf(t);
      if (to > from) {
        problems.push(
          `${file} (${LAYERS[from]?.[0]}) imports ${t} (${LAYERS[to]?.[0]}), a higher layer`,
        );
      }
    }
  }
  problems.push(...cycles(graph).map((c) => `import cycle: ${c.join(' -> ')}`));
  return problems;
}

/** Every cycle once (Tarjan's strongly connected components, then one path through each). */
function cycles(graph) {
  const index = new Map();
  const low = new Map();
  const stack = [];
  const onStack = new Set();
  const found = [];
  let next = 0;
  const visit = (v) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v), low.get(w)));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), index.get(w)));
    }
    if (low.get(v) !== index.get(v)) return;
    const component = [];
    let w;
    do {
      w = stack.pop();
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    const self = (graph.get(v) ?? []).includes(v);
    if (component.length > 1 || self) found.push(pathThrough(graph, new Set(component), v));
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) visit(v);
  return found;
}

/** A shortest cycle from `start` back to itself inside one component. */
function pathThrough(graph, component, start) {
  const prev = new Map([[start, undefined]]);
  const queue = [start];
  while (queue.length > 0) {
    const v = queue.shift();
    for (const w of graph.get(v) ?? []) {
      if (w === start) {
        const path = [start];
        for (let u = v; u !== start; u = prev.get(u)) path.splice(1, 0, u);
        return [...path, start];
      }
      if (component.has(w) && !prev.has(w)) {
        prev.set(w, v);
        queue.push(w);
      }
    }
  }
  return [start, start];
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const problems = checkLayers(join(dirname(new URL(import.meta.url).pathname), '..', 'src'));
  for (const p of problems) console.error(`check-layers: ${p}`);
  if (problems.length > 0) process.exit(1);
  console.log('check-layers: src/ imports follow the layers, no cycles');
}
