/**
 * Loads uWebSockets.js's native binding directly. The package's entry point quietly falls back to a slow
 * JavaScript implementation when the binary does not load; a benchmark on that would measure the wrong
 * thing, so this refuses instead.
 */
import type * as Uws from '@trufflesuite/uws-js-unofficial';

export type { Uws };

export function loadUws(): typeof Uws {
  const file = `@trufflesuite/uws-js-unofficial/binaries/uws_${process.platform}_${process.arch}_${process.versions.modules}.node`;
  try {
    return require(file) as typeof Uws;
  } catch (e) {
    throw new Error(
      `the native uWebSockets.js binding did not load (${file}): ${(e as Error).message}; refusing the slow fallback`,
    );
  }
}
