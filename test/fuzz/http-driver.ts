/**
 * Drives HTTP fuzz inputs, each on its own loopback connection, many at once: writes the input (whole,
 * in pieces, drip-fed, or one request per answer), reads what comes back and judges it.
 */
import { createConnection } from 'node:net';
import type { FuzzCtx } from './context';
import { sleep, turn } from './context';
import { genHttpInput, HttpInput } from './gen-http';
import { hangTraits, judge, parseResponse, Response } from './http-check';
import { Rng } from './prng';
import { LIMITS } from './report';

/** Malformed inputs that are neither answered nor closed by then are judged as hanging. */
const HANG_MS = 1000;

export async function httpWorker(ctx: FuzzCtx): Promise<void> {
  while (!ctx.over() && !ctx.dead()) {
    const n = ctx.next('http');
    if (n === null) return;
    const input = genHttpInput(Rng.for(ctx.seed, 'http', n), ctx.lim);
    ctx.report.input(`http ${input.kind}`);
    await runHttpInput(ctx, n, input);
  }
}

const methodOf = (b: Buffer): string => b.toString('latin1', 0, Math.min(b.length, 64)).split(' ')[0];

export function runHttpInput(ctx: FuzzCtx, n: number, input: HttpInput): Promise<void> {
  const r = ctx.report;
  return new Promise((resolve) => {
    const s = createConnection({ host: ctx.host, port: ctx.port });
    s.setNoDelay(true);
    let acc: Buffer = Buffer.alloc(0);
    const got: Response[] = [];
    let closed = false;
    let error: string | null = null;
    let finished = false;
    let sentAll = false;
    let sentPieces = 0;
    let upgraded = false;
    const bad = (kind: string, what: string): void => {
      if (ctx.dead()) return;
      r.anomaly(kind, { stream: 'http', n, inputKind: input.kind, what, input: input.bytes });
    };
    const owed = (): number => input.answers;
    const finish = (why: 'done' | 'closed' | 'timeout'): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      s.destroy();
      if (input.expect === 'none') {
        r.answer(`http ${input.kind}: ${got.length ? 'answered' : why}`);
        return resolve();
      }
      if (got.length >= owed() || upgraded) {
        r.answer(`http ${input.kind}: answered`);
        return resolve();
      }
      // an answer that said Connection: close owes nothing after it
      if (got.some((g) => /close/i.test(g.headers.get('connection')?.join(',') ?? ''))) {
        r.answer(`http ${input.kind}: answered, then closed as announced`);
        return resolve();
      }
      const unanswered = input.requests?.[got.length] ?? input.bytes;
      const traits = hangTraits(unanswered);
      // a trailer or misread chunks desynchronise uWS for the requests after them on the connection
      for (const before of input.requests?.slice(0, got.length) ?? []) {
        for (const t of hangTraits(before))
          if (t === 'trailer' || t === 'chunk-ext' || t === 'chunk-framing') traits.push(t);
      }
      const known = traits.find((t) => t in LIMITS);
      // Ambiguous framing is refused and closed; a client still sending may lose the 400 to the reset
      // (docs/PROTOCOL.md): only a 2xx for it is wrong, and judge() catches that.
      if (why === 'closed' && input.ambiguous !== undefined) {
        r.answer(`http ${input.kind}: ambiguous framing, closed`);
        return resolve();
      }
      if (why === 'closed' && acc.length > 0 && acc.subarray(0, 5).toString('latin1') === 'HTTP/') {
        // an answer began but the connection closed before its end (a chunked body without its last chunk)
        bad(
          'http: answer cut off by the close',
          `${got.length} whole answers, then ${JSON.stringify(acc.toString('latin1', 0, 300))}`,
        );
        return resolve();
      }
      if (why === 'closed') {
        if (known !== undefined) {
          r.answer(`http ${input.kind}: closed (uWS: ${known})`);
          r.limit(known, {
            stream: 'http',
            n,
            inputKind: input.kind,
            what: 'closed without an answer',
            input: unanswered,
          });
        } else if (input.expect === 'answer-or-close') r.answer(`http ${input.kind}: closed without an answer`);
        else if (input.kind === 'oversize-put')
          bad(`http: oversized PUT (${input.trait}) got ${error ?? 'a close'} instead of 413`, `${got.length} answers`);
        else if (input.kind === 'pipelined') {
          r.answer(`http ${input.kind}: ${got.length} of 2 answered, then closed (uWS: pipelining)`);
          r.limit('pipelining', {
            stream: 'http',
            n,
            inputKind: input.kind,
            what: `${got.length} of 2 answered, then closed`,
            input: input.bytes,
          });
        } else
          bad(
            `http: connection closed without an answer (${input.traits?.[got.length] ?? input.trait})`,
            `${got.length} of ${owed()} answers${error ? `, ${error}` : ''}, ${sentPieces}/${input.pieces.length} pieces sent`,
          );
        return resolve();
      }
      // timeout
      if (traits.includes('incomplete')) {
        r.answer(`http ${input.kind}: waits for the rest`);
        return resolve();
      }
      if (known !== undefined) {
        r.answer(`http ${input.kind}: no answer (uWS: ${known})`);
        r.limit(known, { stream: 'http', n, inputKind: input.kind, what: 'no answer', input: unanswered });
      } else if (input.kind === 'pipelined')
        bad(`http: pipelined pair: ${got.length} of 2 answered, then nothing`, `${input.trait}`);
      else {
        const ms = input.expect === 'answer' ? ctx.answerMs : HANG_MS;
        bad(
          `http: no answer within ${ms} ms, no close (${input.expect === 'answer' ? 'well-formed' : 'malformed'}: ${input.traits?.[got.length] ?? input.trait})`,
          `${got.length} of ${owed()} answers, ${sentAll ? 'all' : sentPieces} pieces sent`,
        );
      }
      resolve();
    };
    const limitMs =
      (input.expect === 'answer' ? ctx.answerMs + input.bytes.length / 20 : HANG_MS) +
      (input.kind === 'oversize-put' ? 10_000 : 0);
    // The bound runs again from each piece written: a drip of a few hundred pieces `gapMs` apart takes
    // seconds by itself when timers run late on a loaded machine (CI under c8), and that is not the gateway's;
    // the gateway cannot answer before the last piece, and must within the bound after it.
    let timer = setTimeout(() => finish('timeout'), limitMs);
    const rearm = (): void => {
      if (finished) return;
      clearTimeout(timer);
      timer = setTimeout(() => finish('timeout'), limitMs);
    };
    let nextPiece: (() => void) | null = null;
    s.on('data', (d: Buffer) => {
      acc = acc.length === 0 ? d : Buffer.concat([acc, d]);
      for (;;) {
        let p: ReturnType<typeof parseResponse>;
        try {
          p = parseResponse(acc);
        } catch (e) {
          bad('http: response parser failed', (e as Error).message);
          p = null;
        }
        if (p === null) break;
        acc = acc.subarray(p.used);
        if (p.r.status === 100) continue;
        got.push(p.r);
        const k = got.length - 1;
        const oracle = input.oracles[k] ?? null;
        r.answer(`http ${p.r.status}${p.r.status >= 400 ? ` ${codeOf(p.r)}` : ''}`);
        for (const v of judge(
          p.r,
          oracle,
          k === 0 ? input.ambiguous : undefined,
          methodOf(k === 0 ? input.bytes : (input.pieces[k] ?? input.bytes)),
        )) {
          // Chunk framing is uWS's own (LIMITS 'chunk-framing'): a broken one it reads its way is not ours.
          if (/^http: accepted ambiguous framing: (chunk|bad chunk)/.test(v.kind)) {
            r.limit('chunk-framing', { stream: 'http', n, inputKind: input.kind, what: v.kind, input: input.bytes });
          } else bad(v.kind, v.what);
        }
        if (p.r.status === 101) {
          upgraded = true;
          return finish('done');
        }
        if (got.length >= owed() && input.expect !== 'none') {
          // the rest of what we send is not owed an answer; stop once answered
          if (sentAll || input.gapMs !== -1) return finish('done');
        }
        nextPiece?.();
      }
    });
    s.on('error', (e: NodeJS.ErrnoException) => {
      error = e.code ?? e.message;
    });
    s.on('close', () => {
      closed = true;
      finish('closed');
    });
    s.once('connect', async () => {
      try {
        for (let k = 0; k < input.pieces.length && !closed && !finished; k++) {
          if (input.gapMs === -1 && k > 0) {
            // one request per answer (keep-alive): wait for the previous answer
            await new Promise<void>((res) => {
              if (got.length >= k) res();
              else
                nextPiece = () => {
                  if (got.length >= k) {
                    nextPiece = null;
                    res();
                  }
                };
            });
            if (closed || finished) break;
          }
          await new Promise<void>((res) => s.write(input.pieces[k], () => res()));
          sentPieces++;
          rearm();
          if (input.gapMs > 0) await sleep(input.gapMs);
          else if (input.pieces.length > 1 && input.gapMs === 0) await turn();
        }
        sentAll = true;
        rearm();
        if (input.abort) {
          s.destroy();
          finished = true;
          clearTimeout(timer);
          r.answer('http abort: sent');
          resolve();
        } else if (got.length >= owed() && !finished && input.expect !== 'none') finish('done');
      } catch {
        /* the socket broke: 'close' judges it */
      }
    });
  });
}

function codeOf(r: Response): string {
  try {
    return String((JSON.parse(r.body.toString('utf8')) as { error: { code: string } }).error.code);
  } catch {
    return '(no code)';
  }
}
