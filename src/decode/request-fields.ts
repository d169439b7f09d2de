/**
 * Decodes one request map (docs/PROTOCOL.md) into a reused struct of positions: no object, string or
 * Buffer per request. Bulk `keys` / `items` are left in place and walked later by the dispatcher.
 * A field of the wrong type does not stop decoding, so the answer can still carry the request's id.
 *
 * Every field is checked here against docs/PROTOCOL.md, with a message naming the real limit: integers
 * are whole numbers (an integral float is accepted, as some encoders emit them) in the field's range; nil,
 * NaN, fractions, negatives and over-range values get the field's own code. Unknown fields are ignored (the
 * docs say so); a field given twice keeps its last value. Nothing here throws for a well-formed msgpack
 * value: only bytes that are not msgpack throw (MsgpackError / INCOMPLETE).
 */
import type { ErrorCode } from '../core/errors';
import { MpType, MsgpackReader } from './msgpack-reader';

export const enum Op {
  None,
  Get,
  Set,
  Del,
  MGet,
  MSet,
  MDel,
  /** A fresh credential for this connection (`token`). */
  Auth,
}

/** The limits the messages name; the router checks ttl again, so these only need to agree with it. */
export interface FieldLimits {
  maxTtlSeconds: number;
  maxWaitMs: number;
}

const DEFAULT_LIMITS: FieldLimits = { maxTtlSeconds: 2592000, maxWaitMs: 0xffffffff };
const UINT32_MAX = 0xffffffff;

/** Reads a whole number in 0..max, or returns -1 (the value is consumed either way). */
function readUint(r: MsgpackReader, max: number): number {
  const t = r.peekType();
  if (t !== MpType.Int && t !== MpType.Float) {
    r.skip();
    return -1;
  }
  const v = r.readNumber();
  if (!(Number.isInteger(v) && v >= 0 && v <= max)) return -1;
  return v === 0 ? 0 : v; // a float -0 is 0, lest it be written to memcached as "-0"
}

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
  /** The `auth` op's credential, or -1. */
  tokenOff = -1;
  tokenLen = 0;
  /** Reader positions of the bulk arrays, or -1. */
  keysAt = -1;
  itemsAt = -1;
  error: ErrorCode | null = null;
  errorMessage = '';
  private readonly maxTtl: number;
  private readonly maxWait: number;
  private readonly ttlMessage: string;
  private readonly waitMessage: string;

  constructor(limits: FieldLimits = DEFAULT_LIMITS) {
    this.maxTtl = limits.maxTtlSeconds;
    this.maxWait = limits.maxWaitMs;
    this.ttlMessage = `ttl must be an integer number of seconds from 0 to ${limits.maxTtlSeconds}`;
    this.waitMessage = `wait must be an integer number of milliseconds from 0 to ${limits.maxWaitMs}`;
  }

  private fail(code: ErrorCode, message: string): void {
    if (this.error === null) {
      this.error = code;
      this.errorMessage = message;
    }
  }

  /** Reads one map at r.pos. Throws MsgpackError / INCOMPLETE only when the bytes are not msgpack. */
  read(r: MsgpackReader): void {
    this.id = -1;
    this.op = Op.None;
    this.keyOff = -1;
    this.keyLen = 0;
    this.valueOff = -1;
    this.valueLen = 0;
    this.ttl = 0;
    this.flags = 0;
    this.wait = 0;
    this.keysAt = -1;
    this.itemsAt = -1;
    this.tokenOff = -1;
    this.tokenLen = 0;
    this.error = null;
    if (r.peekType() !== MpType.Map) {
      r.skip();
      this.fail('BAD_REQUEST', 'a request must be a msgpack map');
      return;
    }
    const n = r.readMapHeader();
    for (let f = 0; f < n; f++) {
      if (!r.readBytes()) {
        r.skip();
        r.skip();
        this.fail('BAD_REQUEST', 'field names must be strings');
        continue;
      }
      const b = r.buf,
        o = r.off,
        l = r.len;
      const c0 = l > 0 ? b[o] : 0;
      if (l === 2 && c0 === 0x69 && b[o + 1] === 0x64) {
        // An id that is not a uint32 is no id: the error goes out under id 0, as for a missing one.
        this.id = readUint(r, UINT32_MAX);
        if (this.id < 0) this.fail('BAD_REQUEST', 'id must be an integer from 0 to 4294967295');
      } else if (l === 2 && c0 === 0x6f && b[o + 1] === 0x70) this.readOp(r);
      else if (l === 3 && r.bytesEqual('key')) {
        if (r.readBytes()) {
          this.keyOff = r.off;
          this.keyLen = r.len;
        } else {
          r.skip();
          this.fail('BAD_KEY', 'key must be a str or bin');
        }
      } else if (l === 5 && r.bytesEqual('value')) {
        if (r.readBytes()) {
          this.valueOff = r.off;
          this.valueLen = r.len;
        } else {
          r.skip();
          this.fail('BAD_VALUE', 'value must be a bin or str');
        }
      } else if (l === 3 && r.bytesEqual('ttl')) this.ttl = this.uint(r, this.maxTtl, 'BAD_TTL', this.ttlMessage);
      else if (l === 5 && r.bytesEqual('flags'))
        this.flags = this.uint(r, UINT32_MAX, 'BAD_FLAGS', 'flags must be an integer from 0 to 4294967295');
      else if (l === 4 && r.bytesEqual('wait')) this.wait = this.uint(r, this.maxWait, 'BAD_WAIT', this.waitMessage);
      else if (l === 4 && r.bytesEqual('keys')) {
        this.keysAt = r.pos;
        r.skip();
      } else if (l === 5 && r.bytesEqual('items')) {
        this.itemsAt = r.pos;
        r.skip();
      } else if (l === 5 && r.bytesEqual('token')) {
        if (r.readBytes()) {
          this.tokenOff = r.off;
          this.tokenLen = r.len;
        } else {
          r.skip();
          this.fail('UNAUTHORIZED', 'token must be a str');
        }
      } else r.skip();
    }
  }

  private uint(r: MsgpackReader, max: number, code: ErrorCode, message: string): number {
    const v = readUint(r, max);
    if (v >= 0) return v;
    this.fail(code, message);
    return 0;
  }

  private readOp(r: MsgpackReader): void {
    if (!r.readBytes()) {
      r.skip();
      this.fail('UNKNOWN_OP', 'op must be a string');
      return;
    }
    if (r.bytesEqual('get')) this.op = Op.Get;
    else if (r.bytesEqual('set')) this.op = Op.Set;
    else if (r.bytesEqual('del')) this.op = Op.Del;
    else if (r.bytesEqual('mget')) this.op = Op.MGet;
    else if (r.bytesEqual('mset')) this.op = Op.MSet;
    else if (r.bytesEqual('mdel')) this.op = Op.MDel;
    else if (r.bytesEqual('auth')) this.op = Op.Auth;
    else this.fail('UNKNOWN_OP', 'op must be one of get, set, del, mget, mset, mdel, auth');
  }
}

