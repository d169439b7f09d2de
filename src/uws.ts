/**
 * Loads the native uWebSockets.js binding and nothing else. The npm package quietly falls back to a slow
 * pure-JS server when its binary does not load; a gateway sold on speed must refuse to run on that.
 */
import type * as UWS from '@trufflesuite/uws-js-unofficial';

export type {
  HttpRequest,
  HttpResponse,
  TemplatedApp,
  WebSocket,
  us_listen_socket,
} from '@trufflesuite/uws-js-unofficial';

function loadNative(): typeof UWS {
  const file = `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`;
  try {
    return require(`@trufflesuite/uws-js-unofficial/binaries/${file}`) as typeof UWS;
  } catch (e) {
    // The package ships binaries for ABI 93, 108 and 115 (Node 16, 18, 20); kvgate is built and tested on 20.
    throw new Error(
      `kvgate: the native uWebSockets.js binding (${file}) did not load: ${(e as Error).message}\n` +
        `kvgate needs Node.js 20 (ABI 115; package.json "engines"); this is Node ${process.version} ` +
        `(ABI ${process.versions.modules}) on ${process.platform} ${process.arch}. The binding ships for linux ` +
        `x64/arm64/arm, darwin x64/arm64 and win32 x64, in @trufflesuite/uws-js-unofficial (npm ci). ` +
        `kvgate refuses to run on the slow JavaScript fallback.`,
    );
  }
}

export const uws = loadNative();

/** uSockets' listen options (LIBUS_LISTEN_*): the default binds with SO_REUSEPORT on Linux. */
export const enum ListenMode {
  /** SO_REUSEPORT: other processes may listen on the same port (workers; the kernel spreads connections). */
  Shared = 0,
  /** LIBUS_LISTEN_EXCLUSIVE_PORT: no SO_REUSEPORT, so a second listener on the port fails (and so does this one if the port is held). */
  Exclusive = 1,
}

/**
 * `app.listen(host, port, options, cb)`: the native binding takes the options after the host, which the
 * package's typings do not declare.
 */
export function listenOn(
  app: UWS.TemplatedApp,
  host: string,
  port: number,
  mode: ListenMode,
  cb: (ls: UWS.us_listen_socket | false) => void,
): void {
  (app.listen as unknown as (h: string, p: number, o: number, c: typeof cb) => void).call(app, host, port, mode, cb);
}
