/**
 * @kvgate/client/node: the same API, with `connect` defaulting to the `ws` package (an optional peer
 * dependency) when the runtime has no global WebSocket (Node 20). Only this entry imports `ws`, so the
 * browser build never references it.
 */
import WebSocket from 'ws';
import { connect as connectWith, type ConnectOptions, type KvClient, type WebSocketConstructor } from './ws-client';

export * from './index';

const NodeWebSocket: WebSocketConstructor =
  (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket ?? (WebSocket as unknown as WebSocketConstructor);

export function connect(url: string, opts: ConnectOptions = {}): Promise<KvClient> {
  return connectWith(url, { WebSocket: NodeWebSocket, ...opts });
}
