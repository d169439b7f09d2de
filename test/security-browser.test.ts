/**
 * Credentials from a real headless Chromium (test/helpers/browser.ts), whose WebSocket API cannot set an
 * Authorization header: a page carries its token in a `kvgate.bearer.<token>` subprotocol (offered with
 * `kvgate.v1`) or in `?access_token=`. Against a real gateway (startHarness, memcached behind it) with
 * authentication required and the page's 127.0.0.1 origin listed in security.allowedOrigins:
 *  - a page of the listed origin with tenant B's token opens the socket, the server selects kvgate.v1,
 *    and reads B's value of a key A also wrote, and misses a key only A has;
 *  - the same page without a token cannot open it; with a bad token neither;
 *  - the same page under localhost (an unlisted origin) cannot open it, even with the valid token.
 * Skips exactly as browser-harness.test.ts does (only without Chromium and without root).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startHarness, type Harness } from './helpers/harness';
import { browserSkip, startBrowser, type BrowserKit } from './helpers/browser';
import { apiKey } from './helpers/tokens';
import { KvHttpClient } from './client';

const KEY_A = apiKey('page-a', { namespace: 'tenantA:', tenant: 'A', perms: 'all' });
const KEY_B = apiKey('page-b', { namespace: 'tenantB:', tenant: 'B', perms: 'all' });

interface PageGetArg {
  url: string;
  protocols: string[];
  keys: string[];
  timeoutMs: number;
}

/** What the page saw: the selected subprotocol and each key's value (null: a miss), or why it failed. */
type PageGet = { ok: true; protocol: string; values: (string | null)[] } | { ok: false; why: string };

/**
 * Runs in the page: opens the WebSocket offering `protocols`, sends one `get` per key as hand-encoded
 * msgpack (the page has no msgpack library; ids 1, 2, ...), and decodes the answers: `[id, 0, 0, flags, bin]` (a
 * value), `[id, 0, 2]` (a miss), `[id, -1, 5]` (the END). Anything else, or a failure to open, is `why`.
 */
async function pageGet(arg: PageGetArg): Promise<PageGet> {
  type Ws = {
    binaryType: string;
    protocol: string;
    onopen: (() => void) | null;
    onmessage: ((ev: { data: ArrayBuffer }) => void) | null;
    onerror: (() => void) | null;
    onclose: ((ev: { code: number }) => void) | null;
    send(b: Uint8Array): void;
    close(): void;
  };
  const WebSocketCtor = (globalThis as unknown as { WebSocket: new (u: string, p: string[]) => Ws }).WebSocket;
  const enc = new TextEncoder();
  const str = (s: string): number[] => {
    const b = Array.from(enc.encode(s));
    if (b.length >= 32) throw new Error('keys here are short');
    return [0xa0 | b.length, ...b];
  };
  let ws: Ws;
  try {
    ws = new WebSocketCtor(arg.url, arg.protocols);
  } catch (e) {
    return { ok: false, why: `constructor: ${(e as Error).message}` };
  }
  ws.binaryType = 'arraybuffer';
  const values: (string | null)[] = arg.keys.map(() => null);
  let ends = 0;
  return new Promise<PageGet>((resolve) => {
    const done = (r: PageGet): void => {
      clearTimeout(timer);
      ws.onclose = null;
      ws.close();
      resolve(r);
    };
    const timer = setTimeout(() => done({ ok: false, why: 'timeout' }), arg.timeoutMs);
    ws.onerror = () => done({ ok: false, why: 'error' });
    ws.onclose = (ev) => done({ ok: false, why: `closed ${ev.code}` });
    ws.onopen = () => {
      arg.keys.forEach((k, i) =>
        ws.send(new Uint8Array([0x83, ...str('id'), i + 1, ...str('op'), ...str('get'), ...str('key'), ...str(k)])),
      );
    };
    ws.onmessage = (ev) => {
      const b = new Uint8Array(ev.data);
      let p = 0;
      while (p < b.length) {
        const n = b[p++] & 0x0f;
        const id = b[p++];
        const i = b[p] === 0xff ? -1 : b[p];
        p++;
        const kind = b[p++];
        if (n === 3 && i === -1 && kind === 5) ends++;
        else if (n === 3 && kind === 2) values[id - 1] = null;
        else if (n === 5 && kind === 0 && b[p + 1] === 0xc4) {
          p++; // flags (a positive fixint: 0 here)
          const len = b[p + 1];
          values[id - 1] = new TextDecoder().decode(b.subarray(p + 2, p + 2 + len));
          p += 2 + len;
        } else return done({ ok: false, why: `unexpected entry at byte ${p}: ${Array.from(b).join(',')}` });
      }
      if (ends === arg.keys.length) done({ ok: true, protocol: ws.protocol, values });
    };
  });
}

