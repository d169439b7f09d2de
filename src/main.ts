/**
 * `npm start`: reads config/default.json, an optional --config file and flags, validates them, starts a
 * local memcached fleet when no servers are configured, and runs the gateway until SIGINT/SIGTERM.
 */
import { readFileSync } from 'node:fs';
import { ConfigError, defaultConfig, mergeConfig, parseServerList, validateConfig, Config } from './config/schema';
import { LocalFleet } from './fleet/local-fleet';
import type { Gateway } from './gateway';

const USAGE = `usage: kvgate [--config FILE] [--host H] [--port P] [--servers host:port[:weight],...]
              [--hash md5|fnv1a_64] [--window-ms N] [--max-wait-ms N] [--max-ops N] [--max-bytes N]
With no servers configured, kvgate starts its own local fleet of memcached processes on loopback.
Settings and defaults: config/default.json, documented in README.md.`;

function parseArgs(argv: string[]): { file?: string; over: Record<string, unknown> } {
  const over: Record<string, unknown> = {};
  const batch: Record<string, unknown> = {};
  let file: string | undefined;
  for (let k = 0; k < argv.length; k++) {
    const flag = argv[k];
    if (flag === '--help' || flag === '-h') { console.log(USAGE); process.exit(0); }
    const v = argv[++k];
    if (v === undefined) throw new ConfigError(`${flag} needs a value\n${USAGE}`);
    const num = (): number => {
      if (!/^\d+$/.test(v)) throw new ConfigError(`${flag} must be a whole number (got "${v}")`);
      return Number(v);
    };
    switch (flag) {
      case '--config': file = v; break;
      case '--host': over.host = v; break;
      case '--port': over.port = num(); break;
      case '--servers': over.servers = parseServerList(v); break;
      case '--hash': over.hash = v; break;
      case '--window-ms': batch.windowMs = num(); break;
      case '--max-wait-ms': batch.maxWaitMs = num(); break;
      case '--max-ops': batch.maxOps = num(); break;
      case '--max-bytes': batch.maxBytes = num(); break;
      default: throw new ConfigError(`unknown flag ${flag}\n${USAGE}`);
    }
  }
  if (Object.keys(batch).length) over.batch = batch;
  return { file, over };
}

export function loadConfig(argv: string[]): Config {
  const { file, over } = parseArgs(argv);
  let cfg = defaultConfig();
  if (file) {
    let text: string;
    try { text = readFileSync(file, 'utf8'); } catch (e) { throw new ConfigError(`cannot read --config ${file}: ${(e as Error).message}`); }
    try { cfg = mergeConfig(cfg, JSON.parse(text)); } catch (e) { throw new ConfigError(`--config ${file} is not valid JSON: ${(e as Error).message}`); }
  }
  return validateConfig(mergeConfig(cfg, over));
}

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig(process.argv.slice(2));
  } catch (e) {
    if (e instanceof ConfigError) { console.error(`kvgate: ${e.message}`); process.exit(2); }
    throw e;
  }
  // Signals are handled from here on. Until the gateway listens there is nothing to drain, so a signal
  // exits at once, through process.exit, whose hook kills the memcached a local fleet has started (the
  // default action would leave them running). Once it listens, the first SIGTERM/SIGINT drains (answer
  // what was received, refuse the rest, close) within shutdown.drainMs, then exits 0; a second signal
  // exits at once.
  let gw: Gateway | null = null;
  let fleet: LocalFleet | null = null;
  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) {
      console.error(`kvgate: ${signal} again: exiting now`);
      process.exit(1);
    }
    stopping = true;
    if (gw === null) {
      console.log(`kvgate: ${signal} while starting: exiting`);
      process.exit(0);
    }
    console.log(`kvgate: ${signal}: draining (up to ${config.shutdown.drainMs} ms)`);
    try {
      await gw.drain();
      await fleet?.stop();
    } catch (e) {
      console.error('kvgate: the drain failed:', e);
      process.exit(1);
    }
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));

  // Loaded only after the config is known to be good, so a bad flag reports itself first.
  const { startGateway } = await import('./gateway');
  if (config.servers.length === 0) {
    const itemSizeMb = Math.max(2, Math.ceil(config.limits.maxValueBytes / (1024 * 1024)) + 1);
    fleet = await LocalFleet.start({ count: config.localFleet.count, memoryMb: config.localFleet.memoryMb, threads: config.localFleet.threads, itemSizeMb });
    config.servers = fleet.servers();
    console.log(`kvgate: started a local fleet of ${fleet.members.length} memcached on ${config.servers.map((s) => `127.0.0.1:${s.port}`).join(', ')}`);
  }
  const started = await startGateway(config);
  gw = started;
  const down = started.shards.filter((s) => !s.up).map((s) => s.label);
  console.log(`kvgate: listening on http://${config.host}:${started.port} (WebSocket ws://${config.host}:${started.port}/v1/ws), ${started.shards.length} shards, hash ${config.hash}` +
    (down.length ? `; not reachable yet: ${down.join(', ')}` : ''));
}

if (require.main === module) {
  main().catch((e) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
}