/**
 * One mset item map: key, value, ttl, flags. `error` is the first problem found (the table's message fits
 * it, except for ttl, whose limit is configured: `errorMessage` names it).
 */
export class ItemFields {
  keyOff = -1;
  keyLen = 0;
  valueOff = -1;
  valueLen = 0;
  ttl = 0;
  flags = 0;
  error: ErrorCode | null = null;
  errorMessage: string | undefined = undefined;
  private readonly maxTtl: number;
  private readonly ttlMessage: string;

  constructor(limits: Pick<FieldLimits, 'maxTtlSeconds'> = DEFAULT_LIMITS) {
    this.maxTtl = limits.maxTtlSeconds;
    this.ttlMessage = `ttl must be an integer number of seconds from 0 to ${limits.maxTtlSeconds}`;
  }

  private fail(code: ErrorCode, message?: string): void {
    if (this.error === null) {
      this.error = code;
      this.errorMessage = message;
    }
  }

  read(r: MsgpackReader): void {
    this.keyOff = -1;
    this.valueOff = -1;
    this.keyLen = 0;
    this.valueLen = 0;
    this.ttl = 0;
    this.flags = 0;
    this.error = null;
    this.errorMessage = undefined;
    if (r.peekType() !== MpType.Map) {
      r.skip();
      this.fail('BAD_REQUEST', 'an item must be a msgpack map');
      return;
    }
    const n = r.readMapHeader();
    for (let f = 0; f < n; f++) {
      if (!r.readBytes()) {
        r.skip();
        r.skip();
        this.fail('BAD_REQUEST', 'field names must be strings');
        continue;
      }
      if (r.bytesEqual('key')) {
        if (r.readBytes()) {
          this.keyOff = r.off;
          this.keyLen = r.len;
        } else {
          r.skip();
          this.fail('BAD_KEY', 'key must be a str or bin');
        }
      } else if (r.bytesEqual('value')) {
        if (r.readBytes()) {
          this.valueOff = r.off;
          this.valueLen = r.len;
        } else {
          r.skip();
          this.fail('BAD_VALUE', 'value must be a bin or str');
        }
      } else if (r.bytesEqual('ttl')) {
        const v = readUint(r, this.maxTtl);
        if (v >= 0) this.ttl = v;
        else this.fail('BAD_TTL', this.ttlMessage);
      } else if (r.bytesEqual('flags')) {
        const v = readUint(r, UINT32_MAX);
        if (v >= 0) this.flags = v;
        else this.fail('BAD_FLAGS');
      } else r.skip();
    }
    if (this.keyOff < 0) this.fail('BAD_KEY', 'key missing');
    if (this.valueOff < 0) this.fail('BAD_VALUE', 'value missing');
  }
}
