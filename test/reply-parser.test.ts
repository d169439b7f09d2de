/**
 * The reply parser alone, pg-protocol style: real reply bytes from a real memcached, fed whole and then
 * split at every offset (and at random points for large values), checked against a deliberately naive
 * oracle (test/helpers/mc-raw.ts parseReplies, which reads the whole buffer at once).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createConnection } from 'node:net';
import { LocalFleet } from '../src/fleet/local-fleet';
import { GetBatch } from '../src/backends/memcached/get-batch';
import { MutationBatch } from '../src/backends/memcached/mutation-batch';
import { Inflight } from '../src/backends/memcached/inflight';
import { MetaStatus, ReplyParser, type ReplySink } from '../src/backends/memcached/reply-parser';
import { Request } from '../src/core/request';
import type { ErrorCode } from '../src/core/errors';
import { parseReplies, prng } from './helpers/mc-raw';

/** Records what each item got. */
class Recorder extends Request {
  values = new Map<number, { flags: number; chunks: Buffer[]; total: number }>();
  outcome = new Map<number, string>();
  protected onValue(
    i: number,
    flags: number,
    total: number,
    offset: number,
    buf: Buffer,
    off: number,
    len: number,
  ): void {
    let v = this.values.get(i);
    if (!v) this.values.set(i, (v = { flags, chunks: [], total }));
    assert.equal(
      offset,
      v.chunks.reduce((a, c) => a + c.length, 0),
      'chunks arrive in order',
    );
    v.chunks.push(Buffer.from(buf.subarray(off, off + len)));
    if (offset + len === total) this.outcome.set(i, 'value');
  }
  protected onMiss(i: number): void {
    this.outcome.set(i, 'miss');
  }
  protected onOk(i: number): void {
    this.outcome.set(i, 'ok');
  }
  protected onError(i: number, code: ErrorCode): void {
    this.outcome.set(i, `error:${code}`);
  }
  protected onFinish(): void {}
  bytesOf(i: number): Buffer {
    return Buffer.concat(this.values.get(i)!.chunks);
  }
}

function capture(port: number, payload: Buffer, replies: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = createConnection({ host: '127.0.0.1', port });
    let acc = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      acc = Buffer.concat([acc, d]);
      const { replies: got, used } = parseReplies(acc);
      if (got.length >= replies && used === acc.length) {
        s.destroy();
        resolve(acc);
      }
    });
    s.on('error', reject);
    s.write(payload);
  });
}

interface Case {
  keys: string[];
  sets: { key: string; value: Buffer }[];
  dels: string[];
}

/** Builds the batches the gateway would send, and a parser over them; returns the recorder. */
function run(c: Case, reply: Buffer, splits: number[]): { rec: Recorder; outOfStep: string | null; left: number } {
  const rec = new Recorder();
  const mut = new MutationBatch(1000);
  c.sets.forEach((s, k) => {
    const kb = Buffer.from(s.key);
    mut.beginSet(rec, k, kb, 0, kb.length, 0, k, s.value.length);
    mut.appendValue(s.value, 0, s.value.length);
    mut.endSet();
  });
  c.dels.forEach((d, k) => {
    const kb = Buffer.from(d);
    mut.addDel(rec, c.sets.length + k, kb, 0, kb.length);
  });
  const get = new GetBatch(1000);
  const base = c.sets.length + c.dels.length;
  c.keys.forEach((key, k) => {
    const kb = Buffer.from(key);
    get.add(rec, base + k, kb, 0, kb.length);
  });
  get.seal();
  let outOfStep: string | null = null;
  const fifo = new Inflight({
    answered: () => {},
    outOfStep: (why) => {
      outOfStep = why;
    },
  });
  for (const b of [mut, get]) if (b.n > 0) fifo.push(b);
  const parser = new ReplyParser(fifo);
  let p = 0;
  for (const q of [...splits, reply.length]) {
    // Each read lands in the same reused buffer, as with onread: the parser must copy what it keeps.
    const readBuf = Buffer.alloc(65536 + reply.length, 0xee);
    reply.copy(readBuf, 0, p, q);
    parser.feed(readBuf, q - p);
    readBuf.fill(0xee);
    p = q;
  }
  return { rec, outOfStep, left: fifo.size };
}

