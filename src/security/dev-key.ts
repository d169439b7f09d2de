/**
 * The development credential of `npm start` with no configuration: authentication stays on, and a random
 * API key (all permissions, no namespace, admin) is kept in a file only this user can read, so that the
 * key is never printed, logged or put in the configuration (only its hash is). The same file serves every
 * later run and every worker, so clients keep working across restarts. Only for a gateway that listens
 * on loopback and has no credential configured at all (settings.ts refuses the rest).
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Authenticator, type ApiKeyEntry } from './authenticator';

/** Where the key is kept unless KVGATE_DEV_KEY_FILE names another file. */
export const DEV_KEY_FILE = '.kvgate/dev-api-key';
export const DEV_KEY_ID = 'dev';

/** Reads the key file, creating it (mode 0600, 32 random bytes as base64url) when it does not exist. */
export function devKey(file = process.env.KVGATE_DEV_KEY_FILE ?? DEV_KEY_FILE): { path: string; entry: ApiKeyEntry } {
  const path = resolve(file);
  let key: string;
  try {
    key = readFileSync(path, 'utf8').trim();
    // Someone else could read it: take it back (the key is only as secret as the file).
    if ((statSync(path).mode & 0o077) !== 0) chmodSync(path, 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    key = randomBytes(32).toString('base64url');
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    writeFileSync(path, key + '\n', { mode: 0o600, flag: 'wx' });
  }
  if (key.length < 16) throw new Error(`${path}: the development key in it is too short; delete the file`);
  return {
    path,
    entry: { id: DEV_KEY_ID, hash: Authenticator.hashKey(key), namespace: '', perms: 'all', admin: true },
  };
}
