/** Options several commands take, each defined once and spread into their tables. */
import { flag, grouped, type Help, list, type OptionTable, value } from './options.js';

/** The trust rule for references inside images (DESIGN.md), one help line. */
export function trustOptions(help: Help = 'the trust rule, as for reading') {
  return grouped(help, {
    'allow-backing': list('DIR', []),
    untrusted: flag([]),
    'cache-dir': value('DIR', []),
  });
}

/** The minimum transfer rate of HTTP reads and downloads (curl's --speed-limit/--speed-time). */
export const RATE_OPTIONS = {
  'min-rate': value('SIZE', 'fail a download slower than SIZE bytes/s (default 1K; 0: never)...'),
  'min-rate-window': value('SEC', '...averaged over SEC seconds (default 30)'),
} as const satisfies OptionTable;

/** HTTP(S) settings of the commands that download (pull, disk create): rate and TLS. */
export const HTTP_OPTIONS = {
  ...RATE_OPTIONS,
  'ca-cert': value('FILE', "trust the CA certificates in FILE (PEM) besides the system's"),
  insecure: flag('accept any HTTPS server certificate'),
} as const satisfies OptionTable;

/** How a source is read: archive member, staging bound, rate, TLS. */
export const SOURCE_OPTIONS = grouped(
  [
    'how the source is read: archive member, staging bound, minimum rate,',
    'TLS (see diskpipe --help)',
  ],
  {
    member: value('NAME', []),
    'max-staged': value('SIZE', []),
    ...RATE_OPTIONS,
    'ca-cert': value('FILE', []),
    insecure: flag([]),
  },
);

/** -U: read an image even while another program writes it (qemu-img's --force-share). */
export const FORCE_SHARE_OPTION = {
  'force-share': flag(
    [
      'read IMAGE even while a VM or qemu-nbd writes it (what is read may then',
      'be inconsistent); without it such an image is refused, as by qemu-img',
    ],
    { short: 'U', label: '-U, --force-share' },
  ),
} as const satisfies OptionTable;

/** What every image-reading command takes besides -f: the trust rule and source options. */
export const READ_OPTIONS = {
  ...trustOptions(),
  ...SOURCE_OPTIONS,
  ...FORCE_SHARE_OPTION,
} as const;

/** -p: a progress bar (copy, compare, checksum). */
export const PROGRESS_OPTION = {
  progress: flag('progress bar on stderr (terminal only)', { short: 'p' }),
} as const satisfies OptionTable;

/** -F FMT: the format of a backing file (convert -B, create -b). */
export const BACKING_FORMAT_OPTION = {
  'backing-format': value('FMT', 'format of BACKING (default: probed)', { short: 'F' }),
} as const satisfies OptionTable;

/** --cluster-size SIZE of a new qcow2 image (convert, create). */
export const CLUSTER_SIZE_OPTION = {
  'cluster-size': value('SIZE', 'qcow2 cluster size, 512 to 2M (default 64K)'),
} as const satisfies OptionTable;

/** --cache-dir DIR of the commands that work on the cache (pull, disk, cache). */
export const CACHE_DIR_OPTION = {
  'cache-dir': value(
    'DIR',
    'cache location (default $DISKPIPE_CACHE, else $XDG_CACHE_HOME/diskpipe)',
  ),
} as const satisfies OptionTable;

/** --sparsify of what goes into the cache (pull, disk create). */
export const CACHED_SPARSIFY_OPTION = {
  sparsify: flag([
    'blocks the guest filesystems mark free are stored as zeroes (see',
    'convert --sparsify); recorded beside the plain variant',
  ]),
} as const satisfies OptionTable;
