/**
 * Browser safety end to end (src/security/browser-policy.ts, src/front/browser-gate.ts), from a real
 * headless Chromium (test/helpers/browser.ts) on a page of another origin, against a real gateway
 * (startHarness: memcached behind it) that lists the page's 127.0.0.1 origin in security.allowedOrigins,
 * and against a recording server of the test's own:
 *  - the listed page reads over the WebSocket; the same page under localhost (unlisted) is refused;
 *  - a listed page's cross-origin bulk write and PUT pass their CORS preflight and are stored; an unlisted
 *    page's preflight is refused, so the browser never sends the write;
 *  - a `no-cors` text/plain POST needs no preflight and reaches the server with the page's Origin (the
 *    CSRF vector): the gateway refuses it 403 FORBIDDEN even from a listed origin.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startHarness, type Harness } from './helpers/harness';
import {
  browserSkip,
  startBrowser,
  startRecorder,
  type BrowserKit,
  type PageGlobals,
  type Recorder,
} from './helpers/browser';

/** One WebSocket entry as the page decodes it: numbers, strings, and bin as an array of bytes. */
type Entry = (number | string | number[])[];

interface WsGetArg {
  url: string;
  key: string;
  id: number;
  timeoutMs: number;
}

/**
 * Runs in the page: opens the WebSocket, sends `{id, op: 'get', key}` as msgpack encoded by hand (the page
 * has no msgpack library), and decodes the entry arrays that come back (docs/PROTOCOL.md) until the END
 * entry of `id`. Only the msgpack the gateway uses for entries is decoded; anything else is an error.
 */
