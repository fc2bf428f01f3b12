/**
 * Where the worker threads' scripts are. By default each pool starts its worker from the file
 * beside it (`new URL('./worker.js', import.meta.url)`, a form bundlers recognise). Under a
 * bundler that does not, or inside an Electron asar archive (worker threads cannot start from
 * one), the application gives the scripts' real paths once, before the first image is read.
 * Process-wide, as the pools are: one decode pool and one hash pool serve every image.
 */

/**
 * `decode`: compressed qcow2/vmdk clusters (codec); `hash`: blkhash checksums (ops);
 * `digest`: a download's sha256/sha512 and a raw stream's blkhash (cache); `unpack`: a .xz or
 * .bz2 stream decoded on liblzma/libbz2 (sources).
 */
export type WorkerScript = 'decode' | 'hash' | 'digest' | 'unpack';

const overrides = new Map<WorkerScript, string | URL>();

/**
 * Starts later workers from these scripts (a path or a file: URL each). The scripts are the
 * package's `diskpipe/workers/decode`, `diskpipe/workers/hash`, `diskpipe/workers/digest` and
 * `diskpipe/workers/unpack` entry points (or their
 * bundled output). Workers already running keep their script.
 */
export function setWorkerScripts(scripts: Partial<Record<WorkerScript, string | URL>>): void {
  for (const [name, path] of Object.entries(scripts) as [WorkerScript, string | URL][]) {
    if (path === undefined) overrides.delete(name);
    else overrides.set(name, path);
  }
}

/** The script a pool should start instead of its own, if the application set one. */
export function workerScriptOverride(name: WorkerScript): string | URL | undefined {
  return overrides.get(name);
}
