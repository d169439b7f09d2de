/**
 * `npm start`: reads config/default.json, an optional --config file and flags, validates them, starts a
 * local memcached fleet when no servers are configured, and runs the gateway until SIGINT/SIGTERM. With
 * `workers` > 1 this process is the supervisor of that many gateway processes (src/cluster/).
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
import { availableParallelism } from 'node:os';
import { Events } from './core/events';
import { LocalFleet, freePort } from './fleet/local-fleet';
import { ENV_ARGV } from './cluster/protocol';
import type { Gateway } from './gateway';
import { createLogger, loggerSink } from './ops/logger';

type FlagKind = 'file' | 'string' | 'int' | 'servers' | 'workers' | 'switch';

/** Each flag, the setting it sets (`path`, as validateConfig names it) and what it is for. */
const FLAGS: Record<string, { path: string; kind: FlagKind; text: string }> = {
  '--config': {
    path: '',
    kind: 'file',
    text: 'a JSON file of settings (README.md, "Configuration"); SIGHUP re-reads it',
  },
  '--host': { path: 'host', kind: 'string', text: 'public address (the API and /healthz)' },
  '--port': { path: 'port', kind: 'int', text: 'public port' },
  '--admin-host': { path: 'admin.host', kind: 'string', text: 'admin listener address (/metrics, /readyz, reload)' },
  '--admin-port': { path: 'admin.port', kind: 'int', text: 'admin listener port (0: any free port)' },
  '--servers': {
    path: 'servers',
    kind: 'servers',
    text: 'memcached servers of the default pool, host:port[:weight],... (none: a local fleet)',
  },
  '--hash': { path: 'hash', kind: 'string', text: 'ketama key hash: md5 or fnv1a_64' },
  '--failure-mode': { path: 'failure.mode', kind: 'string', text: 'a dead memcached shard: fail-fast or eject' },
  '--window-ms': { path: 'batch.windowMs', kind: 'int', text: 'batch window after the last op (0: end of turn)' },
  '--max-wait-ms': { path: 'batch.maxWaitMs', kind: 'int', text: 'longest hold of any batch' },
  '--max-ops': { path: 'batch.maxOps', kind: 'int', text: 'ops per shard batch before it leaves' },
  '--max-bytes': { path: 'batch.maxBytes', kind: 'int', text: 'bytes per shard batch before it leaves' },
  '--log-level': { path: 'log.level', kind: 'string', text: 'fatal, error, warn, info, debug, trace or silent' },
  '--workers': { path: 'workers', kind: 'workers', text: 'gateway processes on the port (auto: one per CPU)' },
  '--print-config': { path: '', kind: 'switch', text: 'print the effective configuration as JSON and exit' },
  '--help': { path: '', kind: 'switch', text: 'this text' },
};

/** The value a setting path has in the defaults (`batch.maxOps` -> 1000), for --help. */
function defaultOf(path: string): string {
  if (path === '') return '';
  let at: unknown = defaultConfig();
  for (const k of path.split('.')) at = (at as Record<string, unknown>)[k];
  if (Array.isArray(at) && at.length === 0) return 'none';
  return typeof at === 'string' ? at : JSON.stringify(at);
}

function usage(): string {
  const width = Math.max(...Object.keys(FLAGS).map((f) => f.length));
  const lines = Object.entries(FLAGS).map(([flag, f]) => {
    const d = defaultOf(f.path);
    return `  ${flag.padEnd(width)}  ${f.text}${d === '' ? '' : ` (default: ${d})`}`;
  });
  return `usage: kvgate [flags]
${lines.join('\n')}
A flag takes its value as the next argument or after "=" (--port=8080); flags override the --config file,
which overrides config/default.json. Every setting is described in README.md ("Configuration").
With no servers configured, kvgate starts its own local fleet of memcached processes on loopback.
Signals: SIGTERM/SIGINT drain then exit (a second one exits at once); SIGHUP reloads the --config file.`;
}

interface Args {
  file?: string;
  /** --print-config, --help */
  switches: Set<string>;
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
  const args: Args = { over: {}, given: new Map(), problems: [], switches: new Set() };
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
    const spec = Object.hasOwn(FLAGS, flag) ? FLAGS[flag] : undefined;
    if (spec === undefined) {
      // Its value, if it has one, goes with it (not reported again as an unexpected argument).
      if (value === undefined && k + 1 < argv.length && !argv[k + 1].startsWith('--')) k++;
      problem(flag, `unknown flag ${flag}`);
      continue;
    }
    if (spec.kind === 'switch') {
      if (value !== undefined) problem(flag, `${flag} takes no value`);
      args.switches.add(flag);
      continue;
    }
    // A value may start with one dash (`--window-ms -5` is a bad number, not a missing one), never two.
    if (value === undefined && k + 1 < argv.length && !argv[k + 1].startsWith('--')) value = argv[++k];
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
      case 'workers':
        // A number where it is one; anything else is kept as given for validateConfig to name.
        setPath(args.over, spec.path, /^\d+$/.test(value) ? Number(value) : value);
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
  return loadArgs(argv).config;
}