async function wsGetInPage(arg: WsGetArg): Promise<{ entries: Entry[]; origin: string }> {
  const { WebSocket, location } = globalThis as unknown as PageGlobals;
  const enc = new TextEncoder();
  const str = (s: string): number[] => {
    const b = Array.from(enc.encode(s));
    if (b.length < 32) return [0xa0 | b.length, ...b];
    if (b.length < 256) return [0xd9, b.length, ...b];
    throw new Error('key too long for this encoder');
  };
  const uint = (n: number): number[] => {
    if (n < 128) return [n];
    if (n < 65536) return [0xcd, n >> 8, n & 0xff];
    return [0xce, (n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
  };
  // fixmap of 3: id, op, key
  const request = new Uint8Array([
    0x83,
    ...str('id'),
    ...uint(arg.id),
    ...str('op'),
    ...str('get'),
    ...str('key'),
    ...str(arg.key),
  ]);

  const decodeAll = (bytes: Uint8Array): Entry[] => {
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let p = 0;
    const bin = (n: number): number[] => {
      const out = Array.from(bytes.subarray(p, p + n));
      p += n;
      return out;
    };
    const text = (n: number): string => {
      const out = new TextDecoder().decode(bytes.subarray(p, p + n));
      p += n;
      return out;
    };
    const scalar = (): number | string | number[] => {
      const t = bytes[p++];
      if (t <= 0x7f) return t;
      if (t >= 0xe0) return t - 0x100;
      if ((t & 0xe0) === 0xa0) return text(t & 0x1f);
      switch (t) {
        case 0xcc:
          return bytes[p++];
        case 0xcd:
          p += 2;
          return dv.getUint16(p - 2);
        case 0xce:
          p += 4;
          return dv.getUint32(p - 4);
        case 0xd0:
          return dv.getInt8(p++);
        case 0xd9:
          return text(bytes[p++]);
        case 0xda:
          p += 2;
          return text(dv.getUint16(p - 2));
        case 0xc4:
          return bin(bytes[p++]);
        case 0xc5:
          p += 2;
          return bin(dv.getUint16(p - 2));
        default:
          throw new Error(`unexpected msgpack byte 0x${t.toString(16)} at ${p - 1}`);
      }
    };
    const entries: Entry[] = [];
    while (p < bytes.length) {
      const t = bytes[p++];
      if ((t & 0xf0) !== 0x90) throw new Error(`entry is not a fixarray: 0x${t.toString(16)}`);
      const e: Entry = [];
      for (let i = 0; i < (t & 0x0f); i++) e.push(scalar());
      entries.push(e);
    }
    return entries;
  };

  const ws = new WebSocket(arg.url);
  ws.binaryType = 'arraybuffer';
  const entries: Entry[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no END within ${arg.timeoutMs} ms`)), arg.timeoutMs);
      ws.onopen = () => ws.send(request);
      ws.onerror = () => {
        clearTimeout(timer);
        reject(new Error('WebSocket error'));
      };
      ws.onclose = (ev) => {
        clearTimeout(timer);
        reject(new Error(`WebSocket closed: ${ev.code} ${ev.reason}`));
      };
      ws.onmessage = (ev) => {
        try {
          for (const e of decodeAll(new Uint8Array(ev.data as ArrayBuffer))) {
            entries.push(e);
            if (e[0] === arg.id && e[1] === -1 && e[2] === 5) {
              clearTimeout(timer);
              resolve();
            }
          }
        } catch (err) {
          clearTimeout(timer);
          reject(err);
        }
      };
    });
  } finally {
    ws.onclose = null;
    ws.close();
  }
  return { entries, origin: location.origin };
}

interface FetchArg {
  url: string;
  method: string;
  mode: 'cors' | 'no-cors';
  contentType: string;
  body: string;
  timeoutMs: number;
}

/** Runs in the page: one fetch, reported as its outcome (a rejected fetch as its error's name and text). */
async function fetchInPage(
  arg: FetchArg,
): Promise<{ ok: true; type: string; status: number } | { ok: false; name: string; message: string }> {
  try {
    const res = await fetch(arg.url, {
      method: arg.method,
      mode: arg.mode,
      headers: { 'content-type': arg.contentType },
      body: arg.body,
      signal: AbortSignal.timeout(arg.timeoutMs),
    });
    return { ok: true, type: res.type, status: res.status };
  } catch (e) {
    const err = e as Error;
    return { ok: false, name: err.name, message: err.message };
  }
}

/** Runs in the page: opens a WebSocket, resolves with its first text message, or rejects. */
async function wsHelloInPage(arg: { url: string; timeoutMs: number }): Promise<string> {
  const { WebSocket } = globalThis as unknown as PageGlobals;
  const ws = new WebSocket(arg.url);
  try {
    return await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no message')), arg.timeoutMs);
      ws.onmessage = (ev) => {
        clearTimeout(timer);
        resolve(String(ev.data));
      };
      ws.onerror = () => {
        clearTimeout(timer);
        reject(new Error('WebSocket error'));
      };
    });
  } finally {
    ws.close();
  }
}

/** `kvgate_requests_total` summed over the series whose labels include `want`, from the admin listener. */
async function requestsTotal(h: Harness, want: Record<string, string>): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${h.gw.adminPort}/metrics`);
  assert.equal(res.status, 200);
  let n = 0;
  for (const line of (await res.text()).split('\n')) {
    const m = /^kvgate_requests_total\{([^}]*)\} (\S+)$/.exec(line);
    if (!m) continue;
    const labels = Object.fromEntries([...m[1].matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(want).every(([k, v]) => labels[k] === v)) n += Number(m[2]);
  }
  return n;
}

describe('browser harness: when it skips', () => {
  it('skips only without Chromium and without root; as root a missing Chromium is a failure, not a skip', () => {
    const absent = '/nonexistent/chromium';
    assert.match(String(browserSkip(absent, 1000)), /missing and we are not root.*apt-get install -y chromium/);
    assert.equal(browserSkip(absent, 0), false);
    assert.equal(browserSkip(process.execPath, 1000), false); // present: runs whoever we are
  });
});

const skip = browserSkip();

describe('browser harness: a real Chromium on another origin', { skip }, () => {
  let kit: BrowserKit;
  let h: Harness;
  let rec: Recorder;
  const p = `browser:${randomBytes(4).toString('hex')}:`;

  before(async () => {
    [kit, rec] = await Promise.all([startBrowser(), startRecorder()]);
    // The page under 127.0.0.1 is a listed origin; the same page under localhost is not.
    h = await startHarness({ security: { allowedOrigins: [kit.pageOrigin()] } }, 2);
  });
  after(async () => {
    await Promise.all([kit?.close(), h?.stop(), rec?.close()]);
  });

  it("serves pages under two origins of one port, neither the gateway's", async () => {
    const origin = (): string => (globalThis as unknown as PageGlobals).location.origin;
    const a = await kit.run(origin, null);
    const b = await kit.run(origin, null, 'localhost');
    assert.equal(a, `http://127.0.0.1:${kit.pagePort}`);
    assert.equal(b, `http://localhost:${kit.pagePort}`);
    assert.notEqual(kit.pagePort, h.gw.port);
  });

  it("(a) a page of a listed origin reads over the gateway's WebSocket (hand-encoded msgpack); an unlisted one is refused", async () => {
    const key = `${p}ws`;
    const value = Buffer.from([0x68, 0x69, 0x00, 0xff, 0x80, 0x0a]); // not valid UTF-8: it must come back as bin
    await h.http.set(key, value, { flags: 7 });
    const got = await kit.run(wsGetInPage, { url: h.wsUrl, key, id: 300, timeoutMs: 10_000 });
    assert.equal(got.origin, `http://127.0.0.1:${kit.pagePort}`);
    assert.deepEqual(got.entries, [
      [300, 0, 0, 7, [...value]],
      [300, -1, 5],
    ]);
    const miss = await kit.run(wsGetInPage, { url: h.wsUrl, key: `${p}absent`, id: 70000, timeoutMs: 10_000 });
    assert.deepEqual(miss.entries, [
      [70000, 0, 2],
      [70000, -1, 5],
    ]);
    // The same page under another origin: the upgrade is refused (403), the page's WebSocket fails.
    const refused = await kit.run(wsGetInPage, { url: h.wsUrl, key, id: 301, timeoutMs: 10_000 }, 'localhost').then(
      () => 'opened',
      (e: Error) => e.message,
    );
    assert.notEqual(refused, 'opened');
  });

  it("(a) Chromium sends the page's origin as Origin on a WebSocket upgrade (recorded by the test's server)", async () => {
    for (const host of ['127.0.0.1', 'localhost'] as const) {
      const path = `/v1/ws?from=${host}`;
      assert.equal(await kit.run(wsHelloInPage, { url: rec.wsUrl(path), timeoutMs: 10_000 }, host), 'hello');
      const up = await rec.waitFor((r) => r.upgrade && r.url === path, `the upgrade from ${host}`);
      assert.equal(up.headers.origin, `http://${host}:${kit.pagePort}`);
      assert.equal(up.headers.host, `127.0.0.1:${rec.port}`);
      assert.equal(up.headers.upgrade?.toLowerCase(), 'websocket');
    }
  });

  it('(b) a listed origin writes cross-origin through CORS (preflight 204); an unlisted one fails in the browser', async () => {
    const key = `${p}cors`;
    const body = `${JSON.stringify({ key, value: 'written cross-origin' })}\n`;
    const arg = { method: 'POST', mode: 'cors' as const, contentType: 'application/x-ndjson', body, timeoutMs: 10_000 };
    const r = await kit.run(fetchInPage, { ...arg, url: `${h.base}/v1/mset` });
    assert.deepEqual(r, { ok: true, type: 'cors', status: 200 });
    assert.deepEqual(await h.http.get(key), { hit: true, value: Buffer.from('written cross-origin'), flags: 0 });

    const other = `${p}cors:unlisted`;
    const msets = await requestsTotal(h, { front: 'http', op: 'mset' });
    const r2 = await kit.run(
      fetchInPage,
      { ...arg, body: `${JSON.stringify({ key: other, value: 'x' })}\n`, url: `${h.base}/v1/mset` },
      'localhost',
    );
    assert.equal(r2.ok === false && r2.name, 'TypeError');
    // The preflight was refused (403), so the POST itself never reached the gateway.
    assert.equal(await requestsTotal(h, { front: 'http', op: 'mset' }), msets);
    assert.equal((await h.http.get(other)).hit, false);

    // The same request at the recorder (no CORS answers): the browser asked first (OPTIONS) and sent nothing more.
    const path = '/v1/mset?cors';
    const rr = await kit.run(fetchInPage, { ...arg, url: rec.url(path) });
    assert.equal(rr.ok, false);
    const pre = await rec.waitFor((x) => x.url === path, 'the preflight');
    assert.equal(pre.method, 'OPTIONS');
    assert.equal(pre.headers.origin, kit.pageOrigin());
    assert.equal(pre.headers['access-control-request-method'], 'POST');
    assert.equal(pre.headers['access-control-request-headers'], 'content-type');
    assert.deepEqual(
      rec.seen.filter((x) => x.url === path).map((x) => x.method),
      ['OPTIONS'],
    );
  });

  it('(b) a cross-origin PUT from a listed origin is stored and read back; from an unlisted one it fails', async () => {
    const key = `${p}put`;
    const put = {
      method: 'PUT',
      mode: 'cors' as const,
      contentType: 'text/plain',
      body: 'put cross-origin',
      timeoutMs: 10_000,
    };
    const url = `${h.base}/v1/kv/${encodeURIComponent(key)}`;
    assert.deepEqual(await kit.run(fetchInPage, { ...put, url }), { ok: true, type: 'cors', status: 204 });
    assert.deepEqual(await h.http.get(key), { hit: true, value: Buffer.from('put cross-origin'), flags: 0 });
    const r = await kit.run(fetchInPage, { ...put, url: `${url}:2` }, 'localhost');
    assert.equal(r.ok === false && r.name, 'TypeError');
    assert.equal((await h.http.get(`${key}:2`)).hit, false);
  });

  it('(c) a no-cors text/plain POST needs no preflight and reaches the server with its Origin (the CSRF vector)', async () => {
    const key = `${p}csrf`;
    const body = `${JSON.stringify({ key, value: 'csrf' })}\n`;
    const arg = { method: 'POST', mode: 'no-cors' as const, contentType: 'text/plain', body, timeoutMs: 10_000 };

    const path = '/v1/mset?csrf';
    const r = await kit.run(fetchInPage, { ...arg, url: rec.url(path) });
    assert.deepEqual(r, { ok: true, type: 'opaque', status: 0 }); // the page cannot read the answer...
    const got = await rec.waitFor((x) => x.url === path, 'the no-cors POST');
    // ...but the request went, first and alone, with the page's Origin and a simple content type.
    assert.deepEqual(
      rec.seen.filter((x) => x.url === path).map((x) => x.method),
      ['POST'],
    );
    assert.equal(got.headers.origin, kit.pageOrigin());
    assert.match(got.headers['content-type'] ?? '', /^text\/plain\b/);
    assert.equal(got.body, body);

    // At the gateway it arrives too, even from a listed origin, and is refused before its body is read:
    // every browser write must have gone through a preflight (FORBIDDEN, security/browser-policy.ts).
    const refused = await requestsTotal(h, { front: 'http', op: 'mset', outcome: 'FORBIDDEN' });
    const g = await kit.run(fetchInPage, { ...arg, url: `${h.base}/v1/mset` });
    assert.deepEqual(g, { ok: true, type: 'opaque', status: 0 });
    assert.equal(await requestsTotal(h, { front: 'http', op: 'mset', outcome: 'FORBIDDEN' }), refused + 1);
    assert.equal((await h.http.get(key)).hit, false);
  });
});
