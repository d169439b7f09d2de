/**
 * Credentials for the end-to-end security tests, made here with node:crypto alone (none of
 * src/security/jwt.ts's code): a JWS signer for HS256, RS256 and ES256 with our own base64url and DER ->
 * r||s conversion, unsigned `alg: none` tokens, and API keys that are easy to spot in a log. Every token
 * and key carries a random part, so a search of captured output for it cannot hit by chance.
 */
import { createHmac, createSign, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { Authenticator } from '../../src/security/authenticator';

/** base64url by hand from standard base64 (the verifier uses Buffer's 'base64url'). */
export function b64u(b: Buffer | string): string {
  return Buffer.from(b).toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
}

/** A DER ECDSA signature (SEQUENCE of two INTEGERs, short-form lengths) as the 64-byte r||s of RFC 7518. */
function derToRaw(der: Buffer): Buffer {
  let p = 2;
  const parts: Buffer[] = [];
  for (let i = 0; i < 2; i++) {
    if (der[p] !== 0x02) throw new Error('not a DER INTEGER');
    const n = der[p + 1];
    let v = der.subarray(p + 2, p + 2 + n);
    p += 2 + n;
    while (v.length > 32 && v[0] === 0) v = v.subarray(1);
    parts.push(Buffer.concat([Buffer.alloc(32 - v.length), v]));
  }
  return Buffer.concat(parts);
}

/** What signs a token: an HMAC secret (any bytes or text, right or wrong) or a private key. */
export type SignKey =
  { alg: 'HS256'; secret: Buffer | string } | { alg: 'RS256' | 'ES256'; privateKey: KeyObject } | { alg: 'none' };

/**
 * A compact JWS of `payload`: header `{alg, typ: 'JWT', ...header}` (a header field given as undefined
 * is left out). `alg: 'none'` gets an empty signature, as such tokens are written.
 */
export function signJwt(key: SignKey, payload: Record<string, unknown>, header: Record<string, unknown> = {}): string {
  const input = `${b64u(JSON.stringify({ alg: key.alg, typ: 'JWT', ...header }))}.${b64u(JSON.stringify(payload))}`;
  let sig: Buffer;
  if (key.alg === 'none') sig = Buffer.alloc(0);
  else if (key.alg === 'HS256') sig = createHmac('sha256', key.secret).update(input).digest();
  else if (key.alg === 'RS256') sig = createSign('RSA-SHA256').update(input).sign(key.privateKey);
  else sig = derToRaw(createSign('SHA256').update(input).sign(key.privateKey));
  return `${input}.${b64u(sig)}`;
}

/** Seconds since the epoch, as JWT `exp` / `nbf` count them. */
export const nowSeconds = (): number => Math.floor(Date.now() / 1000);

export interface RsaPair {
  publicKey: KeyObject;
  privateKey: KeyObject;
  /** The public key as SPKI PEM: what the gateway is configured with (and what an attacker may know). */
  publicPem: string;
}

export function rsaPair(): RsaPair {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { publicKey, privateKey, publicPem: publicKey.export({ format: 'pem', type: 'spki' }) as string };
}

/** A random HS256 secret of 48 characters (the gateway asks for at least 32 bytes), with a label in it. */
export function hmacSecret(label: string): string {
  return `hs-${label}-${randomBytes(24).toString('hex')}`;
}

/** An API key and its configuration entry (only the hash goes to the gateway). */
export interface ApiKey {
  id: string;
  key: string;
  entry: Record<string, unknown>;
}

/**
 * An API key `kvg_<label>_<random>` for `entry` (namespace, tenant, perms or rules, admin), configured by
 * its sha256 hash as the gateway wants it.
 */
export function apiKey(id: string, entry: Record<string, unknown>): ApiKey {
  const key = `kvg_${id.replace(/[^a-z0-9]/gi, '')}_${randomBytes(16).toString('hex')}`;
  return { id, key, entry: { id, hash: Authenticator.hashKey(key), ...entry } };
}
