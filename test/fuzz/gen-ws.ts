/**
 * WebSocket inputs: one client message (one or more frames) per input, a pure function of
 * (seed, input number). Well-formed requests carry an oracle (which items must succeed and which must
 * fail); mutated, nested, giant and random ones are checked only against the invariants the watcher
 * holds for every answer.
 */
import { deepNest, encode, map, MpMap, MpVal, Raw, Float32 } from './mp';
import { Rng } from './prng';
import { Op, wsFrame } from './ws-raw';

export interface Limits {
  maxValueBytes: number;
  maxTtlSeconds: number;
  maxWaitMs: number;
  maxPayloadBytes: number;
  maxItemsPerRequest: number;
}

export type OpName = 'get' | 'set' | 'del' | 'mget' | 'mset' | 'mdel';

/** What a request must get: per item 'ok' (a success kind for its op) or 'err'; or one request-wide error. */
export interface Tracked {
  id: number;
  op: OpName;
  items: ('ok' | 'err')[];
  reqErr: boolean;
}

export interface WsInput {
  kind: string;
  frames: Buffer[];
  /** The message's bytes (for the record). */
  payload: Buffer;
  tracked: Tracked[];
  /** How the connection must end after this input, if it must. */
  ends?: 'oversize' | 'protocol' | 'bad-utf8' | 'client-close';
  /** Text frames: each gets exactly one BAD_REQUEST entry. */
  textFrames?: number;
  ping?: Buffer;
}

const KEY_SPACE = 512;

export function fuzzKey(rng: Rng): string {
  return `fz:${rng.int(0, KEY_SPACE - 1)}`;
}

export function keyValid(k: Buffer): boolean {
  if (k.length < 1 || k.length > 250) return false;
  for (const c of k) if (c <= 0x20 || c === 0x7f) return false;
  return true;
}

/** A key, usually valid; as bytes, with whether it is valid. */
function genKey(rng: Rng, pInvalid: number): { v: MpVal; ok: boolean } {
  if (!rng.chance(pInvalid)) {
    const s = rng.chance(0.9) ? fuzzKey(rng) : `fz:${rng.word(rng.int(1, 240))}`;
    return { v: rng.chance(0.7) ? s : Buffer.from(s), ok: true };
  }
  const k = rng.weighted<() => MpVal>([
    [3, () => ''],
    [2, () => `fz:${'x'.repeat(248)}`],
    [2, () => `fz:a b${rng.int(0, 9)}`],
    [2, () => Buffer.from([0x66, 0x7a, rng.pick([0, 9, 10, 13, 0x1f, 0x20, 0x7f])])],
    [3, () => wrongType(rng, 'key')],
  ])();
  const ok = (typeof k === 'string' || Buffer.isBuffer(k)) && keyValid(Buffer.from(k as string));
  return { v: k, ok };
}

function genValue(rng: Rng, lim: Limits): MpVal {
  const n = rng.weighted<number>([
    [70, rng.int(0, 64)],
    [20, rng.int(65, 4096)],
    [8, rng.int(4097, 40_000)],
    [2, rng.int(40_001, 300_000)],
  ]);
  if (rng.chance(0.2)) return rng.word(Math.min(n, 4096), 'abcdefghijklmnopqrstuvwxyz0123456789 ü€\u0000\n');
  return rng.bytes(Math.min(n, lim.maxValueBytes));
}

/** A value of a type a field does not take (or a number out of any range). */
export function wrongType(rng: Rng, _field: string): MpVal {
  return rng.weighted<() => MpVal>([
    [2, () => null],
    [1, () => rng.chance(0.5)],
    [2, () => -rng.int(1, 2 ** 31)],
    [2, () => 2 ** 32 + rng.int(0, 1000)],
    [1, () => 2n ** 63n + BigInt(rng.int(0, 100))],
    [1, () => -(2n ** 63n)],
    [2, () => rng.pick([1.5, NaN, Infinity, -Infinity, -0.5, 1e300])],
    [1, () => new Float32(rng.pick([0.25, NaN, 3.5]))],
    [2, () => [rng.int(0, 9), 'x']],
    [2, () => map({ a: 1 })],
    [1, () => new Raw(Buffer.from([0xd4, 0x01, 0x02]))], // fixext 1
    [1, () => new Raw(Buffer.from([0xc7, 0x03, 0x05, 1, 2, 3]))], // ext 8
  ])();
}

