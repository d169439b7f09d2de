/** The machine, versions and settings recorded with every result. */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..', '..');

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.error) return 'unavailable';
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() || 'unavailable';
}

function pkgVersion(name: string): string {
  try {
    return (JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string })
      .version;
  } catch {
    return 'missing';
  }
}

export interface Machine {
  cpuModel: string;
  cores: number;
  memoryGb: number;
  kernel: string;
  os: string;
  hostname: string;
  ulimitNofile: string;
  ephemeralPorts: string;
  tcpTwReuse: string;
  somaxconn: string;
}

export interface Versions {
  node: string;
  v8: string;
  memcached: string;
  nutcracker: string;
  wrk: string;
  uws: string;
  msgpackr: string;
  memjs: string;
  kvgateCommit: string;
  kvgateDirty: boolean;
}

export function machine(): Machine {
  const cpus = os.cpus();
  let osName = 'unknown';
  try {
    osName = /PRETTY_NAME="([^"]+)"/.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? osName;
  } catch {
    /* not Linux */
  }
  const read = (p: string): string => {
    try {
      return readFileSync(p, 'utf8').trim().replace(/\s+/g, ' ');
    } catch {
      return 'n/a';
    }
  };
  return {
    cpuModel: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memoryGb: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    kernel: os.release(),
    os: osName,
    hostname: os.hostname(),
    ulimitNofile: sh('sh', ['-c', 'ulimit -n']),
    ephemeralPorts: read('/proc/sys/net/ipv4/ip_local_port_range'),
    tcpTwReuse: read('/proc/sys/net/ipv4/tcp_tw_reuse'),
    somaxconn: read('/proc/sys/net/core/somaxconn'),
  };
}

export function versions(): Versions {
  const status = sh('git', ['-C', ROOT, 'status', '--porcelain', '--', 'src']);
  return {
    node: process.version,
    v8: process.versions.v8,
    memcached: sh('memcached', ['-V']),
    nutcracker: sh('nutcracker', ['-V'])
      .split('\n')[0]
      .replace(/^This is /, ''),
    wrk: sh('wrk', ['-v'])
      .split('\n')[0]
      .replace(/ Copyright.*/, ''),
    uws: pkgVersion('@trufflesuite/uws-js-unofficial'),
    msgpackr: pkgVersion('msgpackr'),
    memjs: pkgVersion('memjs'),
    kvgateCommit: sh('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']),
    kvgateDirty: status !== '' && status !== 'unavailable',
  };
}

export { ROOT };
