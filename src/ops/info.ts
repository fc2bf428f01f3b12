import { RefusedBacking } from '../image/refused-backing.js';
import type { FormatDetails, Image } from '../image/types.js';

/** One layer as `qemu-img info --output=json` shows it (same field names and meanings). */
export interface ImageInfoJson {
  'virtual-size': number;
  filename: string;
  format: string;
  'actual-size'?: number;
  'cluster-size'?: number;
  encrypted?: boolean;
  'backing-filename'?: string;
  'full-backing-filename'?: string;
  'backing-filename-format'?: string;
  'dirty-flag': boolean;
  /** diskpipe's own: why the backing file was not opened (the trust rule refused it). */
  'backing-refused'?: string;
  /** diskpipe's own: why referenced files (data file, vmdk extents) were not opened. */
  'files-refused'?: string[];
  snapshots?: Array<Record<string, unknown>>;
  'format-specific'?: { type: string; data: Record<string, unknown> };
}

export interface LayerInfo {
  filename: string;
  details: FormatDetails;
  /** Why this layer's backing file was not opened, when the trust rule refused it. */
  backingRefused?: string;
}

/** Describes every layer of an image's backing chain, top first. */
export async function describeChain(image: Image, filename: string): Promise<LayerInfo[]> {
  const layers: LayerInfo[] = [];
  let name = filename;
  for (let layer: Image | undefined = image; layer; layer = layer.backing) {
    if (layer instanceof RefusedBacking) {
      const above = layers[layers.length - 1];
      if (above) above.backingRefused = layer.reason;
      break;
    }
    const details: FormatDetails = layer.describe?.() ?? {
      format: layer.format,
      virtualSize: layer.size,
    };
    if (details.actualSize === undefined) {
      const allocated = await layer.source?.allocatedSize?.();
      if (allocated !== undefined) details.actualSize = allocated;
    }
    layers.push({ filename: name, details });
    name = details.fullBackingFilename ?? details.backingFilename ?? '';
  }
  return layers;
}

export function infoJson({ filename, details: d, backingRefused }: LayerInfo): ImageInfoJson {
  const out: ImageInfoJson = {
    'virtual-size': d.virtualSize,
    filename,
    format: d.format,
    'dirty-flag': d.dirty ?? false,
  };
  if (d.actualSize !== undefined) out['actual-size'] = d.actualSize;
  if (d.clusterSize !== undefined) out['cluster-size'] = d.clusterSize;
  if (d.encrypted) out.encrypted = true;
  if (d.backingFilename !== undefined) out['backing-filename'] = d.backingFilename;
  if (d.fullBackingFilename !== undefined) out['full-backing-filename'] = d.fullBackingFilename;
  if (d.backingFormat !== undefined) out['backing-filename-format'] = d.backingFormat;
  if (backingRefused !== undefined) out['backing-refused'] = backingRefused;
  if (d.refusedFiles !== undefined) out['files-refused'] = d.refusedFiles;
  if (d.snapshots && d.snapshots.length > 0) {
    out.snapshots = d.snapshots.map((s) => ({
      id: s.id,
      name: s.name,
      'vm-state-size': s.vmStateSize,
      'date-sec': s.dateSec,
      'date-nsec': s.dateNsec,
      'vm-clock-sec': Math.floor(s.vmClockNsec / 1e9),
      'vm-clock-nsec': s.vmClockNsec % 1e9,
      ...(s.icount !== undefined ? { icount: s.icount } : {}),
    }));
  }
  if (d.specific) out['format-specific'] = { type: d.format, data: d.specific };
  return out;
}
