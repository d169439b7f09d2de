/**
 * Unit tests of the test client's wire codec (test/client): request encoding, entry decoding, and turning a
 * request's entries into results. No gateway needed: responses are built by hand with msgpackr.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pack, unpack, unpackMultiple } from 'msgpackr';
import {
  decodeEntries,
  decodeEntry,
  encodeBulkItems,
  encodeBulkKeys,
  encodeKeyPath,
  encodeRaw,
  encodeRequest,
  encodeRequests,
  KvError,
  parseMsgpackBulk,
  parseNdjsonBulk,
  PartAssembler,
  ProtocolError,
  ResultAssembler,
  type Entry,
  type PartEntry,
} from './client';

/** A server message: entries packed one by one and concatenated, as the gateway writes them. */
const msg = (...entries: unknown[]): Buffer => Buffer.concat(entries.map((e) => pack(e)));
const bin = (s: string): Buffer => Buffer.from(s);
const isProtocolError =
  (re?: RegExp) =>
  (e: unknown): boolean => {
    assert.ok(e instanceof ProtocolError, `expected ProtocolError, got ${String(e)}`);
    assert.equal(e.code, 'BAD_RESPONSE');
    if (re) assert.match(e.message, re);
    return true;
  };

// ---- requests ------------------------------------------------------------------------------------------

test('get/del: string key goes as str, byte keys as bin', () => {
  assert.deepEqual(unpack(encodeRequest({ id: 1, op: 'get', key: 'user:1' })), { id: 1, op: 'get', key: 'user:1' });
  const d = unpack(encodeRequest({ id: 7, op: 'del', key: bin('k\u00e9'), wait: 5 }));
  assert.deepEqual(d, { id: 7, op: 'del', key: bin('k\u00e9'), wait: 5 });
  assert.ok(Buffer.isBuffer(d.key));
  // A plain Uint8Array (not a Buffer) is still bin, not msgpackr's typed-array extension.
  const u = unpack(encodeRequest({ id: 2, op: 'get', key: new Uint8Array([0x61, 0xff]) }));
  assert.deepEqual(u.key, Buffer.from([0x61, 0xff]));
});

test('set: value always bin (a string as its UTF-8), optional fields omitted, uint32 limits kept', () => {
  const bytes = encodeRequest({ id: 3, op: 'set', key: 'k', value: 'h\u00e9llo' });
  assert.deepEqual(unpack(bytes), { id: 3, op: 'set', key: 'k', value: bin('h\u00e9llo') });
  assert.ok(bytes.includes(Buffer.from([0xc4, 6])), 'value encoded as bin8 of 6 bytes');
  const full = unpack(
    encodeRequest({
      id: 0xffffffff,
      op: 'set',
      key: 'k',
      value: Buffer.alloc(0),
      ttl: 2592000,
      flags: 0xffffffff,
      wait: 0,
    }),
  );
  assert.deepEqual(full, {
    id: 0xffffffff,
    op: 'set',
    key: 'k',
    value: Buffer.alloc(0),
    ttl: 2592000,
    flags: 0xffffffff,
    wait: 0,
  });
  assert.deepEqual(Object.keys(full), ['id', 'op', 'key', 'value', 'ttl', 'flags', 'wait']);
});

test('mget/mdel/mset bodies and concatenated requests', () => {
  const reqs = encodeRequests([
    { id: 1, op: 'mget', keys: ['a', bin('b')] },
    { id: 2, op: 'mdel', keys: [] },
    {
      id: 3,
      op: 'mset',
      items: [
        { key: 'a', value: 'x', ttl: 60 },
        { key: bin('b'), value: Buffer.from([0, 1]), flags: 9 },
      ],
      wait: 10,
    },
  ]);
  assert.deepEqual(unpackMultiple(reqs), [
    { id: 1, op: 'mget', keys: ['a', bin('b')] },
    { id: 2, op: 'mdel', keys: [] },
    {
      id: 3,
      op: 'mset',
      items: [
        { key: 'a', value: bin('x'), ttl: 60 },
        { key: bin('b'), value: Buffer.from([0, 1]), flags: 9 },
      ],
      wait: 10,
    },
  ]);
});

test('HTTP msgpack bulk bodies are concatenated keys / item maps', () => {
  assert.deepEqual(unpackMultiple(encodeBulkKeys(['user:1', bin('user:2')])), ['user:1', bin('user:2')]);
  assert.deepEqual(unpackMultiple(encodeBulkItems([{ key: 'k', value: 'v', ttl: 1 }])), [
    { key: 'k', value: bin('v'), ttl: 1 },
  ]);
  assert.equal(encodeBulkKeys([]).length, 0);
  assert.deepEqual(unpackMultiple(encodeRaw([{ id: 1, op: 'nope' }, 'x'])), [{ id: 1, op: 'nope' }, 'x']);
});

