/**
 * The package's entry (`main`/`exports` "."): the gateway as a library. `kvgate` (bin/kvgate, src/main.ts)
 * is the same thing behind the command line; applications use the client package, `@kvgate/client`
 * (packages/client/).
 * Importing this loads the native uWebSockets.js binding (src/uws.ts), and fails if it cannot.
 */
export { startGateway } from './gateway';
export type { Gateway } from './gateway';
export { ConfigError, defaultConfig, mergeConfig, parseServerList, validateConfig } from './config/schema';
export type { Config, HashName, ServerSpec } from './config/schema';
export { loadConfig } from './main';
export { LocalFleet } from './fleet/local-fleet';
export { ErrorTable, GatewayError } from './core/errors';
export type { ErrorCode } from './core/errors';
