/** The kvgate client library: wire codec, result types, WebSocket and HTTP clients. */
export * from './errors';
export * from './entries';
export * from './results';
export * from './ws-client';
export * from './http-client';