test('URL keys: strings via encodeURIComponent, bytes one by one', () => {
  assert.equal(encodeKeyPath('a b/\u00e9'), 'a%20b%2F%C3%A9');
  assert.equal(encodeKeyPath(Buffer.from([0x61, 0x20, 0xff, 0x2f, 0x7e])), 'a%20%FF%2F~');
});

// ---- entries -------------------------------------------------------------------------------------------

test('decodes every entry kind from one concatenated message', () => {
  const entries = decodeEntries(
    msg(
      [1, 0, 0, 7, bin('hello')],
      [1, 1, 1, 0, 5, 0, bin('ab')],
      [1, 2, 2],
      [1, 3, 3],
      [1, 4, 4, 'SHARD_DOWN', 'down'],
      [1, -1, 4, 'BUSY', 'busy'],
      [1, -1, 5],
    ),
  );
  assert.deepEqual(entries, [
    { kind: 'value', id: 1, i: 0, flags: 7, value: bin('hello') },
    { kind: 'part', id: 1, i: 1, flags: 0, total: 5, offset: 0, chunk: bin('ab') },
    { kind: 'miss', id: 1, i: 2 },
    { kind: 'ok', id: 1, i: 3 },
    { kind: 'error', id: 1, i: 4, code: 'SHARD_DOWN', message: 'down' },
    { kind: 'error', id: 1, i: -1, code: 'BUSY', message: 'busy' },
    { kind: 'end', id: 1 },
  ]);
  assert.ok(Buffer.isBuffer((entries[0] as { value: Buffer }).value));
});

test('large ids, flags and an empty value decode', () => {
  assert.deepEqual(decodeEntries(msg([0xffffffff, 99999, 0, 0xffffffff, Buffer.alloc(0)])), [
    { kind: 'value', id: 0xffffffff, i: 99999, flags: 0xffffffff, value: Buffer.alloc(0) },
  ]);
});

test('malformed entries are rejected with a ProtocolError naming the problem', () => {
  const cases: [unknown, RegExp][] = [
    [{ id: 1 }, /not an array/],
    [[-1, 0, 2], /id is not a uint32/],
    [[2 ** 32, 0, 2], /id is not a uint32/],
    [['1', 0, 2], /id is not a uint32/],
    [[1, -2, 2], /i is not an integer/],
    [[1, 0.5, 2], /i is not an integer/],
    [[1, 0, 6], /unknown kind/],
    [[1, 0, '2'], /unknown kind/],
    [[1, 0, 2, 'extra'], /needs 3 elements/],
    [[1, 0, 0, 0], /needs 5 elements/],
    [[1, 0, 0, 0, 'text'], /value is not bin/],
    [[1, 0, 0, -1, bin('x')], /flags is not a uint32/],
    [[1, 0, 0, 2 ** 32, bin('x')], /flags is not a uint32/],
    [[1, -1, 0, 0, bin('x')], /item index >= 0/],
    [[1, -1, 2], /item index >= 0/],
    [[1, 0, 1, 0, 3, 2, bin('ab')], /exceeds total/],
    [[1, 0, 1, 0, 3, -1, bin('a')], /offset is not a uint/],
    [[1, 0, 1, 0, 3, 0, 'ab'], /chunk is not bin/],
    [[1, 0, 4, 5, 'msg'], /code is not/],
    [[1, 0, 4, 'BAD_KEY'], /needs 5 elements/],
    [[1, 0, 5], /END must have i = -1/],
  ];
  for (const [raw, re] of cases) {
    assert.throws(() => decodeEntry(raw), isProtocolError(re), JSON.stringify(raw));
    assert.throws(
      () => decodeEntries(msg([1, -1, 5], raw)),
      isProtocolError(re),
      `in a message: ${JSON.stringify(raw)}`,
    );
  }
});

test('messages that are not a msgpack stream are rejected', () => {
  const good = msg([1, 0, 2], [1, -1, 5]);
  assert.throws(() => decodeEntries(good.subarray(0, good.length - 1)), isProtocolError(/not a msgpack stream/));
  assert.throws(() => decodeEntries(Buffer.alloc(0)), isProtocolError(/empty/));
  assert.throws(() => decodeEntries(Buffer.from([0xc1])), isProtocolError(/not an array/));
});

// ---- reassembly and results ----------------------------------------------------------------------------

const part = (i: number, total: number, offset: number, chunk: string, flags = 0): PartEntry => ({
  kind: 'part',
  id: 1,
  i,
  flags,
  total,
  offset,
  chunk: bin(chunk),
});