/** A number field's value and whether it is valid under `max`. */
function genUint(rng: Rng, max: number, pInvalid: number): { v: MpVal; ok: boolean } {
  if (!rng.chance(pInvalid)) return { v: rng.chance(0.7) ? rng.int(0, Math.min(max, 100)) : rng.int(0, max), ok: true };
  return rng.weighted<() => { v: MpVal; ok: boolean }>([
    [3, () => ({ v: -rng.int(1, 1000), ok: false })],
    [3, () => ({ v: max + rng.int(1, 1000), ok: false })],
    [2, () => ({ v: rng.pick([0.5, 1.25, -1.5, NaN, Infinity]), ok: false })],
    [2, () => ({ v: String(rng.int(0, 9)), ok: false })],
    [1, () => ({ v: Buffer.from('1'), ok: false })],
    [1, () => ({ v: [1], ok: false })],
    [1, () => ({ v: null, ok: false })],
  ])();
}

/** One request with its expected outcome; the map's fields come in a random order. */
export function genRequest(rng: Rng, id: number, lim: Limits, pInvalid: number): { v: MpVal; t: Tracked } {
  const op = rng.pick<OpName>(['get', 'set', 'del', 'mget', 'mset', 'mdel']);
  const fields: [MpVal, MpVal][] = [['id', id]];
  let reqErr = false;
  const items: ('ok' | 'err')[] = [];
  if (rng.chance(pInvalid / 4)) {
    // the op itself is wrong: the whole request fails
    fields.push(['op', rng.pick<MpVal>(['GET', 'put', '', 'mgett', 7, null, Buffer.from('gett')])]);
    if (rng.chance(0.3)) fields.pop();
    reqErr = true;
  } else fields.push(['op', rng.chance(0.9) ? op : Buffer.from(op)]);
  if (rng.chance(0.3)) {
    // mostly short: a hint holds the request's flush that long
    const w =
      rng.chance(0.9) && !rng.chance(pInvalid) ? { v: rng.int(0, 2), ok: true } : genUint(rng, lim.maxWaitMs, pInvalid);
    fields.push(['wait', w.v]);
    if (!w.ok) reqErr = true;
  }
  const single = op === 'get' || op === 'set' || op === 'del';
  if (single) {
    const k = genKey(rng, pInvalid);
    let ok = k.ok;
    if (!rng.chance(pInvalid / 6)) fields.push(['key', k.v]);
    else ok = false;
    if (op === 'set') {
      if (!rng.chance(pInvalid / 6))
        fields.push(['value', rng.chance(pInvalid / 4) ? wrongTypeValue(rng) : genValue(rng, lim)]);
      else ok = false;
      const last = fields[fields.length - 1];
      if (last[0] === 'value' && !(typeof last[1] === 'string' || Buffer.isBuffer(last[1]))) ok = false;
      if (rng.chance(0.4)) {
        const t = genUint(rng, lim.maxTtlSeconds, pInvalid);
        fields.push(['ttl', t.v]);
        if (!t.ok) reqErr = true;
      }
      if (rng.chance(0.3)) {
        const f = genUint(rng, 0xffffffff, pInvalid);
        fields.push(['flags', f.v]);
        if (!f.ok) reqErr = true;
      }
    }
    items.push(ok ? 'ok' : 'err');
  } else if (op === 'mget' || op === 'mdel') {
    const n = rng.weighted<number>([
      [70, rng.int(0, 8)],
      [29, rng.int(9, 100)],
      [1, rng.int(101, 2000)],
    ]);
    const keys: MpVal[] = [];
    for (let k = 0; k < n; k++) {
      const g = genKey(rng, pInvalid / 2);
      keys.push(g.v);
      items.push(g.ok ? 'ok' : 'err');
    }
    if (rng.chance(pInvalid / 6)) {
      fields.push(['keys', rng.pick<MpVal>(['fz:1', map({ k: 'fz:1' }), 5, null])]);
      reqErr = true;
    } else if (!rng.chance(pInvalid / 8)) fields.push(['keys', keys]);
    else reqErr = true;
  } else {
    const n = rng.weighted<number>([
      [60, rng.int(0, 8)],
      [37, rng.int(9, 100)],
      [3, rng.int(101, 1000)],
    ]);
    const list: MpVal[] = [];
    for (let k = 0; k < n; k++) {
      const it = genItem(rng, lim, pInvalid / 2);
      list.push(it.v);
      items.push(it.ok ? 'ok' : 'err');
    }
    if (rng.chance(pInvalid / 6)) {
      fields.push(['items', rng.pick<MpVal>([map({ key: 'fz:1', value: 'x' }), 'x', 3])]);
      reqErr = true;
    } else if (!rng.chance(pInvalid / 8)) fields.push(['items', list]);
    else reqErr = true;
  }
  if (rng.chance(0.1)) fields.push([rng.pick(['extra', 'x', 'keyx', 'valu']), rng.int(0, 5)]);
  shuffle(rng, fields);
  return { v: new MpMap(fields), t: { id, op, items, reqErr } };
}

