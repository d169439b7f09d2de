/** Values and result checks shared by the Redis tests through the gateway. */
import assert from 'node:assert/strict';
import { isItemError, type ItemResult } from '../client';

export const KIB16 = 16 * 1024;
export const MIB = 1024 * 1024;
export const SIZES = [0, 1, KIB16 - 1, KIB16, KIB16 + 1, MIB];
/** Every byte value once, then the bytes that framing code trips on. */
export const ALL_BYTES = Buffer.concat([
  Buffer.from(Array.from({ length: 256 }, (_, i) => i)),
  Buffer.from('\r\n\0\r\n'),
]);

/** `n` bytes differing per seed; from 256 bytes on, every byte value occurs (7 is odd: i*7 mod 256 is onto). */
export function pattern(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (seed + i * 7) & 0xff;
  return b;
}

export const show = (r: ItemResult): string =>
  isItemError(r)
    ? `error:${r.error.code}`
    : 'hit' in r
      ? r.hit
        ? `hit:${r.value.length}`
        : 'miss'
      : 'deleted' in r
        ? `deleted:${r.deleted}`
        : 'ok';

export function assertHit(r: ItemResult, value: Buffer, what: string): void {
  assert.ok(!isItemError(r) && 'hit' in r && r.hit, `${what}: expected a hit, got ${show(r)}`);
  assert.equal(r.flags, 0, `${what}: flags`);
  assert.ok(r.value.equals(value), `${what}: ${r.value.length} bytes differ from the ${value.length} written`);
}
