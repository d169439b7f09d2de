/**
 * Hostile WebSocket input: frames built to hurt the decoder (deep nesting), frames over the payload
 * limit, invalid UTF-8 text, and a gateway bug a client can trigger per frame. Each must cost the
 * sender at most its connection, answer with a stable code (never INTERNAL for bad bytes), keep the log
 * quiet, and leave every other connection untouched.
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { TOPICS, channelName, type OpsEvent } from '../src/core/events';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createConnection, Socket } from 'node:net';
import { pack } from 'msgpackr';
import WebSocket from 'ws';
import { startHarness, Harness, until } from './helpers/harness';
import type { KvWsClient } from './client';

type E = { id: number; i: number; kind: string; code?: string; message?: string };

function collect(c: KvWsClient): E[] {
  const entries: E[] = [];
  c.onEntry = (e) => entries.push(e as never);
  return entries;
}

/** Captures what the gateway (in this process) logs, for `fn`'s duration. */
/** What fn() makes the gateway log: its events (the log's only source) and anything written to the console. */
async function logged(fn: () => Promise<void>): Promise<string[]> {
  const lines: string[] = [];
  const onEvent = (m: unknown): void => {
    const e = m as OpsEvent;
    if (e.level !== 'info' && e.level !== 'debug' && e.level !== 'trace') lines.push(e.msg);
  };
  for (const t of TOPICS) subscribe(channelName(t), onEvent);
  const { error, warn } = console;
  console.error = (...a: unknown[]) => {
    lines.push(a.map(String).join(' '));
  };
  console.warn = console.error;
  try {
    await fn();
  } finally {
    console.error = error;
    console.warn = warn;
    for (const t of TOPICS) unsubscribe(channelName(t), onEvent);
  }
  return lines;
}

/** `depth` nested one-element arrays around a nil: 200 KB of them overflowed the old recursive reader. */
function nested(depth: number): Buffer {
  const b = Buffer.alloc(depth + 1, 0x91);
  b[depth] = 0xc0;
  return b;
}

/** A raw client frame with any opcode (the ws package will not send invalid UTF-8 as text). */
function rawFrame(opcode: number, payload: Buffer, fin = true): Buffer {
  const n = payload.length;
  const b0 = (fin ? 0x80 : 0) | opcode;
  let head: Buffer;
  if (n < 126) head = Buffer.from([b0, 0x80 | n]);
  else if (n < 65536) head = Buffer.from([b0, 0x80 | 126, n >> 8, n & 0xff]);
  else {
    head = Buffer.alloc(10);
    head[0] = b0;
    head[1] = 0x80 | 127;
    head.writeBigUInt64BE(BigInt(n), 2);
  }
  return Buffer.concat([head, Buffer.alloc(4), payload]); // mask 0: payload goes as is
}

/** Resolves with the close code of the first close frame the gateway sends, or -1 if the socket just ends. */
function closeCodeOf(s: Socket): Promise<number> {
  return new Promise((resolve) => {
    let got = Buffer.alloc(0);
    s.on('data', (d) => {
      got = Buffer.concat([got, d]);
      if (got.length >= 4 && (got[0] & 0x0f) === 0x8) resolve(got.readUInt16BE(2));
    });
    s.once('close', () => resolve(-1));
  });
}

/** Upgrades a raw socket; resolves once the 101 is in. */
function rawWs(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = createConnection({ host: '127.0.0.1', port }, () =>
      s.write(
        'GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
      ),
    );
    s.once('data', (d) =>
      d.toString('latin1').startsWith('HTTP/1.1 101') ? resolve(s) : reject(new Error('no upgrade')),
    );
    s.on('error', reject);
  });
}