test('VALUE_PART pieces reassemble into one Buffer per item', () => {
  const pa = new PartAssembler();
  assert.equal(pa.add(part(0, 6, 0, 'ab')), undefined);
  assert.deepEqual(pa.add(part(1, 2, 0, 'xy')), bin('xy')); // another item's run, interleaved
  assert.equal(pa.add(part(0, 6, 2, 'cd')), undefined);
  assert.deepEqual(pa.incomplete(), [0]);
  assert.deepEqual(pa.add(part(0, 6, 4, 'ef')), bin('abcdef'));
  assert.deepEqual(pa.incomplete(), []);
});

test('VALUE_PART pieces out of order, overlapping or inconsistent are rejected', () => {
  const fresh =
    (...ps: PartEntry[]) =>
    () => {
      const pa = new PartAssembler();
      for (const p of ps) pa.add(p);
    };
  assert.throws(fresh(part(0, 6, 2, 'cd')), isProtocolError(/offset 2, expected 0/));
  assert.throws(fresh(part(0, 6, 0, 'ab'), part(0, 6, 4, 'ef')), isProtocolError(/offset 4, expected 2/));
  assert.throws(fresh(part(0, 6, 0, 'abc'), part(0, 6, 2, 'cd')), isProtocolError(/offset 2, expected 3/));
  assert.throws(fresh(part(0, 6, 0, 'ab'), part(0, 7, 2, 'cd')), isProtocolError(/total changed/));
  assert.throws(fresh(part(0, 6, 0, 'ab', 1), part(0, 6, 2, 'cd', 2)), isProtocolError(/flags changed/));
});

/** Feeds a whole message to a ResultAssembler; returns whether the request ended. */
const feed = (asm: ResultAssembler, m: Buffer): boolean =>
  decodeEntries(m)
    .map((e: Entry) => asm.add(e))
    .pop() ?? false;

test('mget results are aligned with the keys whatever order the entries come in', () => {
  const asm = new ResultAssembler('mget', 4);
  assert.equal(feed(asm, msg([1, 3, 1, 5, 4, 0, bin('wx')], [1, 1, 2], [1, 2, 4, 'TIMEOUT', 't'])), false);
  assert.equal(feed(asm, msg([1, 3, 1, 5, 4, 2, bin('yz')], [1, 0, 0, 9, bin('v')], [1, -1, 5])), true);
  assert.deepEqual(asm.finish(), [
    { hit: true, value: bin('v'), flags: 9 },
    { hit: false },
    { error: { code: 'TIMEOUT', message: 't' } },
    { hit: true, value: bin('wxyz'), flags: 5 },
  ]);
});

test('set/del results, and a request with no items', () => {
  const set = new ResultAssembler('mset', 2);
  feed(set, msg([1, 1, 4, 'NOT_STORED', 'n'], [1, 0, 3], [1, -1, 5]));
  assert.deepEqual(set.finish(), [{ ok: true }, { error: { code: 'NOT_STORED', message: 'n' } }]);
  const del = new ResultAssembler('mdel', 2);
  feed(del, msg([1, 0, 3], [1, 1, 2], [1, -1, 5]));
  assert.deepEqual(del.finish(), [{ deleted: true }, { deleted: false }]);
  const none = new ResultAssembler('mget', 0);
  assert.equal(feed(none, msg([1, -1, 5])), true);
  assert.deepEqual(none.finish(), []);
});

test('an ERROR after an incomplete VALUE_PART run (shard failed mid-value) replaces the parts', () => {
  const asm = new ResultAssembler('mget', 2);
  feed(asm, msg([1, 0, 1, 7, 4, 0, bin('ab')], [1, 1, 2], [1, 0, 4, 'TIMEOUT', 't'], [1, -1, 5]));
  assert.deepEqual(asm.finish(), [{ error: { code: 'TIMEOUT', message: 't' } }, { hit: false }]);
});

test('a request-level error (i = -1) fails the request with its code', () => {
  const asm = new ResultAssembler('mget', 3);
  assert.equal(feed(asm, msg([1, 0, 2], [1, -1, 4, 'TOO_MANY', 'too many'])), true);
  assert.throws(
    () => asm.finish(),
    (e: unknown) =>
      e instanceof KvError && !(e instanceof ProtocolError) && e.code === 'TOO_MANY' && e.message === 'too many',
  );
});