/** loadConfig, also telling the --config file (reload reads it again) and the switches given. */
export function loadArgs(argv: string[]): { config: Config; file?: string; switches: Set<string> } {
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
    if (problems.length === 0) return { config, file: args.file, switches: args.switches };
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    problems.push(...e.problems.map(origin));
  }
  throw new ConfigError(problems);
}

async function main(argv: string[]): Promise<void> {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(usage());
    process.exit(0);
  }
  let config: Config;
  try {
    const loaded = loadArgs(argv);
    config = loaded.config;
    if (loaded.switches.has('--print-config')) {
      console.log(JSON.stringify(config, null, 2));
      process.exit(0);
    }
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
  const log = createLogger(config.log.level);
  let gw: Pick<Gateway, 'drain'> | null = null;
  let fleet: LocalFleet | null = null;
  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) {
      log.warn({ event: 'signal', signal }, `${signal} again: exiting now`);
      process.exit(1);
    }
    stopping = true;
    if (gw === null) {
      log.info({ event: 'signal', signal }, `${signal} while starting: exiting`);
      process.exit(0);
    }
    log.info({ event: 'drain.start', signal, drainMs: config.shutdown.drainMs }, `${signal}: draining`);
    try {
      await gw.drain();
      await fleet?.stop();
    } catch (e) {
      log.error({ event: 'drain.failed', err: (e as Error).message }, 'the drain failed');
      process.exit(1);
    }
    log.info({ event: 'drain.done', signal }, 'drained: exiting');
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
  // SIGHUP reloads: the gateway, or the supervisor forwarding it to every worker. Its default action would
  // end the process, also while it starts.
  let hangup: (() => void) | null = null;
  process.on('SIGHUP', () => {
    if (hangup === null || stopping) {
      log.warn({ event: 'signal', signal: 'SIGHUP' }, 'SIGHUP while starting or stopping: ignored');
      return;
    }
    hangup();
  });

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
    log.info(
      { event: 'fleet.started', servers: config.servers.map((m) => `${m.host}:${m.port}`) },
      `started a local fleet of ${fleet.members.length} memcached`,
    );
  }
  const workers = config.workers === 'auto' ? availableParallelism() : config.workers;
  if (workers > 1) {
    // A supervisor (src/cluster/): one fleet (above), its servers handed to every worker in the config.
    const { startSupervisor } = await import('./cluster/supervisor');
    if (config.port === 0) config.port = await freePort();
    process.env[ENV_ARGV] = JSON.stringify(argv); // each worker reads the file again on a reload
    const events = new Events('supervisor', loggerSink(log));
    const sup = await startSupervisor(config, workers, events);
    gw = { drain: () => sup.stop() };
    hangup = () =>
      void sup
        .reload()
        .then((all) => log.info({ event: 'reload.forwarded', workers: all }, 'SIGHUP: reload asked of every worker'));
    log.info(
      { event: 'listening', port: sup.port, adminPort: sup.adminPort, workers },
      `listening on http://${config.host}:${sup.port} with ${workers} workers, ` +
        `admin ${sup.adminPort ? `http://${config.admin.host}:${sup.adminPort}` : 'off'}`,
    );
    return;
  }
  const started = await startGateway(config, { reloadConfig: () => rereadConfig(argv, started.config) });
  gw = started;
  hangup = () =>
    void started.reload().then((o) => {
      // The gateway logged it (reload.failed); say it on stderr too, for whoever sent the signal.
      if (o.result === 'failed')
        console.error(`kvgate: SIGHUP: ${o.message}${o.problems.length ? `: ${o.problems.join('; ')}` : ''}`);
    });
  const pools = started.pools.map((p) => `${p.name} (${p.backend.kind}, ${p.backend.shards.length} shards)`);
  const down = started.pools.flatMap((p) => p.backend.shards.filter((s) => !s.up).map((s) => `${p.name}/${s.label}`));
  log.info(
    { event: 'listening', port: started.port, adminPort: started.adminPort, pools, down },
    `listening on http://${config.host}:${started.port} (WebSocket ws://${config.host}:${started.port}/v1/ws), ` +
      `admin ${started.adminPort ? `http://${config.admin.host}:${started.adminPort}` : 'off'}, pools: ${pools.join(', ')}`,
  );
}

/**
 * What a reload reads: the --config file again under the same flags (`argv`). Port 0 and no servers (a
 * local fleet) mean what they meant at start: the port and the fleet `running` has.
 */
export function rereadConfig(argv: string[], running: Config): Config {
  const next = loadArgs(argv).config;
  if (next.port === 0) next.port = running.port;
  if (next.servers.length === 0 && Object.keys(next.pools).length === 0) next.servers = running.servers;
  return next;
}

/** Runs the gateway as the command line does; bin/kvgate calls this. */
export function run(argv: string[] = process.argv.slice(2)): void {
  main(argv).catch((e) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
}

if (require.main === module) run();
