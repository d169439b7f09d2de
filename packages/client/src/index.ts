/**
 * @kvgate/client: the browser-safe entry. It uses `globalThis.WebSocket` (browsers, Node 22+) unless
 * `options.WebSocket` names another; on Node 20 import `@kvgate/client/node`, which passes the `ws` package.
 */
export { connect, KvClient } from './ws-client';
export type {
  ClientStats,
  CloseInfo,
  ConnectOptions,
  ReconnectOptions,
  WebSocketConstructor,
  WebSocketLike,
} from './ws-client';
export { createHttpClient, KvHttpClient } from './http-client';
export type { BulkFormat, BulkOptions, HttpClientOptions } from './http-client';
export { KvError, GATEWAY_CODES, CLIENT_CODES } from './errors';
export type { ClientCode, ErrorCode, GatewayCode, KvErrorInit, RetryHint } from './errors';
export { isError } from './types';
export type * from './types';
