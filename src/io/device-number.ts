/** Linux device numbers (dev_t) as stat reports them, split the way glibc encodes them. */

export interface DeviceNumber {
  major: number;
  minor: number;
}

/** Major in bits 8-19 and 44+, minor in bits 0-7 and 20-43. */
export function splitDeviceNumber(dev: number | bigint): DeviceNumber {
  const d = BigInt(dev);
  return {
    major: Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn)),
    minor: Number((d & 0xffn) | ((d >> 12n) & ~0xffn)),
  };
}

/** The sysfs directory of a block device (a symlink to its place under /sys/devices). */
export function sysBlockPath(rdev: number | bigint): string {
  const { major, minor } = splitDeviceNumber(rdev);
  return `/sys/dev/block/${major}:${minor}`;
}