function wrongTypeValue(rng: Rng): MpVal {
  return rng.pick<MpVal>([null, 5, -3, true, 1.5, [Buffer.from('x')], map({ v: 'x' })]);
}

function genItem(rng: Rng, lim: Limits, pInvalid: number): { v: MpVal; ok: boolean } {
  if (rng.chance(pInvalid / 4)) return { v: rng.pick<MpVal>(['fz:1', 5, null, [1, 2]]), ok: false };
  const f: [MpVal, MpVal][] = [];
  const k = genKey(rng, pInvalid);
  let ok = k.ok;
  if (!rng.chance(pInvalid / 6)) f.push(['key', k.v]);
  else ok = false;
  if (!rng.chance(pInvalid / 6)) {
    const bad = rng.chance(pInvalid / 4);
    f.push(['value', bad ? wrongTypeValue(rng) : rng.chance(0.9) ? rng.bytes(rng.int(0, 100)) : genValue(rng, lim)]);
    if (bad) ok = false;
  } else ok = false;
  if (rng.chance(0.3)) {
    const t = genUint(rng, lim.maxTtlSeconds, pInvalid);
    f.push(['ttl', t.v]);
    if (!t.ok) ok = false;
  }
  if (rng.chance(0.3)) {
    const g = genUint(rng, 0xffffffff, pInvalid);
    f.push(['flags', g.v]);
    if (!g.ok) ok = false;
  }
  shuffle(rng, f);
  return { v: new MpMap(f), ok };
}

function shuffle<T>(rng: Rng, xs: T[]): void {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [xs[i], xs[j]] = [xs[j], xs[i]];
  }
}

const INTERESTING = [
  0x00, 0xff, 0xc1, 0xc0, 0xdc, 0xdd, 0xde, 0xdf, 0xc4, 0xc6, 0xd9, 0xdb, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf,
  0xcf, 0xd3,
];

