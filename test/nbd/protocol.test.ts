import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as P from '../../src/nbd/protocol.js';
import { formatNbdUri, parseNbdUri } from '../../src/nbd/uri.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const bytes = (h: string) => new Uint8Array(Buffer.from(h.replace(/\s+/g, ''), 'hex'));

test('request header: encode, decode, bad magic', () => {
  const req = {
    flags: P.CMD_FLAG_FUA,
    type: P.CMD_WRITE,
    cookie: 0x0102030405060708n,
    offset: 2 ** 40 + 5,
    length: 4096,
  };
  const b = P.encodeRequest(req);
  assert.equal(
    hex(b),
    '25609513' + '0001' + '0001' + '0102030405060708' + '0000010000000005' + '00001000',
  );
  assert.deepEqual(P.decodeRequest(b), req);
  b[0] = 0;
  assert.equal(P.decodeRequest(b), undefined);
});

test('u64 above 2^53 never reads smaller than it is', () => {
  const b = bytes('ffffffffffffffff');
  assert.ok(P.readU64(b, 0) >= 2 ** 64 - 4096);
  assert.equal(P.readU64(bytes('001fffffffffffff'), 0), Number.MAX_SAFE_INTEGER);
});

test('greeting and option reply framing', () => {
  const g = P.encodeGreeting(P.FLAG_FIXED_NEWSTYLE | P.FLAG_NO_ZEROES);
  assert.equal(hex(g), '4e42444d41474943' + '49484156454f5054' + '0003');
  assert.equal(P.decodeGreeting(g), 3);
  assert.equal(P.decodeGreeting(g.subarray(0, 17)), undefined);
  const r = P.encodeOptionReply(P.OPT_GO, P.REP_ERR_UNKNOWN, P.encodeString('no'));
  assert.equal(hex(r), '0003e889045565a9' + '00000007' + '80000006' + '00000002' + '6e6f');
  assert.deepEqual(P.decodeOptionReplyHeader(r), { option: 7, type: P.REP_ERR_UNKNOWN, length: 2 });
});

test('NBD_OPT_GO data: round trip and malformed lengths', () => {
  const data = P.encodeInfoRequest({ name: 'disk', requests: [P.INFO_BLOCK_SIZE, P.INFO_NAME] });
  assert.equal(hex(data), '00000004' + '6469736b' + '0002' + '0003' + '0001');
  assert.deepEqual(P.decodeInfoRequest(data), { name: 'disk', requests: [3, 1] });
  assert.equal(P.decodeInfoRequest(bytes('ffffffff0000')), undefined, 'name longer than the data');
  assert.equal(P.decodeInfoRequest(bytes('00000000 0005 0001')), undefined, 'count lies');
  assert.equal(P.decodeInfoRequest(bytes('00000001 00 0000')), undefined, 'NUL in a name');
  assert.equal(P.decodeInfoRequest(bytes('00000001 ff 0000')), undefined, 'not UTF-8');
});

test('meta context request: queries, and a count that lies is caught before looping', () => {
  const data = P.encodeMetaContextRequest({ name: '', queries: ['base:allocation', 'qemu:'] });
  assert.deepEqual(P.decodeMetaContextRequest(data), {
    name: '',
    queries: ['base:allocation', 'qemu:'],
  });
  assert.equal(P.decodeMetaContextRequest(bytes('00000000 ffffffff')), undefined);
  assert.equal(P.decodeMetaContextRequest(bytes('00000000 00000001 00000009 6162')), undefined);
  assert.equal(
    P.decodeMetaContextRequest(bytes('00000000 00000000 00')),
    undefined,
    'trailing byte',
  );
});

test('info payloads', () => {
  const e = P.encodeInfo({ type: P.INFO_EXPORT, size: 3 * 2 ** 32 + 7, flags: 0x0103 });
  assert.equal(hex(e), '0000' + '0000000300000007' + '0103');
  assert.deepEqual(P.decodeInfo(e), { type: 0, size: 3 * 2 ** 32 + 7, flags: 0x0103 });
  const bs = P.encodeInfo({
    type: P.INFO_BLOCK_SIZE,
    minimum: 1,
    preferred: 4096,
    maximum: 1 << 25,
  });
  assert.equal(hex(bs), '0003' + '00000001' + '00001000' + '02000000');
  assert.equal(P.decodeInfo(bs.subarray(0, 13)), undefined);
  assert.deepEqual(P.decodeInfo(bytes('0009 ab')), { type: 'unknown', code: 9 });
});

