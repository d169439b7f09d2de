/**
 * Decodes one request map (docs/PROTOCOL.md) into a reused struct of positions: no object, string or
 * Buffer per request. Bulk `keys` / `items` are left in place and walked later by the dispatcher.
 * A field of the wrong type does not stop decoding, so the answer can still carry the request's id.
 */
import type { ErrorCode } from '../errors';
import { MpType, MsgpackReader } from './msgpack-reader';

export const enum Op { None, Get, Set, Del, MGet, MSet, MDel }

export class RequestFields {
  id = -1;
  op = Op.None;
  keyOff = -1;
  keyLen = 0;
  valueOff = -1;
  valueLen = 0;
  ttl = 0;
  flags = 0;
  wait = 0;
  /** Reader positions of the bulk arrays, or -1. */
  keysAt = -1;
  itemsAt = -1;
  error: ErrorCode | null = null;
  errorMessage = '';

  private fail(code: ErrorCode, message: string): void {
    if (this.error === null) { this.error = code; this.errorMessage = message; }
  }

  /** Reads one map at r.pos. Throws MsgpackError / INCOMPLETE only when the bytes are not msgpack. */
  read(r: MsgpackReader): void {
    this.id = -1; this.op = Op.None; this.keyOff = -1; this.keyLen = 0; this.valueOff = -1; this.valueLen = 0;
    this.ttl = 0; this.flags = 0; this.wait = 0; this.keysAt = -1; this.itemsAt = -1; this.error = null;
    if (r.peekType() !== MpType.Map) {
      r.skip();
      this.fail('BAD_REQUEST', 'a request must be a msgpack map');
      return;
    }
    const n = r.readMapHeader();
    for (let f = 0; f < n; f++) {
      if (!r.readBytes()) { r.skip(); r.skip(); this.fail('BAD_REQUEST', 'field names must be strings'); continue; }
      const b = r.buf, o = r.off, l = r.len;
      const c0 = l > 0 ? b[o] : 0;
      if (l === 2 && c0 === 0x69 && b[o + 1] === 0x64) this.id = this.uint(r, 0xffffffff, 'BAD_REQUEST', 'id');
      else if (l === 2 && c0 === 0x6f && b[o + 1] === 0x70) this.readOp(r);
      else if (l === 3 && r.bytesEqual('key')) {
        if (r.readBytes()) { this.keyOff = r.off; this.keyLen = r.len; } else { r.skip(); this.fail('BAD_KEY', 'key must be a str or bin'); }
      } else if (l === 5 && r.bytesEqual('value')) {
        if (r.readBytes()) { this.valueOff = r.off; this.valueLen = r.len; } else { r.skip(); this.fail('BAD_VALUE', 'value must be a bin or str'); }
      } else if (l === 3 && r.bytesEqual('ttl')) this.ttl = this.uint(r, 0xffffffff, 'BAD_TTL', 'ttl');
      else if (l === 5 && r.bytesEqual('flags')) this.flags = this.uint(r, 0xffffffff, 'BAD_FLAGS', 'flags');
      else if (l === 4 && r.bytesEqual('wait')) this.wait = this.uint(r, 0xffffffff, 'BAD_WAIT', 'wait');
      else if (l === 4 && r.bytesEqual('keys')) { this.keysAt = r.pos; r.skip(); }
      else if (l === 5 && r.bytesEqual('items')) { this.itemsAt = r.pos; r.skip(); }
      else r.skip();
    }
  }

  private uint(r: MsgpackReader, max: number, code: ErrorCode, name: string): number {
    if (r.peekType() === MpType.Int || r.peekType() === MpType.Float) {
      const v = r.readNumber();
      if (Number.isInteger(v) && v >= 0 && v <= max) return v;
      this.fail(code, `${name} must be an integer from 0 to ${max}`);
      return 0;
    }
    r.skip();
    this.fail(code, `${name} must be an integer`);
    return 0;
  }

  private readOp(r: MsgpackReader): void {
    if (!r.readBytes()) { r.skip(); this.fail('UNKNOWN_OP', 'op must be a string'); return; }
    if (r.bytesEqual('get')) this.op = Op.Get;
    else if (r.bytesEqual('set')) this.op = Op.Set;
    else if (r.bytesEqual('del')) this.op = Op.Del;
    else if (r.bytesEqual('mget')) this.op = Op.MGet;
    else if (r.bytesEqual('mset')) this.op = Op.MSet;
    else if (r.bytesEqual('mdel')) this.op = Op.MDel;
    else this.fail('UNKNOWN_OP', 'op must be one of get, set, del, mget, mset, mdel');
  }
}

/** One mset item map: key, value, ttl, flags. */
export class ItemFields {
  keyOff = -1;
  keyLen = 0;
  valueOff = -1;
  valueLen = 0;
  ttl = 0;
  flags = 0;
  error: ErrorCode | null = null;

  read(r: MsgpackReader): void {
    this.keyOff = -1; this.valueOff = -1; this.keyLen = 0; this.valueLen = 0; this.ttl = 0; this.flags = 0; this.error = null;
    if (r.peekType() !== MpType.Map) { r.skip(); this.error = 'BAD_REQUEST'; return; }
    const n = r.readMapHeader();
    for (let f = 0; f < n; f++) {
      if (!r.readBytes()) { r.skip(); r.skip(); this.error ??= 'BAD_REQUEST'; continue; }
      if (r.bytesEqual('key')) {
        if (r.readBytes()) { this.keyOff = r.off; this.keyLen = r.len; } else { r.skip(); this.error ??= 'BAD_KEY'; }
      } else if (r.bytesEqual('value')) {
        if (r.readBytes()) { this.valueOff = r.off; this.valueLen = r.len; } else { r.skip(); this.error ??= 'BAD_VALUE'; }
      } else if (r.bytesEqual('ttl')) this.ttl = this.num(r, 'BAD_TTL');
      else if (r.bytesEqual('flags')) this.flags = this.num(r, 'BAD_FLAGS');
      else r.skip();
    }
    if (this.keyOff < 0) this.error ??= 'BAD_KEY';
    if (this.valueOff < 0) this.error ??= 'BAD_VALUE';
  }

  private num(r: MsgpackReader, code: ErrorCode): number {
    const t = r.peekType();
    if (t === MpType.Int || t === MpType.Float) {
      const v = r.readNumber();
      if (Number.isInteger(v) && v >= 0 && v <= 0xffffffff) return v;
    } else r.skip();
    this.error ??= code;
    return 0;
  }
}
