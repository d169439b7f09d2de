/** Logging that a client cannot turn into a flood. */

/**
 * One log line per `everyMs` at most, for failures a client could trigger at will; the rest are counted
 * and the count goes out with the next line. A line holds the error and where it was thrown, never a stack.
 */
export class RateLimitedLog {
  private last = -Infinity;
  private suppressed = 0;

  constructor(
    private readonly what: string,
    private readonly everyMs = 10_000,
    private readonly write: (line: string) => void = (line) => console.error(line),
    private readonly now = Date.now,
  ) {}

  report(e: unknown): void {
    const t = this.now();
    if (t - this.last < this.everyMs) {
      this.suppressed++;
      return;
    }
    const more =
      this.suppressed > 0 ? ` (and ${this.suppressed} more in the last ${Math.round((t - this.last) / 1000)} s)` : '';
    this.last = t;
    this.suppressed = 0;
    this.write(`kvgate: ${this.what}: ${oneLine(e)}${more}`);
  }
}

function oneLine(e: unknown): string {
  if (!(e instanceof Error)) return String(e).slice(0, 200).replace(/\s+/g, ' ');
  const at =
    e.stack
      ?.split('\n')
      .find((l) => l.trimStart().startsWith('at '))
      ?.trim() ?? '';
  return `${e.name}: ${e.message}`.slice(0, 200).replace(/\s+/g, ' ') + (at ? ` ${at}` : '');
}
