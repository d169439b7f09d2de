/**
 * Loads the native uWebSockets.js binding and nothing else. The npm package quietly falls back to a slow
 * pure-JS server when its binary does not load; a gateway sold on speed must refuse to run on that.
 */
import type * as UWS from '@trufflesuite/uws-js-unofficial';

export type { HttpRequest, HttpResponse, TemplatedApp, WebSocket, us_listen_socket } from '@trufflesuite/uws-js-unofficial';

function loadNative(): typeof UWS {
  const file = `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`;
  try {
    return require(`@trufflesuite/uws-js-unofficial/binaries/${file}`) as typeof UWS;
  } catch (e) {
    throw new Error(
      `kvgate: the native uWebSockets.js binding (${file}) did not load: ${(e as Error).message}\n` +
        `kvgate refuses to run on the slow JavaScript fallback. Use Node.js 20 on linux x64/arm64, ` +
        `darwin or win32 x64 with @trufflesuite/uws-js-unofficial installed (npm ci).`,
    );
  }
}

export const uws = loadNative();