const skip = browserSkip();

describe('browser credentials: a page carries its token in a subprotocol or the query', { skip }, () => {
  let kit: BrowserKit;
  let h: Harness;
  before(async () => {
    kit = await startBrowser();
    h = await startHarness(
      {
        security: {
          allowedOrigins: [kit.pageOrigin()],
          auth: { mode: 'required', apiKeys: [KEY_A.entry, KEY_B.entry] },
        },
      },
      2,
    );
    const a = new KvHttpClient(h.base, { token: KEY_A.key });
    await a.set('page:k', 'A-value');
    await a.set('page:only-a', 'A-only');
    await new KvHttpClient(h.base, { token: KEY_B.key }).set('page:k', 'B-value');
  });
  after(async () => {
    await Promise.all([kit?.close(), h?.stop()]);
  });

  const keys = ['page:k', 'page:only-a'];

  it("a listed origin with B's token in the kvgate.bearer. subprotocol reads only B's namespace", async () => {
    const r = await kit.run(pageGet, {
      url: h.wsUrl,
      protocols: ['kvgate.v1', `kvgate.bearer.${KEY_B.key}`],
      keys,
      timeoutMs: 10_000,
    });
    assert.deepEqual(r, { ok: true, protocol: 'kvgate.v1', values: ['B-value', null] });
    // A's token reads A's (the same page, the same code: the answer depends on the token alone).
    const ra = await kit.run(pageGet, {
      url: h.wsUrl,
      protocols: ['kvgate.v1', `kvgate.bearer.${KEY_A.key}`],
      keys,
      timeoutMs: 10_000,
    });
    assert.deepEqual(ra, { ok: true, protocol: 'kvgate.v1', values: ['A-value', 'A-only'] });
  });

  it('a listed origin with the token in ?access_token= reads its namespace too', async () => {
    const r = await kit.run(pageGet, {
      url: `${h.wsUrl}?access_token=${KEY_B.key}`,
      protocols: [],
      keys,
      timeoutMs: 10_000,
    });
    assert.deepEqual(r, { ok: true, protocol: '', values: ['B-value', null] });
  });

  it('a listed origin without a token, or with a bad one, cannot open the socket', async () => {
    for (const [url, protocols] of [
      [h.wsUrl, ['kvgate.v1']],
      [h.wsUrl, []],
      [h.wsUrl, ['kvgate.v1', 'kvgate.bearer.not-a-key']],
      [`${h.wsUrl}?access_token=not-a-key`, []],
      // The token's subprotocol alone (no kvgate.v1): refused 400, even with a valid token.
      [h.wsUrl, [`kvgate.bearer.${KEY_B.key}`]],
    ] as const) {
      const r = await kit.run(pageGet, { url, protocols: [...protocols], keys, timeoutMs: 10_000 });
      assert.equal(r.ok, false, `${url} ${protocols.join(',')}`);
    }
  });

  it('an unlisted origin cannot open the socket, even with a valid token in the subprotocol', async () => {
    for (const [url, protocols] of [
      [h.wsUrl, ['kvgate.v1', `kvgate.bearer.${KEY_B.key}`]],
      [`${h.wsUrl}?access_token=${KEY_B.key}`, []],
    ] as const) {
      const r = await kit.run(pageGet, { url, protocols: [...protocols], keys, timeoutMs: 10_000 }, 'localhost');
      assert.equal(r.ok, false, url);
    }
    // The same run from the listed origin opens: the refusal above is the origin's.
    const ok = await kit.run(pageGet, {
      url: h.wsUrl,
      protocols: ['kvgate.v1', `kvgate.bearer.${KEY_B.key}`],
      keys,
      timeoutMs: 10_000,
    });
    assert.equal(ok.ok, true);
  });
});
