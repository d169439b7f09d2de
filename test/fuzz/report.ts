/**
 * What a run saw: inputs by kind, answers by code, and anomalies grouped by what went wrong (the first
 * few examples of each kept with their seed, stream, input number and bytes). "uWS build limits" are
 * counted like anomalies but do not fail the run: behaviours of the native uWS build that JavaScript
 * cannot change (see LIMITS).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Behaviours of the uWS build (20.30) that no JavaScript in the gateway can change: the native parser
 * never hands such a request (or frame) to JavaScript. Each was checked against a bare uWS app with no
 * gateway code (`node dist/test/fuzz/uws-bare.js` shows it again). The brief named the first six; the
 * rest were found by this fuzzer and verified the same way. Inputs with one of these traits that get no
 * answer (or a close instead of one) are counted here, not as anomalies.
 */
export const LIMITS: Record<string, string> = {
  'http-version': 'HTTP version other than HTTP/1.1 (HTTP/1.0 included): no answer until the idle timeout',
  'no-host': 'no Host header: no answer until the idle timeout',
  'bare-lf': 'bare LF line ends: no answer until the idle timeout',
  'folded-header': 'folded (obs-fold) header: no answer until the idle timeout',
  'many-headers': 'more than 48 header fields: no answer until the idle timeout',
  'bad-utf8-text': 'invalid UTF-8 text frame: TCP close instead of close code 1007',
  'header-syntax':
    'header line without a colon, a name with a byte other than letters, digits and - (even RFC 9110 token bytes such as % or `), whitespace before the colon, or a control byte: no answer until the idle timeout',
  'request-line':
    'request line not METHOD SP /origin-form SP version (asterisk, absolute form, control bytes, extra spaces): no answer until the idle timeout',
  'unknown-method': 'a method uWS does not know (FOO, M-SEARCH, lower case): closed without an answer',
  'chunk-ext':
    'a chunk extension (5;a=b): no answer until the idle timeout, or the body read wrongly (extension bytes as data)',
  trailer: 'a trailer field after the last chunk: the request after it on the connection is never answered',
  'chunk-framing':
    'chunked body framed wrongly (a size line that is not hex, data not followed by CRLF): read its own way, then no answer',
  pipelining:
    'a request pipelined behind one answered asynchronously: uWS closes the connection, neither is answered, and nothing of the interrupted request is applied (docs/PROTOCOL.md, HTTP conformance)',
  'ws-oversize-header':
    'a frame announcing more than ws.maxPayloadBytes + min(ws.maxPayloadBytes, 4 MiB): uWS drops the TCP connection at the header (1006, not 1009)',
  'ws-oversize-partial':
    'a frame announcing more than ws.maxPayloadBytes (within the bound uWS reads) but sent only in part: refused with 1009 once whole, kept open until then (ws.idleTimeoutSeconds)',
  'ws-frame-rules':
    'an unmasked client frame (ignored, kept open) or a data frame inside a fragmented message (joined to it): the connection is not failed',
};

export interface Example {
  seed: number;
  stream: string;
  n: number;
  inputKind: string;
  what: string;
  /** The input, hex (cut to 2 KiB; the whole input is in the saved file). */
  inputHex: string;
  inputText: string;
  /** Inputs sent on the same connection before it, when the culprit is not certain. */
  context?: number[];
  file?: string;
  full?: Buffer;
}

export interface AnomalyGroup {
  kind: string;
  count: number;
  examples: Example[];
}

const KEEP = 3;

export class Report {
  readonly inputs = new Map<string, number>();
  readonly answers = new Map<string, number>();
  readonly anomalies = new Map<string, AnomalyGroup>();
  readonly limits = new Map<string, AnomalyGroup>();
  canary = { ws: 0, http: 0, maxLatencyMs: 0 };
  rss = { startMb: 0, peakMb: 0, endMb: 0 };
  total = 0;
  startedAt = Date.now();

  constructor(readonly seed: number) {}

  input(kind: string): void {
    this.inputs.set(kind, (this.inputs.get(kind) ?? 0) + 1);
    this.total++;
  }

  answer(what: string): void {
    this.answers.set(what, (this.answers.get(what) ?? 0) + 1);
  }

