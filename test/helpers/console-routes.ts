/**
 * What the console tests share (test/console.test.ts for one gateway, test/console-workers.test.ts for a
 * supervisor): the `?key=` query of the key routes, and every route that wants the admin role.
 */

/** `key=<the key, URL-encoded>`. */
export const q = (key: string): string => `key=${encodeURIComponent(key)}`;

/** [method, path, body?] of every console route that wants the admin role, on `key`. */
export function adminRoutes(key: string): [string, string, string?][] {
  return [
    ['GET', '/console/data'],
    ['GET', `/console/placement?${q(key)}`],
    ['PUT', `/console/key?${q(key)}`, 'v'],
    ['GET', `/console/key?${q(key)}`],
    ['DELETE', `/console/key?${q(key)}`],
  ];
}
