/**
 * A scriptable fake memcached for fault tests: a node:net server on a free loopback port that speaks the
 * part of the protocol the gateway uses (`stats settings`, `get k1 k2 ...`, `ms <key> <len> ... O<n>` +
 * data, `md <key> ... O<n>`) from an in-memory map, and lets each test replace the answer to any command
 * (ioredis-style: a script per test, flags for hang and disconnect).
 *
 * `script(cmd, fake)` runs for every command; returning undefined gives the normal answer (and applies
 * the command to the map), or a FakeAction: other reply bytes (`reply`, the command is then not applied
 * unless the script called `fake.normal(cmd)` itself), the reply written one byte per turn (`drip`),
 * nothing at all from now on for this connection (`stall`), the connection closed after the reply
 * (`close`) or reset at once (`reset`, as soon as the command arrived).
 */
import { createServer, Server, Socket } from 'node:net';

export interface FakeCommand {
  op: 'get' | 'ms' | 'md' | 'stats' | 'other';
  /** The command line without its \r\n. */
  line: string;
  /** get: every key asked; ms/md: the one key. */
  keys: string[];
  /** ms/md: the opaque token as sent (without `O`), '' when absent. */
  opaque: string;
  /** ms: the value bytes; flags from `F<n>`. */
  value: Buffer;
  flags: number;
  /** Which connection (0, 1, ... in accept order) sent it. */
  conn: number;
}

export interface FakeAction {
  reply?: Buffer | string;
  drip?: boolean;
  stall?: boolean;
  close?: boolean;
  reset?: boolean;
}

export type FakeScript = (cmd: FakeCommand, fake: FakeMemcached) => FakeAction | undefined;

interface ConnState {
  sock: Socket;
  id: number;
  acc: Buffer;
  stalled: boolean;
  out: Promise<void>;
}

export class FakeMemcached {
  readonly data = new Map<string, { flags: number; value: Buffer }>();
  /** Every command received, in order (tests check what reached the server). */
  readonly commands: FakeCommand[] = [];
  script: FakeScript | null = null;
  itemSizeMax = 1024 * 1024;
  connections = 0;
  private readonly live = new Set<ConnState>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static start(): Promise<FakeMemcached> {
    return new Promise((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const fake = new FakeMemcached(server, (server.address() as { port: number }).port);
        server.on('connection', (sock) => fake.accept(sock));
        resolve(fake);
      });
    });
  }

  get liveConnections(): number {
    return this.live.size;
  }

  /** Commands of one kind received so far. */
  count(op: FakeCommand['op']): number {
    return this.commands.filter((c) => c.op === op).length;
  }

  /** The normal answer to `cmd`, applying it to the map. */
  normal(cmd: FakeCommand): Buffer {
    switch (cmd.op) {
      case 'stats':
        return Buffer.from(
          `STAT maxbytes 67108864\r\nSTAT item_size_max ${this.itemSizeMax}\r\nSTAT maxconns 4096\r\nEND\r\n`,
        );
      case 'get': {
        const parts: Buffer[] = [];
        for (const k of cmd.keys) {
          const v = this.data.get(k);
          if (v)
            parts.push(
              Buffer.from(`VALUE ${k} ${v.flags} ${v.value.length}\r\n`, 'latin1'),
              v.value,
              Buffer.from('\r\n'),
            );
        }
        parts.push(Buffer.from('END\r\n'));
        return Buffer.concat(parts);
      }
      case 'ms':
        this.data.set(cmd.keys[0], { flags: cmd.flags, value: cmd.value });
        return Buffer.from(`HD O${cmd.opaque}\r\n`);
      case 'md': {
        const had = this.data.delete(cmd.keys[0]);
        return Buffer.from(`${had ? 'HD' : 'NF'} O${cmd.opaque}\r\n`);
      }
      default:
        return Buffer.from('ERROR\r\n');
    }
  }

  /** Closes every connection and the server. */
  stop(): Promise<void> {
    for (const c of this.live) c.sock.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private accept(sock: Socket): void {
    const c: ConnState = { sock, id: this.connections++, acc: Buffer.alloc(0), stalled: false, out: Promise.resolve() };
    this.live.add(c);
    sock.setNoDelay(true);
    sock.on('data', (d: Buffer) => {
      c.acc = c.acc.length === 0 ? d : Buffer.concat([c.acc, d]);
      this.drain(c);
    });
    sock.on('error', () => {
      /* the gateway may reset us */
    });
    sock.on('close', () => this.live.delete(c));
  }

  /** Handles every whole command buffered on `c`. */
  private drain(c: ConnState): void {
    for (;;) {
      if (c.sock.destroyed) return;
      const nl = c.acc.indexOf('\r\n');
      if (nl < 0) return;
      const line = c.acc.toString('latin1', 0, nl);
      const tok = line.split(' ');
      const cmd: FakeCommand = {
        op: 'other',
        line,
        keys: [],
        opaque: '',
        value: Buffer.alloc(0),
        flags: 0,
        conn: c.id,
      };
      let used = nl + 2;
      if (tok[0] === 'get') {
        cmd.op = 'get';
        cmd.keys = tok.slice(1);
      } else if (tok[0] === 'stats') cmd.op = 'stats';
      else if (tok[0] === 'ms' || tok[0] === 'md') {
        cmd.op = tok[0];
        cmd.keys = [tok[1]];
        for (const t of tok.slice(tok[0] === 'ms' ? 3 : 2)) {
          if (t.startsWith('O')) cmd.opaque = t.slice(1);
          if (t.startsWith('F')) cmd.flags = Number(t.slice(1));
        }
        if (tok[0] === 'ms') {
          const len = Number(tok[2]);
          if (c.acc.length < used + len + 2) return; // the data is still arriving
          cmd.value = Buffer.from(c.acc.subarray(used, used + len));
          used += len + 2;
        }
      }
      c.acc = c.acc.subarray(used);
      this.commands.push(cmd);
      const act = this.script?.(cmd, this);
      if (act?.reset) {
        c.sock.resetAndDestroy();
        return;
      }
      if (c.stalled) continue;
      if (act?.stall) {
        c.stalled = true;
        continue;
      }
      const reply =
        act?.reply === undefined
          ? this.normal(cmd)
          : typeof act.reply === 'string'
            ? Buffer.from(act.reply, 'latin1')
            : act.reply;
      const close = act?.close === true;
      if (act?.drip) {
        // One byte per turn, after whatever is still being written, so replies stay in order.
        c.out = c.out.then(async () => {
          for (let k = 0; k < reply.length && !c.sock.destroyed; k++) {
            c.sock.write(reply.subarray(k, k + 1));
            await new Promise((r) => setImmediate(r));
          }
          if (close) c.sock.destroy();
        });
      } else {
        c.out = c.out.then(() => {
          if (c.sock.destroyed) return;
          c.sock.write(reply);
          if (close) c.sock.end();
        });
      }
    }
  }
}