  private add(
    into: Map<string, AnomalyGroup>,
    kind: string,
    ex: Omit<Example, 'seed' | 'inputHex' | 'inputText'> & { input?: Buffer },
  ): void {
    let g = into.get(kind);
    if (g === undefined) into.set(kind, (g = { kind, count: 0, examples: [] }));
    g.count++;
    if (g.examples.length >= KEEP) return;
    const input = ex.input ?? Buffer.alloc(0);
    g.examples.push({
      seed: this.seed,
      stream: ex.stream,
      n: ex.n,
      inputKind: ex.inputKind,
      what: ex.what,
      context: ex.context,
      inputHex: input.subarray(0, 2048).toString('hex') + (input.length > 2048 ? `... (${input.length} bytes)` : ''),
      inputText: JSON.stringify(input.subarray(0, 600).toString('latin1')),
      full: input,
    });
  }

  anomaly(kind: string, ex: Omit<Example, 'seed' | 'inputHex' | 'inputText'> & { input?: Buffer }): void {
    this.add(this.anomalies, kind, ex);
  }

  limit(trait: string, ex: Omit<Example, 'seed' | 'inputHex' | 'inputText'> & { input?: Buffer }): void {
    this.add(this.limits, `${trait}: ${LIMITS[trait] ?? ''}`, ex);
  }

  get anomalyCount(): number {
    let n = 0;
    for (const g of this.anomalies.values()) n += g.count;
    return n;
  }

  /** Writes summary.json and one file per example input; returns the summary's path. */
  save(dir: string): string {
    mkdirSync(dir, { recursive: true });
    let k = 0;
    for (const groups of [this.anomalies, this.limits]) {
      for (const g of groups.values()) {
        for (const ex of g.examples) {
          const file = join(dir, `input-${++k}-${ex.stream}-${ex.n}.bin`);
          writeFileSync(file, ex.full ?? Buffer.alloc(0));
          ex.file = file;
        }
      }
    }
    const path = join(dir, 'summary.json');
    writeFileSync(path, JSON.stringify(this.json(), null, 2));
    return path;
  }

  json(): Record<string, unknown> {
    const strip = (gs: Map<string, AnomalyGroup>): unknown[] =>
      [...gs.values()].map((g) => ({
        kind: g.kind,
        count: g.count,
        examples: g.examples.map(({ full: _f, ...rest }) => rest),
      }));
    return {
      seed: this.seed,
      seconds: Math.round((Date.now() - this.startedAt) / 100) / 10,
      inputs: this.total,
      inputsByKind: Object.fromEntries([...this.inputs].sort()),
      answers: Object.fromEntries([...this.answers].sort()),
      canary: this.canary,
      rssMb: this.rss,
      anomalies: strip(this.anomalies),
      uwsBuildLimits: strip(this.limits),
    };
  }

  text(): string {
    const j = this.json();
    const lines: string[] = [];
    lines.push(`kvgate fuzz: seed ${this.seed}, ${this.total} inputs in ${j.seconds} s`);
    lines.push('inputs by kind:');
    for (const [k, v] of [...this.inputs].sort()) lines.push(`  ${k.padEnd(34)} ${v}`);
    lines.push('answers:');
    for (const [k, v] of [...this.answers].sort()) lines.push(`  ${k.padEnd(34)} ${v}`);
    lines.push(
      `canary: ${this.canary.ws} WebSocket and ${this.canary.http} HTTP round trips checked, slowest ${Math.round(this.canary.maxLatencyMs)} ms`,
    );
    lines.push(
      this.rss.startMb === 0
        ? 'gateway RSS and log: not watched (--target: not our process)'
        : `gateway RSS: ${this.rss.startMb} MB at start, peak ${this.rss.peakMb} MB, ${this.rss.endMb} MB at the end`,
    );
    const show = (title: string, gs: Map<string, AnomalyGroup>): void => {
      lines.push(`${title}: ${gs.size === 0 ? 'none' : ''}`);
      for (const g of gs.values()) {
        lines.push(`  [${g.count}x] ${g.kind}`);
        for (const ex of g.examples) {
          lines.push(`    seed ${ex.seed} ${ex.stream}#${ex.n} (${ex.inputKind}): ${ex.what}`);
          lines.push(`      input ${ex.inputText.slice(0, 300)}${ex.file ? ` (file ${ex.file})` : ''}`);
          if (ex.context?.length)
            lines.push(`      after ${ex.stream} inputs ${ex.context.join(', ')} on the same connection`);
        }
      }
    };
    show('uWS build limits (counted, not anomalies)', this.limits);
    show('ANOMALIES', this.anomalies);
    return lines.join('\n');
  }
}