describe('hostile WebSocket input', () => {
  let h: Harness;
  let canary: KvWsClient;
  let limit: number;
  before(async () => {
    h = await startHarness();
    limit = h.config.ws.maxPayloadBytes;
    canary = await h.ws();
    await canary.set('hostile:canary', Buffer.from('alive'));
  });
  after(() => h.stop());

  const canaryAlive = async (): Promise<void> => {
    const r = await canary.get('hostile:canary');
    assert.ok(r.hit && r.value.toString() === 'alive', 'the other connection is still served');
  };

  it('answers deeply nested msgpack with BAD_REQUEST, logs nothing, and keeps the connection', async () => {
    const c = await h.ws();
    const entries = collect(c);
    const lines = await logged(async () => {
      for (let k = 0; k < 20; k++) c.sendRaw(nested(200_000));
      // The same depth inside a request's ignored field: the request's id is known, so it gets its END.
      c.sendRaw(
        Buffer.concat([
          Buffer.from([0x84]),
          ...['id', 77, 'op', 'get', 'key', 'k', 'junk'].map((v) => pack(v)),
          nested(100_000),
        ]),
      );
      await until(() => entries.length >= 22, 5000, 'an answer per frame');
    });
    const anon = entries.filter((e) => e.id === 0);
    assert.equal(anon.length, 20);
    for (const e of anon) {
      assert.equal(e.kind, 'error');
      assert.equal(e.code, 'BAD_REQUEST');
      assert.match(e.message!, /nested deeper than/);
    }
    const mine = entries.filter((e) => e.id === 77);
    assert.deepEqual(
      mine.map((e) => [e.kind, e.code]),
      [
        ['error', 'BAD_REQUEST'],
        ['end', undefined],
      ],
    );
    assert.deepEqual(lines, [], 'client bytes leave no trace in the log');
    const r = await c.get('hostile:canary');
    assert.ok(r.hit, "the sender's connection still works");
    await canaryAlive();
  });

  it('a gateway bug costs the request it hits: INTERNAL and END for each, one log line for all', async () => {
    const c = await h.ws();
    const entries = collect(c);
    const router = h.gw.ctx.router;
    const del = router.del;
    const before = (h.gw.stats().ws as { internalErrors: number }).internalErrors;
    router.del = () => {
      throw new Error('injected bug');
    };
    let lines: string[];
    try {
      lines = await logged(async () => {
        for (let k = 1; k <= 200; k++) c.sendRaw(pack({ id: k, op: 'del', key: `hostile:bug:${k}` }));
        // A bug in the middle of a bulk request: the next request in the same frame is read from the right place.
        c.sendRaw(
          Buffer.concat([
            pack({ id: 1000, op: 'mdel', keys: ['hostile:a', 'hostile:b'] }),
            pack({ id: 1001, op: 'get', key: 'hostile:canary' }),
          ]),
        );
        await until(() => entries.filter((e) => e.kind === 'end').length >= 202, 5000, '202 ENDs');
      });
    } finally {
      router.del = del;
    }
    for (let k = 1; k <= 200; k++) {
      const mine = entries.filter((e) => e.id === k);
      assert.deepEqual(
        mine.map((e) => [e.kind, e.code]),
        [
          ['error', 'INTERNAL'],
          ['end', undefined],
        ],
        `request ${k}`,
      );
    }
    assert.deepEqual(
      entries.filter((e) => e.id === 1000).map((e) => [e.kind, e.code]),
      [
        ['error', 'INTERNAL'],
        ['end', undefined],
      ],
    );
    assert.deepEqual(
      entries.filter((e) => e.id === 1001).map((e) => e.kind),
      ['value', 'end'],
    );
    assert.equal(entries.length, 2 * 200 + 4, 'no entry beyond those: nothing was read from the middle of a request');
    assert.equal(lines.length, 1, `log lines: ${lines.join(' | ')}`);
    assert.match(lines[0], /injected bug/);
    assert.doesNotMatch(lines[0], /\n/, 'one line, not a stack trace');
    assert.equal((h.gw.stats().ws as { internalErrors: number }).internalErrors - before, 201);
    assert.equal(await c.del('hostile:bug:1'), false, 'the connection goes on once the bug is gone');
    assert.equal(
      h.gw.ws.sessions.size >= 2 && [...h.gw.ws.sessions].every((s) => s.s.inflight === 0),
      true,
      'nothing left in flight',
    );
    await canaryAlive();
  });

  it('closes with 1009 for a frame over ws.maxPayloadBytes; the connection is cut (1006) far past it', async () => {
    const ok = await h.ws();
    const entries = collect(ok);
    // Exactly at the limit: read as usual (a map with a long ignored field).
    const pad = limit - pack({ id: 5, op: 'get', key: 'hostile:canary', pad: '' }).length - 4;
    const atLimit = pack({ id: 5, op: 'get', key: 'hostile:canary', pad: 'p'.repeat(pad) });
    assert.ok(atLimit.length <= limit && atLimit.length > limit - 8, `frame of ${atLimit.length}`);
    ok.sendRaw(atLimit);
    await until(() => entries.some((e) => e.id === 5 && e.kind === 'end'), 3000, 'the answer at the limit');
    assert.ok(entries.some((e) => e.id === 5 && e.kind === 'value'));

    const open = h.gw.ctx.gate.ws;
    const over = await h.ws();
    over.sendRaw(Buffer.alloc(limit + 1, 0xc0));
    assert.deepEqual(await over.closed, { code: 1009, reason: 'TOO_LARGE' });

    const far = await h.ws();
    far.sendRaw(Buffer.alloc(limit * 3, 0xc0));
    assert.equal((await far.closed).code, 1006);
    // A message in fragments, each under the limit, all of them over it: the same 1009.
    const raw = await rawWs(h.gw.port);
    const code = closeCodeOf(raw);
    raw.write(rawFrame(0x2, Buffer.alloc(limit / 2, 0xc0), false));
    raw.write(rawFrame(0x0, Buffer.alloc(limit / 2 + 1, 0xc0), true));
    assert.equal(await code, 1009);
    raw.destroy();
    await until(() => h.gw.ctx.gate.ws === open, 3000, 'the closed connections gone');
    await canaryAlive();
    assert.ok((await ok.get('hostile:canary')).hit);
  });

  it('an invalid UTF-8 text frame: uWS drops the connection (1006) before any handler; nothing else is hurt', async () => {
    // uWS 20.30 checks text frames natively and closes the socket without a close frame, so 1007 cannot
    // be sent (docs/PROTOCOL.md, close codes). This pins that behaviour down.
    const ws = new WebSocket(h.wsUrl, { perMessageDeflate: false });
    await new Promise((r) => ws.once('open', r));
    const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)));
    ws.on('error', () => {});
    const messages = h.gw.ws.counters.messages;
    ws.send(Buffer.from([0x68, 0x69, 0xff, 0xfe, 0xc3, 0x28]), { binary: false });
    assert.equal(await closed, 1006);
    assert.equal(h.gw.ws.counters.messages, messages, 'no handler saw the frame');
    // The same over a raw socket: the TCP connection is closed by the gateway, no close frame first.
    const s = await rawWs(h.gw.port);
    const got: Buffer[] = [];
    s.on('data', (d) => got.push(d));
    const ended = new Promise<void>((r) => s.once('close', () => r()));
    s.write(rawFrame(0x1, Buffer.from([0xc3, 0x28])));
    await ended;
    assert.equal(Buffer.concat(got).length, 0, 'no close frame before the connection went');
    await canaryAlive();
    // A valid text frame is answered with BAD_REQUEST and the connection stays (frames must be binary).
    const c = await h.ws();
    const entries = collect(c);
    c.sendRaw('hello');
    await until(() => entries.length === 1, 2000, "the text frame's error");
    assert.equal(entries[0].code, 'BAD_REQUEST');
    assert.ok((await c.get('hostile:canary')).hit);
  });
});
