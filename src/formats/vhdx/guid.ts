/**
 * Microsoft GUIDs as VHDX stores them: the first three fields little-endian, the last eight
 * bytes as they are.
 */

export function guidAt(buf: Uint8Array, at: number): string {
  const b = buf.subarray(at, at + 16);
  const hex = (from: number, to: number, reverse: boolean) => {
    const part = Array.from(b.subarray(from, to));
    if (reverse) part.reverse();
    return part.map((x) => x.toString(16).padStart(2, '0')).join('');
  };
  return `${hex(0, 4, true)}-${hex(4, 6, true)}-${hex(6, 8, true)}-${hex(8, 10, false)}-${hex(10, 16, false)}`;
}

export const NULL_GUID = '00000000-0000-0000-0000-000000000000';

export const BAT_REGION = '2dc27766-f623-4200-9d64-115e9bfd4a08';
export const METADATA_REGION = '8b7ca206-4790-4b9a-b8fe-575f050f886e';

export const FILE_PARAMETERS = 'caa16737-fa36-4d43-b3b6-33f0aa44e76b';
export const VIRTUAL_DISK_SIZE = '2fa54224-cd1b-4876-b211-5dbed83bf4b8';
export const PAGE_83_DATA = 'beca12ab-b2e6-4523-93ef-c309e000c746';
export const LOGICAL_SECTOR_SIZE = '8141bf1d-a96f-4709-ba47-f233a8faab5f';
export const PHYSICAL_SECTOR_SIZE = 'cda348c7-445d-4471-9cc9-e9885251c556';
export const PARENT_LOCATOR = 'a8d35f2d-b30b-454d-abf7-d3d84834ab0c';
