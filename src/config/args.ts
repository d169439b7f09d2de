/**
 * The command line: each flag and the setting it sets, --help's text with every default, and the
 * configuration a start (or a reload) reads: config/default.json, the --config file, then the flags, merged
 * and validated with every bad setting named at once. main.ts starts from it; a worker's reload reads it.
 */
import { readFileSync } from 'node:fs';
import { devKey } from '../security/dev-key';
import { isLoopbackHost } from '../security/settings';
import {
  ConfigError,
  ConfigProblem,
  defaultConfig,
  mergeConfig,
  splitServerList,
  validateConfig,
  Config,
} from './schema';

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
  '--insecure-public': {
    path: '',
    kind: 'switch',
    text: 'allow security.auth.mode "off" on a non-loopback address (anyone who can reach it reads and writes every key)',
  },
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

export function usage(): string {
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
export function loadArgs(argv: string[]): {
  config: Config;
  file?: string;
  switches: Set<string>;
  /** The development key's file, when no credential was configured (security/dev-key.ts). */
  devKeyFile?: string;
} {
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
    const merged = mergeConfig(cfg, args.over);
    if (args.switches.has('--insecure-public')) merged.security.insecurePublic = true;
    const devKeyFile = needsDevKey(merged) ? useDevKey(merged) : undefined;
    const config = validateConfig(merged);
    if (problems.length === 0) return { config, file: args.file, switches: args.switches, devKeyFile };
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    problems.push(...e.problems.map(origin));
  }
  throw new ConfigError(problems);
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

/**
 * Authentication required, no credential configured at all, and only loopback listening: the zero-config
 * `npm start`. It gets the development key instead of a gateway nothing could authenticate to.
 */
function needsDevKey(c: Config): boolean {
  const auth = c.security?.auth as Partial<Config['security']['auth']> | undefined;
  if (auth === undefined || auth.mode !== 'required') return false;
  if (!Array.isArray(auth.apiKeys) || auth.apiKeys.length > 0 || (auth.jwt !== null && auth.jwt !== undefined))
    return false;
  if (typeof c.host !== 'string' || !isLoopbackHost(c.host)) return false;
  return c.admin?.enabled !== true || (typeof c.admin.host === 'string' && isLoopbackHost(c.admin.host));
}

function useDevKey(c: Config): string {
  const { path, entry } = devKey();
  c.security.auth.apiKeys = [entry];
  return path;
}