/** Byte-level mutations of a valid encoding: flips, interesting bytes, lying headers, cuts, splices. */
export function mutate(rng: Rng, src: Buffer): Buffer {
  let b = Buffer.from(src);
  const n = rng.int(1, 4);
  for (let k = 0; k < n; k++) {
    const at = b.length === 0 ? 0 : rng.int(0, b.length - 1);
    switch (rng.int(0, 8)) {
      case 0:
        if (b.length) b[at] ^= 1 << rng.int(0, 7);
        break;
      case 1:
        if (b.length) b[at] = rng.pick(INTERESTING);
        break;
      case 2:
        b = Buffer.concat([b.subarray(0, at), rng.bytes(rng.int(1, 8)), b.subarray(at)]);
        break;
      case 3:
        b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + rng.int(1, 16)))]);
        break;
      case 4:
        b = b.subarray(0, at);
        break;
      case 5: {
        // a header claiming a huge length
        const h = rng.pick([
          [0xdd, 0xff, 0xff, 0xff, 0xff],
          [0xdf, 0x7f, 0xff, 0xff, 0xff],
          [0xdb, 0xff, 0xff, 0xff, 0xf0],
          [0xc6, 0x00, 0x10, 0x00, 0x00],
          [0xdc, 0xff, 0xff],
        ]);
        b = Buffer.concat([b.subarray(0, at), Buffer.from(h), b.subarray(at + 1)]);
        break;
      }
      case 6: {
        const from = rng.int(0, b.length);
        const len = rng.int(0, 32);
        b = Buffer.concat([b.subarray(0, at), b.subarray(from, from + len), b.subarray(at)]);
        break;
      }
      case 7:
        b = Buffer.concat([b, rng.bytes(rng.int(1, 12))]);
        break;
      default:
        if (b.length) b[at] = rng.u32() & 0xff;
    }
  }
  return b;
}

/** Splits `payload` into a fragmented message (maybe with a ping between fragments). */
function fragments(rng: Rng, payload: Buffer, opcode: number): Buffer[] {
  const parts = rng.int(2, 6);
  const cuts = new Set<number>();
  for (let k = 1; k < parts; k++) cuts.add(rng.int(0, payload.length));
  const at = [0, ...[...cuts].sort((a, b) => a - b), payload.length];
  const out: Buffer[] = [];
  for (let k = 0; k + 1 < at.length; k++) {
    const last = k + 2 === at.length;
    out.push(wsFrame(k === 0 ? opcode : Op.Cont, payload.subarray(at[k], at[k + 1]), { fin: last }));
    if (!last && rng.chance(0.2)) out.push(wsFrame(Op.Ping, Buffer.from('p')));
  }
  return out;
}

/**
 * Input `n`: its kind is drawn first. `nextId` hands out ids unique on the connection for tracked
 * requests; untracked ids stay below 1000 so they rarely meet a tracked one.
 */
