/**
 * Operator tool for `security.auth.apiKeys[].hash`: reads an API key on stdin and prints `sha256:<hex>`,
 * so the key itself never goes into the configuration (or into shell history, as an argument would).
 * One trailing newline is dropped (`echo`-style input); a key shorter than 16 characters is refused.
 * `--new` prints a fresh random key (32 bytes, base64url) and its hash instead, one per line.
 *
 *   printf %s "$KEY" | node dist/src/security/hash-key-cli.js
 *   node dist/src/security/hash-key-cli.js --new
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Authenticator } from './authenticator';

export const MIN_KEY_CHARS = 16;

/** The hash line for `input` as read from stdin, or the reason it is refused. */
export function hashLine(input: string): { ok: true; line: string } | { ok: false; error: string } {
  const key = input.replace(/\r?\n$/, '');
  if (key.length === 0) return { ok: false, error: 'no key on stdin' };
  if (/[\r\n]/.test(key)) return { ok: false, error: 'the key spans several lines' };
  if (key.length < MIN_KEY_CHARS) return { ok: false, error: `a key must be at least ${MIN_KEY_CHARS} characters` };
  return { ok: true, line: Authenticator.hashKey(key) };
}

function main(argv: string[]): number {
  if (argv[0] === '--new') {
    const key = randomBytes(32).toString('base64url');
    process.stdout.write(`${key}\n${Authenticator.hashKey(key)}\n`);
    return 0;
  }
  if (argv.length > 0) {
    process.stderr.write('usage: hash-key-cli < key   |   hash-key-cli --new\n');
    return 2;
  }
  const r = hashLine(readFileSync(0, 'utf8'));
  if (!r.ok) {
    process.stderr.write(`hash-key-cli: ${r.error}\n`);
    return 1;
  }
  process.stdout.write(r.line + '\n');
  return 0;
}

if (require.main === module) process.exitCode = main(process.argv.slice(2));
