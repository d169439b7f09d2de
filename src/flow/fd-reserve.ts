/**
 * Descriptors kept in hand for shard connections (`limits.reservedDescriptors`). uWS accepts client
 * sockets until the process runs out of descriptors, and tells us nothing about connections that never
 * send a request; so the gateway holds a few descriptors open on /dev/null and gives one up just before
 * it opens a shard connection. Node creates a connecting socket's descriptor on the next tick, before
 * any I/O callback (and so before uWS can accept anything), so the freed slot is the shard's.
 *
 * `atLimit` tells whether the process can open a descriptor at all: the gateway then stops listening
 * for a while (uSockets retries a failing accept in a busy loop), and listens again once it can.
 */
import { closeSync, openSync } from 'node:fs';

export class FdReserve {
  private readonly fds: number[] = [];
  /** Times a shard connection used a reserved descriptor. */
  lent = 0;

  constructor(private readonly want: number) {
    this.restock();
  }

  get held(): number {
    return this.fds.length;
  }

  /** Frees one reserved descriptor for the connection about to be opened. */
  lend(): void {
    const fd = this.fds.pop();
    if (fd === undefined) return;
    closeSync(fd);
    this.lent++;
  }

  /** Takes descriptors back up to the reserve, as far as the process has any free. */
  restock(): void {
    while (this.fds.length < this.want) {
      const fd = tryOpen();
      if (fd < 0) return;
      this.fds.push(fd);
    }
  }

  /** True when the process cannot open one more descriptor. */
  atLimit(): boolean {
    const fd = tryOpen();
    if (fd < 0) return true;
    closeSync(fd);
    return false;
  }

  close(): void {
    for (const fd of this.fds) closeSync(fd);
    this.fds.length = 0;
  }
}

function tryOpen(): number {
  try {
    return openSync('/dev/null', 'r');
  } catch {
    return -1;
  }
}
