/**
 * Opening a qcow2 file for writing in place: what the writer refuses, and the shared tables.
 * Refused: anything not a local file opened for writing, the corrupt bit, the dirty bit (its
 * refcounts cannot be trusted until repaired), extended L2 entries, an external data file,
 * internal snapshots (clusters shared with them would need copy-on-write) and persistent
 * bitmaps (they would silently go stale). Unknown incompatible features are refused by the
 * header parser for reading already.
 */
import { NotCapableError, UnsupportedFeatureError } from '../../../errors.js';
import type { ByteSource } from '../../../image/types.js';
import { LocalFile } from '../../../io/file.js';
import {
  AUTOCLEAR_BITMAPS,
  INCOMPAT_CORRUPT,
  INCOMPAT_DATA_FILE,
  INCOMPAT_DIRTY,
  INCOMPAT_EXTL2,
  type Qcow2Header,
} from '../header.js';
import { Refcounts } from './refcounts.js';
import { Qcow2Tables } from './tables.js';

export async function openTables(
  source: ByteSource,
  header: Qcow2Header,
  l1: Uint8Array,
): Promise<Qcow2Tables> {
  const who = source.name;
  const refuse = (why: string) =>
    new UnsupportedFeatureError(`${who}: cannot write this qcow2 image in place: ${why}`);
  if (!(source instanceof LocalFile) || !source.writable || source.blockDevice) {
    throw new NotCapableError(`${who}: qcow2 images are written in place only as local files`);
  }
  if (header.incompatible & INCOMPAT_CORRUPT) {
    throw refuse('it is marked corrupt (repair it with qemu-img check -r all)');
  }
  if (header.incompatible & INCOMPAT_DIRTY) {
    throw refuse('its dirty bit is set (lazy refcounts; repair it with qemu-img check -r all)');
  }
  if (header.incompatible & INCOMPAT_EXTL2) throw refuse('extended L2 entries (subclusters)');
  if (header.incompatible & INCOMPAT_DATA_FILE) throw refuse('it has an external data file');
  if (header.nbSnapshots > 0) throw refuse(`it has ${header.nbSnapshots} internal snapshot(s)`);
  if (header.autoclear & AUTOCLEAR_BITMAPS) throw refuse('it has persistent dirty bitmaps');
  const refcounts = await Refcounts.load(
    source,
    header.clusterSize,
    header.refcountOrder,
    header.refcountTableOffset,
    header.refcountTableClusters,
  );
  return new Qcow2Tables(source, header.clusterSize, l1, header.l1TableOffset, refcounts);
}
