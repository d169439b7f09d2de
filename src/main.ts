/**
 * `npm start`: reads config/default.json, an optional --config file and flags, validates them, starts a
 * local memcached fleet when no servers are configured, and runs the gateway until SIGINT/SIGTERM.
 */
import { readFileSync } from 'node:fs';
import {
  ConfigError,
  ConfigProblem,
  defaultConfig,
  mergeConfig,
  splitServerList,
  validateConfig,
  Config,
} from './config/schema';
import { LocalFleet } from './fleet/local-fleet';
import type { Gateway } from './gateway';

const USAGE = `usage: kvgate [--config FILE] [--host H] [--port P] [--servers host:port[:weight],...]
              [--hash md5|fnv1a_64] [--window-ms N] [--max-wait-ms N] [--max-ops N] [--max-bytes N]
A flag takes its value as the next argument or after "=" (--port=8080); flags override the --config file,
which overrides config/default.json. Every setting is described in README.md ("Configuration").
With no servers configured, kvgate starts its own local fleet of memcached processes on loopback.`;

type FlagKind = 'file' | 'string' | 'int' | 'servers';

/** Each flag and the setting it sets (`path`, as validateConfig names it). */
const FLAGS: Record<string, { path: string; kind: FlagKind }> = {
  '--config': { path: '', kind: 'file' },
  '--host': { path: 'host', kind: 'string' },
  '--port': { path: 'port', kind: 'int' },
  '--servers': { path: 'servers', kind: 'servers' },
  '--hash': { path: 'hash', kind: 'string' },
  '--window-ms': { path: 'batch.windowMs', kind: 'int' },
  '--max-wait-ms': { path: 'batch.maxWaitMs', kind: 'int' },
  '--max-ops': { path: 'batch.maxOps', kind: 'int' },
  '--max-bytes': { path: 'batch.maxBytes', kind: 'int' },
};

interface Args {
  file?: string;
  /** The settings the flags give, shaped like the config (`{ batch: { maxOps } }`). */
  over: Record<string, unknown>;
  /** Setting path -> the flag and value that set it, to name the flag in a problem with that setting. */
  given: Map<string, string>;
  problems: ConfigProblem[];
}

function setPath(obj: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split('.');
  let at = obj;
  for (const k of keys.slice(0, -1)) at = (at[k] ??= {}) as Record<string, unknown>;
  at[keys[keys.length - 1]] = value;
}

/** Reads every argument, collecting every problem rather than stopping at the first. */
function parseArgs(argv: string[]): Args {
  const args: Args = { over: {}, given: new Map(), problems: [] };
  const problem = (path: string, text: string): void => {
    args.problems.push({ path, text });
  };
  for (let k = 0; k < argv.length; k++) {
    let flag = argv[k];
    let value: string | undefined;
    const eq = flag.indexOf('=');
    if (flag.startsWith('--') && eq > 2) {
      value = flag.slice(eq + 1);
      flag = flag.slice(0, eq);
    }
    if (!flag.startsWith('-')) {
      problem(flag, `unexpected argument "${flag}" (settings are given as --flag value)`);
      continue;
    }
    // A value may start with one dash (`--window-ms -5` is a bad number, not a missing one), never two.
    if (value === undefined && k + 1 < argv.length && !argv[k + 1].startsWith('--')) value = argv[++k];
    const spec = Object.hasOwn(FLAGS, flag) ? FLAGS[flag] : undefined;
    if (spec === undefined) {
      problem(flag, `unknown flag ${flag}`);
      continue;
    }
    if (value === undefined) {
      problem(flag, `${flag} needs a value`);
      continue;
    }
    const shown = `${flag} ${JSON.stringify(value)}`;
    switch (spec.kind) {
      case 'file':
        args.file = value;
        continue;
      case 'int':
        if (!/^\d+$/.test(value)) {
          problem(spec.path, `${shown}: ${spec.path} must be a whole number`);
          continue;
        }
        setPath(args.over, spec.path, Number(value));
        break;
      case 'servers':
        // Kept as strings: validateConfig parses them and names each bad one (`servers[1]`).
        setPath(args.over, spec.path, splitServerList(value));
        break;
      case 'string':
        setPath(args.over, spec.path, value);
        break;
    }
    args.given.set(spec.path, shown);
  }
  return args;
}