export function genWsInput(rng: Rng, lim: Limits, nextId: () => number): WsInput {
  const kind = rng.weighted<string>([
    [30, 'valid'],
    [14, 'invalid-fields'],
    [22, 'mutated'],
    [4, 'deep'],
    [4, 'giant-header'],
    [0.2, 'giant-real'],
    [5, 'random'],
    [3, 'text'],
    [4, 'fragmented'],
    [1, 'text-bad-utf8'],
    [1, 'ping'],
    [2, 'empty-or-tiny'],
    [0.4, 'oversize-claimed'],
    [0.15, 'oversize-real'],
    [1, 'protocol'],
    [0.4, 'client-close'],
  ]);
  const many = (pInvalid: number, ids: () => number): { payload: Buffer; tracked: Tracked[] } => {
    const count = rng.weighted<number>([
      [70, 1],
      [25, rng.int(2, 5)],
      [5, rng.int(6, 40)],
    ]);
    const parts: Buffer[] = [];
    const tracked: Tracked[] = [];
    for (let k = 0; k < count; k++) {
      const r = genRequest(rng, ids(), lim, pInvalid);
      parts.push(encode(r.v, rng));
      tracked.push(r.t);
    }
    return { payload: Buffer.concat(parts), tracked };
  };
  const bin = (payload: Buffer, tracked: Tracked[] = []): WsInput => ({
    kind,
    frames: [wsFrame(Op.Bin, payload)],
    payload,
    tracked,
  });
  switch (kind) {
    case 'valid': {
      const m = many(0, nextId);
      return bin(m.payload, m.tracked);
    }
    case 'invalid-fields': {
      const m = many(0.6, nextId);
      return bin(m.payload, m.tracked);
    }
    case 'mutated': {
      const m = many(0.2, () => rng.int(0, 999));
      return bin(mutate(rng, m.payload));
    }
    case 'deep': {
      const depth = rng.weighted<number>([
        [3, rng.int(10, 1000)],
        [3, rng.int(1000, 100_000)],
        [1, rng.int(100_000, 400_000)],
      ]);
      const nest = deepNest(Math.min(depth, lim.maxPayloadBytes / 2 - 16), rng.chance(0.3));
      // nested as a whole request, as a request's keys, as an item, or as an unknown field's value
      const where = rng.int(0, 3);
      const payload =
        where === 0
          ? nest
          : where === 1
            ? encode(
                map({ id: rng.int(0, 999), op: 'mget', keys: new Raw(Buffer.concat([Buffer.from([0x91]), nest])) }),
              )
            : where === 2
              ? encode(
                  map({ id: rng.int(0, 999), op: 'mset', items: new Raw(Buffer.concat([Buffer.from([0x91]), nest])) }),
                )
              : encode(map({ id: rng.int(0, 999), op: 'get', key: 'fz:1', junk: new Raw(nest) }));
      return bin(payload);
    }
    case 'giant-header': {
      const h = rng.pick([
        [0xdd, 0xff, 0xff, 0xff, 0xff],
        [0xdf, 0xff, 0xff, 0xff, 0xff],
        [0xdb, 0xff, 0xff, 0xff, 0xff],
        [0xc6, 0x7f, 0xff, 0xff, 0xff],
        [0xdc, 0xff, 0xff],
        [0xde, 0xff, 0xff],
      ]);
      const where = rng.int(0, 2);
      const payload =
        where === 0
          ? Buffer.concat([Buffer.from(h), rng.bytes(rng.int(0, 64))])
          : encode(
              map({
                id: rng.int(0, 999),
                op: rng.pick(['mget', 'mset', 'mdel', 'get']),
                [rng.pick(['keys', 'items', 'key', 'value'])]: new Raw(
                  Buffer.concat([Buffer.from(h), rng.bytes(rng.int(0, 32))]),
                ),
              }),
            );
      return bin(payload);
    }
    case 'giant-real': {
      // a real request with very many small parts, within the frame limit
      const id = nextId();
      const n = rng.chance(0.9)
        ? rng.int(2000, 20_000)
        : rng.int(20_000, Math.min(lim.maxItemsPerRequest + 10, Math.floor(lim.maxPayloadBytes / 12)));
      const keys: MpVal[] = [];
      for (let k = 0; k < n; k++) keys.push(`fz:${k % KEY_SPACE}`);
      const op = rng.pick<OpName>(['mget', 'mdel']);
      const tooMany = n > lim.maxItemsPerRequest;
      const payload = encode(map({ id, op, keys }));
      return bin(payload, [{ id, op, items: tooMany ? [] : keys.map(() => 'ok'), reqErr: tooMany }]);
    }
    case 'random':
      return bin(rng.bytes(rng.size(4096)));
    case 'text': {
      const k = rng.int(1, 3);
      const frames: Buffer[] = [];
      const texts: Buffer[] = [];
      for (let j = 0; j < k; j++) {
        const t = Buffer.from(
          rng.pick(['{"id":1,"op":"get","key":"fz:1"}', 'hello', '', 'ü€𝄞', rng.word(rng.size(200))]),
          'utf8',
        );
        texts.push(t);
        frames.push(rng.chance(0.2) && t.length > 1 ? Buffer.concat(fragments(rng, t, Op.Text)) : wsFrame(Op.Text, t));
      }
      return { kind, frames, payload: Buffer.concat(texts), tracked: [], textFrames: k };
    }
    case 'text-bad-utf8': {
      const t = Buffer.concat([
        Buffer.from('ab'),
        Buffer.from(
          rng.pick([
            [0xff],
            [0xc3, 0x28],
            [0xe2, 0x82],
            [0xed, 0xa0, 0x80],
            [0xf8, 0x88, 0x80, 0x80, 0x80],
            [0xc0, 0xaf],
          ]),
        ),
      ]);
      return { kind, frames: [wsFrame(Op.Text, t)], payload: t, tracked: [], ends: 'bad-utf8' };
    }
    case 'fragmented': {
      const m = rng.chance(0.7)
        ? many(0, nextId)
        : { payload: mutate(rng, many(0.2, () => rng.int(0, 999)).payload), tracked: [] };
      return { kind, frames: fragments(rng, m.payload, Op.Bin), payload: m.payload, tracked: m.tracked };
    }
    case 'ping': {
      const p = rng.bytes(rng.int(0, 125));
      return { kind, frames: [wsFrame(Op.Ping, p)], payload: p, tracked: [], ping: p };
    }
    case 'empty-or-tiny':
      return bin(
        rng.pick([
          Buffer.alloc(0),
          Buffer.from([0xc0]),
          Buffer.from([0x80]),
          Buffer.from([0x90]),
          Buffer.from([0x81, 0xa2, 0x69, 0x64]),
        ]),
      );
    case 'oversize-claimed': {
      // a header announcing more than the limit, and only a little of it
      const claim = lim.maxPayloadBytes + rng.int(1, 1 << 20) * (rng.chance(0.2) ? 1024 : 1);
      const p = rng.bytes(rng.int(0, 256));
      return { kind, frames: [wsFrame(Op.Bin, p, { claim })], payload: p, tracked: [], ends: 'oversize' };
    }
    case 'oversize-real': {
      const p = Buffer.alloc(lim.maxPayloadBytes + rng.int(1, 4096), 0x90);
      return { kind, frames: [wsFrame(Op.Bin, p)], payload: p.subarray(0, 64), tracked: [], ends: 'oversize' };
    }
    case 'client-close': {
      const code = rng.pick([1000, 1001, 3000, 4000]);
      const p = Buffer.alloc(2);
      p.writeUInt16BE(code);
      return { kind, frames: [wsFrame(Op.Close, p)], payload: p, tracked: [], ends: 'client-close' };
    }
    default: {
      // protocol violations: the connection must be failed (closed), nothing else
      const p = encode(map({ id: 1, op: 'get', key: 'fz:1' }));
      const v = rng.int(0, 6);
      const name = [
        'unmasked',
        'rsv-bits',
        'reserved-opcode',
        'ping-over-125',
        'fragmented-ping',
        'continuation-first',
        'data-inside-fragments',
      ][v];
      const frames =
        v === 0
          ? [wsFrame(Op.Bin, p, { mask: false })]
          : v === 1
            ? [wsFrame(Op.Bin, p, { rsv: rng.int(1, 7) })]
            : v === 2
              ? [wsFrame(rng.pick([3, 4, 5, 6, 7, 11, 12, 13, 14, 15]), p)]
              : v === 3
                ? [wsFrame(Op.Ping, rng.bytes(126 + rng.int(0, 200)))]
                : v === 4
                  ? [wsFrame(Op.Ping, Buffer.from('x'), { fin: false })]
                  : v === 5
                    ? [wsFrame(Op.Cont, p)]
                    : [wsFrame(Op.Bin, p, { fin: false }), wsFrame(Op.Bin, p)];
      return { kind: `protocol ${name}`, frames, payload: p, tracked: [], ends: 'protocol' };
    }
  }
}
