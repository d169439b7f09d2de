/**
 * A plain TCP proxy on 127.0.0.1:0 whose client connections the test can cut, forwarding each new
 * connection to whatever port `target()` names at that moment: what a load balancer in front of a gateway
 * that restarts on another port looks like to a client. (A restarted gateway cannot take its old port back
 * in the same process: the old server-side connections in TIME_WAIT keep it from binding.)
 */
import { createServer, createConnection, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

export interface TcpProxy {
  port: number;
  /** Destroys every open connection, both sides (a network drop: no close frame). */
  cut(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(target: () => number): Promise<TcpProxy> {
  const socks = new Set<Socket>();
  const server: Server = createServer((a) => {
    const b = createConnection({ host: '127.0.0.1', port: target() });
    for (const s of [a, b]) {
      socks.add(s);
      s.on('close', () => socks.delete(s));
      s.on('error', () => undefined);
    }
    a.on('close', () => b.destroy());
    b.on('close', () => a.destroy());
    a.pipe(b);
    b.pipe(a);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    cut: () => socks.forEach((s) => s.destroy()),
    close: () => {
      socks.forEach((s) => s.destroy());
      return new Promise((r) => server.close(() => r()));
    },
  };
}