describe('reply parser', () => {
  let fleet: LocalFleet;
  let port: number;
  before(async () => {
    fleet = await LocalFleet.start({ count: 1 });
    port = fleet.members[0].port;
  });
  after(() => fleet.stop());

  async function fixture(sizes: number[]): Promise<{ c: Case; reply: Buffer; oracle: Map<string, Buffer> }> {
    const tag = `rp:${sizes.join('-')}`;
    const sets = sizes.map((n, k) => ({
      key: `${tag}:${k}`,
      value: Buffer.from(Array.from({ length: n }, (_, j) => (j * 13 + k) & 0xff)),
    }));
    const c: Case = {
      sets,
      dels: [`${tag}:0`, `${tag}:absent`],
      keys: [...sets.map((s) => s.key), `${tag}:miss`, `${tag}:0`.replace(':0', ':x')],
    };
    // Real reply bytes, produced by sending memcached exactly what the batches above hold.
    const mutBytes: Buffer[] = [];
    sets.forEach((s, k) =>
      mutBytes.push(Buffer.from(`ms ${s.key} ${s.value.length} F${k} O${k + 1}\r\n`), s.value, Buffer.from('\r\n')),
    );
    c.dels.forEach((d, k) => mutBytes.push(Buffer.from(`md ${d} O${sets.length + k + 1}\r\n`)));
    // The multi-get runs before the deletes here so that every value is there to be read: send sets, get, then deletes.
    const setReply = await capture(port, Buffer.concat(mutBytes.slice(0, sets.length * 3)), sets.length);
    const getReply = await capture(port, Buffer.from(`get ${c.keys.join(' ')}\r\n`), 1);
    const delReply = await capture(port, Buffer.concat(mutBytes.slice(sets.length * 3)), c.dels.length);
    const oracle = new Map<string, Buffer>();
    const parsed = parseReplies(getReply).replies[0];
    assert.equal(parsed.kind, 'values');
    if (parsed.kind === 'values') for (const v of parsed.values) oracle.set(v.key, v.value);
    return { c, reply: Buffer.concat([setReply, delReply, getReply]), oracle };
  }

  function check(c: Case, oracle: Map<string, Buffer>, r: ReturnType<typeof run>, how: string): void {
    assert.equal(r.outOfStep, null, `${how}: ${r.outOfStep}`);
    assert.equal(r.left, 0, `${how}: batches left unanswered`);
    c.sets.forEach((_, k) => assert.equal(r.rec.outcome.get(k), 'ok', `${how}: set ${k}`));
    assert.equal(r.rec.outcome.get(c.sets.length), 'ok', `${how}: delete of a present key`);
    assert.equal(r.rec.outcome.get(c.sets.length + 1), 'miss', `${how}: delete of an absent key`);
    const base = c.sets.length + c.dels.length;
    c.keys.forEach((key, k) => {
      const want = oracle.get(key);
      if (want === undefined) assert.equal(r.rec.outcome.get(base + k), 'miss', `${how}: ${key}`);
      else {
        assert.equal(r.rec.outcome.get(base + k), 'value', `${how}: ${key}`);
        assert.ok(r.rec.bytesOf(base + k).equals(want), `${how}: ${key} bytes`);
        assert.equal(r.rec.values.get(base + k)!.flags, k, `${how}: ${key} flags`);
      }
    });
  }

  it('parses small replies split at every offset exactly as whole', async () => {
    const { c, reply, oracle } = await fixture([0, 1, 2, 10, 100, 300]);
    assert.ok(oracle.size === 6);
    check(c, oracle, run(c, reply, []), 'whole');
    for (let cut = 1; cut < reply.length; cut++) check(c, oracle, run(c, reply, [cut]), `cut at ${cut}`);
  });

  it('parses large values split at random points and at 16 KiB boundaries', async () => {
    const { c, reply, oracle } = await fixture([16383, 16384, 16385, 70000]);
    const rnd = prng(7);
    for (let t = 0; t < 60; t++) {
      const cuts = Array.from({ length: 6 }, () => 1 + Math.floor(rnd() * (reply.length - 1))).sort((a, b) => a - b);
      check(c, oracle, run(c, reply, [...new Set(cuts)]), `cuts ${cuts.join(',')}`);
    }
    check(
      c,
      oracle,
      run(
        c,
        reply,
        Array.from({ length: Math.floor(reply.length / 16384) }, (_, k) => (k + 1) * 16384),
      ),
      '16 KiB reads',
    );
  });

  it('reports a reply out of step instead of guessing', () => {
    const c: Case = { sets: [], dels: [], keys: ['a', 'b'] };
    assert.match(run(c, Buffer.from('VALUE zz 0 1\r\nx\r\nEND\r\n'), []).outOfStep ?? '', /not asked/);
    assert.match(
      run(c, Buffer.from('VALUE b 0 1\r\nx\r\nVALUE a 0 1\r\ny\r\nEND\r\n'), []).outOfStep ?? '',
      /not asked/,
    );
    assert.match(run(c, Buffer.from('VALUE a 0 1\r\nxy\r\nEND\r\n'), []).outOfStep ?? '', /\\r\\n/);
    assert.match(run(c, Buffer.from('CLIENT_ERROR bad\r\n'), []).outOfStep ?? '', /unexpected/);
    const m: Case = { sets: [{ key: 'k', value: Buffer.from('v') }], dels: [], keys: [] };
    assert.match(run(m, Buffer.from('HD O7\r\n'), []).outOfStep ?? '', /out of step/);
  });

  it('reports what it read to any sink, in wire order, knowing nothing of what was asked', () => {
    // A sink that records every event: no batch, no key table, no opaques. The parser must not need them.
    const events: string[] = [];
    let accept = true;
    const sink: ReplySink = {
      onValueHeader: (buf, koff, klen, flags, bytes) => {
        events.push(`value ${buf.toString('latin1', koff, koff + klen)} ${flags} ${bytes}`);
        return accept;
      },
      onValue: (total, offset, buf, off, len) => {
        events.push(`data ${total} ${offset} ${buf.toString('latin1', off, off + len)}`);
      },
      onEnd: () => {
        events.push('end');
        return true;
      },
      onStatus: (status, opaque, message) => {
        events.push(`status ${status} ${opaque} ${message}`);
        return true;
      },
      onError: (why) => {
        events.push(`error ${why}`);
      },
    };
    const parser = new ReplyParser(sink);
    const wire = 'VALUE a 5 3\r\nxyz\r\nVALUE bb 0 0\r\n\r\nEND\r\nHD O1\r\nNF b O2\r\nSERVER_ERROR out of memory\r\n';
    const bytes = Buffer.from(wire);
    for (let cut = 0; cut <= bytes.length; cut++) {
      events.length = 0;
      if (cut > 0) parser.feed(Buffer.from(bytes.subarray(0, cut)), cut);
      if (cut < bytes.length) parser.feed(Buffer.from(bytes.subarray(cut)), bytes.length - cut);
      const data = events.filter((e) => e.startsWith('data '));
      // However the bytes are cut, the value's parts are in order and its last part comes once.
      assert.equal(data.map((e) => e.split(' ')[3]).join(''), 'xyz', `cut ${cut}`);
      assert.deepEqual(
        events.filter((e) => !e.startsWith('data ')),
        [
          'value a 5 3',
          'value bb 0 0',
          'end',
          `status ${MetaStatus.Stored} 1 `,
          `status ${MetaStatus.NotFound} 2 `,
          `status ${MetaStatus.ServerError} -1 out of memory`,
        ],
        `cut ${cut}`,
      );
    }
    // A sink refusing an event stops the parser there: nothing after it is reported.
    events.length = 0;
    accept = false;
    parser.feed(Buffer.from('VALUE a 0 1\r\nx\r\nEND\r\n'), 21);
    assert.deepEqual(events, ['value a 0 1']);
    accept = true;
    events.length = 0;
    parser.feed(Buffer.from('BOGUS\r\nEND\r\n'), 12);
    assert.deepEqual(events, ['error unexpected reply: BOGUS']);
  });
});
