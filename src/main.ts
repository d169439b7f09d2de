/**
 * `npm start`: reads config/default.json, an optional --config file and flags, validates them, starts a
 * local memcached fleet when no servers are configured, and runs the gateway until SIGINT/SIGTERM. With
 * `workers` > 1 this process is the supervisor of that many gateway processes (src/cluster/).
 */
import { ConfigError, type Config } from './config/schema';
import { loadArgs, rereadConfig, usage } from './config/args';
import { availableParallelism } from 'node:os';
import { Events } from './core/events';
import { LocalFleet, freePort } from './fleet/local-fleet';
import { ENV_ARGV } from './cluster/protocol';
import type { Gateway } from './gateway';

export { loadArgs, loadConfig, rereadConfig } from './config/args';
import { createLogger, loggerSink } from './ops/logger';

async function main(argv: string[]): Promise<void> {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(usage());
    process.exit(0);
  }
  let config: Config;
  let devKeyFile: string | undefined;
  try {
    const loaded = loadArgs(argv);
    config = loaded.config;
    devKeyFile = loaded.devKeyFile;
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
  if (devKeyFile !== undefined && process.env[ENV_ARGV] === undefined)
    log.warn(
      { event: 'auth.dev_key', file: devKeyFile },
      `no credentials configured: clients authenticate with the development API key in ${devKeyFile} ` +
        '(Authorization: Bearer <key>; loopback only; configure security.auth for anything else)',
    );
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

/** Runs the gateway as the command line does; bin/kvgate calls this. */
export function run(argv: string[] = process.argv.slice(2)): void {
  main(argv).catch((e) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
}

if (require.main === module) run();
