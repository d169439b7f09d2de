/**
 * `node dist/test/fuzz/uws-bare.js`: the evidence behind LIMITS (report.ts). Sends one sample of each
 * trait to a bare uWS app built from the same native binding with no gateway code at all (a catch-all
 * route that reads the body and answers 200, and a WebSocket route that echoes) and prints what the
 * build itself does. A trait belongs in LIMITS only if the bare app shows the same silence or close the
 * fuzzer saw from the gateway: then no JavaScript in the gateway can change it. Loopback only.
 */
import { createConnection } from 'node:net';
import { uws } from '../../src/uws';
import { LIMITS } from './report';
import { Op, wsFrame } from './ws-raw';

const H = 'Host: x\r\n';
const UP =
  'GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';
const ws = (...frames: Buffer[]): Buffer => Buffer.concat([Buffer.from(UP), ...frames]);

export const SAMPLES: [string, string | Buffer][] = [
  ['http-version', `GET /x HTTP/1.0\r\n${H}\r\n`],
  ['http-version', `GET /x HTTP/1.2\r\n${H}\r\n`],
  ['no-host', 'GET /x HTTP/1.1\r\n\r\n'],
  ['bare-lf', `GET /x HTTP/1.1\n${H.replace('\r', '')}\n`],
  ['folded-header', `GET /x HTTP/1.1\r\n${H}X-A: a\r\n  b\r\n\r\n`],
  ['many-headers', `GET /x HTTP/1.1\r\n${H}${Array.from({ length: 49 }, (_, k) => `X-${k}: v\r\n`).join('')}\r\n`],
  ['header-syntax', `GET /x HTTP/1.1\r\n${H}X-A : b\r\n\r\n`],
  ['header-syntax', `GET /x HTTP/1.1\r\n${H}no colon here\r\n\r\n`],
  ['header-syntax', `GET /x HTTP/1.1\r\n${H}X-A: b\x01c\r\n\r\n`],
  ['header-syntax', `GET /x HTTP/1.1\r\n${H}X-A: b\rc\r\n\r\n`],
  ['header-syntax', 'GET /x HTTP/1.1\r\n' + H + 'X`a: b\r\n\r\n'],
  ['header-syntax', 'GET /x HTTP/1.1\r\n' + H + 'X%a: b\r\n\r\n'],
  ['(control) header name with other token bytes', 'GET /x HTTP/1.1\r\n' + H + "X!#$&'*+.^_|~: b\r\n\r\n"],
  ['chunk-ext', 'POST /x HTTP/1.1\r\n' + H + 'Transfer-Encoding: chunked\r\n\r\n5 ;a=1\r\nhello\r\n0\r\n\r\n'],
  ['request-line', `OPTIONS * HTTP/1.1\r\n${H}\r\n`],
  ['request-line', `GET http://x/y HTTP/1.1\r\n${H}\r\n`],
  ['request-line', `GET /a\x00b HTTP/1.1\r\n${H}\r\n`],
  ['request-line', `GET /a b HTTP/1.1\r\n${H}\r\n`],
  ['unknown-method', `FOO /x HTTP/1.1\r\n${H}\r\n`],
  ['unknown-method', `M-SEARCH /x HTTP/1.1\r\n${H}\r\n`],
  ['unknown-method', `get /x HTTP/1.1\r\n${H}\r\n`],
  ['chunk-ext', `POST /x HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\n\r\n`],
  [
    'trailer',
    `POST /x HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n0\r\nX-T: 1\r\n\r\nGET /second HTTP/1.1\r\n${H}\r\n`,
  ],
  ['chunk-framing', `POST /x HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\r\nhel\r:lo\r\n0\r\n\r\n`],
  ['chunk-framing', `POST /x HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n`],
  ['bad-utf8-text', ws(wsFrame(Op.Text, Buffer.from([0x61, 0xff])))],
  ['ws-frame-rules', ws(wsFrame(Op.Bin, Buffer.from('abc'), { mask: false }))],
  ['ws-frame-rules', ws(wsFrame(Op.Bin, Buffer.from('abc'), { rsv: 4 }))],
  ['ws-frame-rules', ws(wsFrame(Op.Bin, Buffer.from('abc'), { fin: false }), wsFrame(Op.Bin, Buffer.from('def')))],
  // not limits: the build gets these right or leaves them to JavaScript, shown for contrast
  ['(control) plain GET', `GET /x HTTP/1.1\r\n${H}\r\n`],
  ['(control) two requests in one write', `GET /a HTTP/1.1\r\n${H}\r\nGET /b HTTP/1.1\r\n${H}\r\n`],
  [
    '(control) two different Content-Length',
    `POST /x HTTP/1.1\r\n${H}Content-Length: 8\r\nContent-Length: 5\r\n\r\nhelloGET`,
  ],
  [
    '(control) chunk data not followed by CRLF',
    `POST /x HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n`,
  ],
  ['(control) empty POST body', `POST /x HTTP/1.1\r\n${H}Content-Length: 0\r\n\r\n`],
  ['(control) valid binary frame', ws(wsFrame(Op.Bin, Buffer.from('abc')))],
  ['(control) oversized frame (maxPayloadLength 1024)', ws(wsFrame(Op.Bin, Buffer.alloc(4096)))],
];