test('structured chunks: data, hole, block status, error', () => {
  assert.equal(
    hex(P.encodeOffsetHole(5n, P.REPLY_FLAG_DONE, 512, 1024)),
    '668e33ef' +
      '0001' +
      '0002' +
      '0000000000000005' +
      '0000000c' +
      '0000000000000200' +
      '00000400',
  );
  assert.deepEqual(P.decodeOffsetHole(bytes('0000000000000200 00000400')), {
    offset: 512,
    length: 1024,
  });
  const bsc = P.encodeBlockStatus(1n, 1, 1, [
    { length: 4096, flags: P.STATE_HOLE | P.STATE_ZERO },
    { length: 512, flags: 0 },
  ]);
  assert.deepEqual(P.decodeBlockStatus(bsc.subarray(P.STRUCTURED_HEADER_SIZE)), {
    contextId: 1,
    descriptors: [
      { length: 4096, flags: 3 },
      { length: 512, flags: 0 },
    ],
  });
  assert.equal(P.decodeBlockStatus(bytes('00000001 00000000 00000000')), undefined, 'zero length');
  assert.equal(P.decodeBlockStatus(bytes('00000001 00000001')), undefined, 'short');
  const err = P.encodeErrorChunk(9n, P.REPLY_FLAG_DONE, P.NBD_EPERM, 'read-only');
  const payload = err.subarray(P.STRUCTURED_HEADER_SIZE);
  assert.deepEqual(P.decodeErrorChunk(P.REPLY_TYPE_ERROR, payload), {
    error: 1,
    message: 'read-only',
  });
  assert.equal(P.decodeErrorChunk(P.REPLY_TYPE_ERROR, bytes('00000001 00ff 41')), undefined);
  assert.deepEqual(
    P.decodeErrorChunk(P.REPLY_TYPE_ERROR_OFFSET, bytes('00000005 0000 0000000000001000')),
    {
      error: 5,
      message: '',
      offset: 4096,
    },
  );
  const h = P.decodeReplyHeader(P.encodeChunkHeader(3n, P.REPLY_TYPE_NONE, 1, 0));
  assert.deepEqual(h, { kind: 'structured', flags: 1, type: 0, cookie: 3n, length: 0 });
  assert.deepEqual(P.decodeReplyHeader(P.encodeSimpleReply(4n, 22)), {
    kind: 'simple',
    error: 22,
    cookie: 4n,
  });
});

test('NBD URIs', () => {
  assert.deepEqual(parseNbdUri('nbd://example.com/disk'), {
    transport: 'tcp',
    host: 'example.com',
    port: 10809,
    exportName: 'disk',
  });
  assert.deepEqual(parseNbdUri('nbd://[::1]:1234//a%20b'), {
    transport: 'tcp',
    host: '::1',
    port: 1234,
    exportName: '/a b',
  });
  assert.deepEqual(parseNbdUri('nbd+unix:///?socket=/tmp/x.sock'), {
    transport: 'unix',
    socket: '/tmp/x.sock',
    exportName: '',
  });
  assert.throws(() => parseNbdUri('nbd+unix:///x'), { code: 'USAGE' });
  assert.throws(() => parseNbdUri('nbd://h/?tls=1'), { code: 'USAGE' });
  assert.throws(() => parseNbdUri('nbds://h/'), /TLS/);
  const a = { transport: 'unix', socket: '/tmp/a b.sock', exportName: 'x' } as const;
  assert.equal(formatNbdUri(a), 'nbd+unix:///x?socket=/tmp/a%20b.sock');
  assert.deepEqual(parseNbdUri(formatNbdUri(a)), a);
  assert.equal(
    formatNbdUri({ transport: 'tcp', host: '::1', port: 5, exportName: '' }),
    'nbd://[::1]:5/',
  );
});