test('results that break the contract are rejected', () => {
  const bad = (op: string, count: number, m: Buffer, re: RegExp) =>
    assert.throws(() => feed(new ResultAssembler(op, count), m), isProtocolError(re), `${op}: ${re}`);
  bad('mget', 2, msg([1, 0, 2], [1, 0, 2]), /answered twice/);
  bad('mget', 1, msg([1, 0, 0, 0, bin('whole')], [1, 0, 1, 0, 2, 0, bin('p')]), /answered twice/);
  bad('mget', 1, msg([1, 0, 1, 0, 4, 0, bin('ab')], [1, 0, 2]), /middle of a VALUE_PART run/);
  bad('mget', 2, msg([1, 2, 2]), /out of range/);
  bad('mget', 2, msg([1, 0, 2], [1, -1, 5]), /END before 1 of 2 items/);
  bad('mget', 1, msg([1, 0, 1, 0, 4, 0, bin('ab')], [1, -1, 5]), /VALUE_PART runs incomplete/);
  bad('mget', 1, msg([1, 0, 1, 0, 4, 2, bin('cd')]), /offset 2, expected 0/);
  bad('mget', 1, msg([1, 0, 2], [1, -1, 5], [1, 0, 2]), /after the request ended/);
  bad('get', 1, msg([1, 0, 3]), /ok entry is not a valid answer/);
  bad('set', 1, msg([1, 0, 2]), /miss entry is not a valid answer/);
  bad('del', 1, msg([1, 0, 0, 0, bin('v')]), /value entry is not a valid answer/);
});

// ---- HTTP bulk responses -------------------------------------------------------------------------------

test('msgpack bulk responses: id 0 entries ending with END', () => {
  assert.deepEqual(parseMsgpackBulk('mget', msg([0, 1, 2], [0, 0, 0, 0, bin('hello')], [0, -1, 5]), 2), [
    { hit: true, value: bin('hello'), flags: 0 },
    { hit: false },
  ]);
  assert.throws(() => parseMsgpackBulk('mget', msg([0, 0, 2]), 1), isProtocolError(/without END/));
  assert.throws(() => parseMsgpackBulk('mget', msg([3, 0, 2], [3, -1, 5]), 1), isProtocolError(/id 3/));
  assert.throws(
    () => parseMsgpackBulk('mget', msg([0, 0, 2], [0, -1, 5], [0, -1, 5]), 1),
    isProtocolError(/after END/),
  );
  assert.throws(
    () => parseMsgpackBulk('mset', msg([0, 0, 3], [0, -1, 4, 'BAD_REQUEST', 'cut']), 2),
    (e: unknown) => e instanceof KvError && e.code === 'BAD_REQUEST' && e.status === 200,
  );
});

test('NDJSON bulk responses: one line per item, then done', () => {
  const lines = (...objs: unknown[]) => objs.map((o) => JSON.stringify(o) + '\n').join('');
  const keys = ['user:1', 'user:2', 'k', Buffer.from([0xff])];
  const text = lines(
    { i: 1, key: 'user:2', miss: true },
    { i: 3, key: '\ufffd', base64: 'AAEC', flags: 3 },
    { i: 0, key: 'user:1', value: 'h\u00e9llo', flags: 0 },
    { i: 2, key: 'k', error: { code: 'SHARD_DOWN', message: 'down' } },
    { done: true, count: 4 },
  );
  assert.deepEqual(parseNdjsonBulk('mget', text, keys), [
    { hit: true, value: bin('h\u00e9llo'), flags: 0 },
    { hit: false },
    { error: { code: 'SHARD_DOWN', message: 'down' } },
    { hit: true, value: Buffer.from([0, 1, 2]), flags: 3 },
  ]);
  assert.deepEqual(parseNdjsonBulk('mset', lines({ i: 0, key: 'k', ok: true }, { done: true, count: 1 }), ['k']), [
    { ok: true },
  ]);
  assert.throws(
    () => parseNdjsonBulk('mget', lines({ i: 0, key: 'k', miss: true }), ['k']),
    isProtocolError(/without a done line/),
  );
  assert.throws(
    () => parseNdjsonBulk('mget', lines({ i: 0, key: 'k', miss: true }, { done: true, count: 2 }), ['k']),
    isProtocolError(/count should be 1/),
  );
  assert.throws(
    () => parseNdjsonBulk('mget', lines({ i: 0, key: 'other', miss: true }), ['k']),
    isProtocolError(/key should be "k"/),
  );
  assert.throws(() => parseNdjsonBulk('mget', lines({ i: 0, key: 'k', value: 'v' }), ['k']), isProtocolError(/flags/));
  assert.throws(() => parseNdjsonBulk('mget', '{"i":0,\n', ['k']), isProtocolError(/not JSON/));
  assert.throws(
    () =>
      parseNdjsonBulk(
        'mset',
        lines({ i: 0, key: 'k', ok: true }, { i: -1, error: { code: 'BAD_REQUEST', message: 'cut' } }),
        ['k', 'j'],
      ),
    (e: unknown) => e instanceof KvError && e.code === 'BAD_REQUEST',
  );
});
