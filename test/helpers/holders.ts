/** Which members of a local fleet hold a key, asked of each one directly (memjs, the binary protocol). */
import memjs from 'memjs';
import type { LocalFleet } from '../../src/fleet/local-fleet';

/** Each member holding `key`, with the value it holds. */
export async function holders(fleet: LocalFleet, key: string): Promise<{ member: number; value: string }[]> {
  const out: { member: number; value: string }[] = [];
  for (let m = 0; m < fleet.members.length; m++) {
    const c = memjs.Client.create(`127.0.0.1:${fleet.members[m].port}`, {
      retries: 0,
      timeout: 2,
      logger: { log: () => {} },
    });
    try {
      const r = await c.get(key);
      if (r.value !== null) out.push({ member: m, value: Buffer.from(r.value).toString() });
    } finally {
      c.close();
    }
  }
  return out;
}