function send(port: number, data: string | Buffer, ms: number): Promise<string> {
  return new Promise((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port });
    let acc = Buffer.alloc(0);
    const t0 = Date.now();
    const show = (): string =>
      JSON.stringify(
        acc
          .toString('latin1')
          .replace(/Date: [^\r]*\r\n|uWebSockets: \d+\r\n|Sec-WebSocket-Accept: [^\r]*\r\n/g, '')
          .slice(0, 140),
      );
    // frames go only after the 101: uWS drops bytes that come in the same write as the upgrade
    const b = Buffer.from(data);
    const frames = b.indexOf(UP) === 0 ? b.subarray(UP.length) : null;
    s.on('data', (d: Buffer) => {
      const first = acc.length === 0;
      acc = Buffer.concat([acc, d]);
      if (first && frames !== null) s.write(frames);
    });
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve(`closed after ${Date.now() - t0} ms, got ${show()}`);
    });
    const timer = setTimeout(() => {
      s.destroy();
      resolve(`still open after ${ms} ms, got ${show()}`);
    }, ms);
    s.write(frames !== null ? UP : b);
  });
}

async function main(): Promise<void> {
  const app = uws.App();
  app.ws('/v1/ws', {
    maxPayloadLength: 1024,
    idleTimeout: 120,
    message: (w, m) => {
      w.send(Buffer.from(`echo ${m.byteLength} bytes`), false);
    },
  });
  app.any('/*', (res, req) => {
    const what = `${req.getMethod()} ${req.getUrl()}`;
    let n = 0;
    res.onAborted(() => {});
    res.onData((chunk, last) => {
      n += chunk.byteLength;
      if (last) res.cork(() => res.end(`ok ${what} body ${n}`));
    });
  });
  const port = await new Promise<number>((resolve, reject) => {
    app.listen('127.0.0.1', 0, (ls) =>
      ls ? resolve(uws.us_socket_local_port(ls as never) as number) : reject(new Error('cannot listen')),
    );
  });
  const ms = Number(process.argv[2] ?? 1500);
  console.log(`bare uWS app on 127.0.0.1:${port}; each sample gets ${ms} ms\n`);
  for (const [trait, input] of SAMPLES) {
    const label = LIMITS[trait] ? `${trait}` : trait;
    console.log(
      `${label}\n  sent ${JSON.stringify(Buffer.from(input).toString('latin1').slice(0, 90))}\n  ${await send(port, input, ms)}`,
    );
  }
  process.exit(0);
}

if (require.main === module) void main();