/** Whether a setting path (`batch.maxOps`, `servers[1].port`) is present in a parsed config file. */
function inFile(file: unknown, path: string): boolean {
  let at = file;
  for (const k of path.split(/\.|\[(\d+)\]/).filter(Boolean)) {
    if (at === null || typeof at !== 'object' || !Object.hasOwn(at, k)) return false;
    at = (at as Record<string, unknown>)[k];
  }
  return true;
}

/**
 * Defaults, then the --config file, then the flags; all of it parsed and validated together. Throws one
 * ConfigError naming every bad flag and every bad setting, each with the flag or the file that gave it.
 */
export function loadConfig(argv: string[]): Config {
  const args = parseArgs(argv);
  const problems = args.problems;
  let cfg = defaultConfig();
  let file: unknown;
  if (args.file !== undefined) {
    const name = args.file;
    let text: string | undefined;
    try {
      text = readFileSync(name, 'utf8');
    } catch (e) {
      problems.push({ path: '--config', text: `--config ${name}: cannot read it: ${(e as Error).message}` });
    }
    if (text !== undefined) {
      try {
        file = JSON.parse(text);
      } catch (e) {
        problems.push({ path: '--config', text: `--config ${name}: not valid JSON: ${(e as Error).message}` });
      }
      if (file !== undefined && (file === null || typeof file !== 'object' || Array.isArray(file))) {
        problems.push({ path: '--config', text: `--config ${name}: must hold a JSON object of settings` });
        file = undefined;
      }
      if (file !== undefined) cfg = mergeConfig(cfg, file);
    }
  }
  const origin = (p: ConfigProblem): ConfigProblem => {
    for (const [path, flag] of args.given) {
      if (p.path === path || p.path.startsWith(`${path}.`) || p.path.startsWith(`${path}[`))
        return { path: p.path, text: `${flag}: ${p.text}` };
    }
    return file !== undefined && inFile(file, p.path) ? { path: p.path, text: `${args.file}: ${p.text}` } : p;
  };
  try {
    const config = validateConfig(mergeConfig(cfg, args.over));
    if (problems.length === 0) return config;
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    problems.push(...e.problems.map(origin));
  }
  throw new ConfigError(problems);
}

async function main(argv: string[]): Promise<void> {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(USAGE);
    process.exit(0);
  }
  let config: Config;
  try {
    config = loadConfig(argv);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    // Exit 2 (a usage error) before anything starts: no fleet, no listening socket.
    console.error(`kvgate: ${e.message}\nkvgate --help lists the flags; README.md ("Configuration") every setting.`);
    process.exit(2);
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
  if (config.servers.length === 0 && Object.keys(config.pools).length === 0) {
    const itemSizeMb = Math.max(2, Math.ceil(config.limits.maxValueBytes / (1024 * 1024)) + 1);
    fleet = await LocalFleet.start({
      count: config.localFleet.count,
      memoryMb: config.localFleet.memoryMb,
      threads: config.localFleet.threads,
      itemSizeMb,
    });
    config.servers = fleet.servers();
    console.log(
      `kvgate: started a local fleet of ${fleet.members.length} memcached on ${config.servers.map((s) => `127.0.0.1:${s.port}`).join(', ')}`,
    );
  }
  const started = await startGateway(config);
  gw = started;
  const pools = started.pools.map((p) => `${p.name} (${p.backend.kind}, ${p.backend.shards.length} shards)`);
  const down = started.pools.flatMap((p) => p.backend.shards.filter((s) => !s.up).map((s) => `${p.name}/${s.label}`));
  console.log(
    `kvgate: listening on http://${config.host}:${started.port} (WebSocket ws://${config.host}:${started.port}/v1/ws), pools: ${pools.join(', ')}, default pool ${config.defaultPool}` +
      (down.length ? `; not reachable yet: ${down.join(', ')}` : ''),
  );
}

/** Runs the gateway as the command line does; bin/kvgate calls this. */
export function run(argv: string[] = process.argv.slice(2)): void {
  main(argv).catch((e) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
}

if (require.main === module) run();
