/**
 * A real TLS terminator for tests: the system's haproxy, configured from deploy/haproxy.cfg (the example
 * operators copy), on a free loopback port, in front of a backend on 127.0.0.1:<backendPort>. The
 * certificate is self-signed for 127.0.0.1, ::1 and localhost, made once per process by openssl into a
 * temporary folder removed at exit. Every haproxy started is killed by `stop()` or when this process exits.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { freePort } from '../../src/fleet/local-fleet';

/** `http`: the kvgate_https pair (X-Forwarded-For); `tcp`: the kvgate_tls_tcp pair (PROXY protocol v2). */
export type TlsProxyMode = 'http' | 'tcp';

export interface TlsProxy {
  /** The TLS port on 127.0.0.1. */
  port: number;
  /** The self-signed certificate, to pass as `ca` (no `rejectUnauthorized: false` anywhere). */
  caPem: string;
  mode: TlsProxyMode;
  /** The haproxy configuration it runs (for failure messages). */
  config: string;
  stop(): Promise<void>;
}

const ROOT = join(__dirname, '..', '..', '..');
const SECTIONS: Record<TlsProxyMode, [frontend: string, backend: string]> = {
  http: ['frontend kvgate_https', 'backend kvgate_http'],
  tcp: ['frontend kvgate_tls_tcp', 'backend kvgate_proxy'],
};

const live = new Set<ChildProcess>();
let workDir: string | undefined;
let cert: { caPem: string; pemPath: string } | undefined;

function ensureWorkDir(): string {
  if (workDir) return workDir;
  const dir = mkdtempSync(join(tmpdir(), 'kvgate-tls-'));
  workDir = dir;
  process.once('exit', () => {
    for (const p of live) p.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

/** The self-signed certificate (made on first use): its PEM, and the cert+key file haproxy loads. */
export function testCertificate(): { caPem: string; pemPath: string } {
  if (cert) return cert;
  const dir = ensureWorkDir();
  const key = join(dir, 'key.pem');
  const crt = join(dir, 'cert.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      key,
      '-out',
      crt,
      '-days',
      '2',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const caPem = readFileSync(crt, 'utf8');
  const pemPath = join(dir, 'haproxy.pem');
  writeFileSync(pemPath, caPem + readFileSync(key, 'utf8'), { mode: 0o600 });
  cert = { caPem, pemPath };
  return cert;
}

/** Replaces the one line `pattern` matches in `text`; throws if it matches none or several. */
function replaceOne(text: string, pattern: RegExp, by: string, what: string): string {
  const hits = text.match(new RegExp(pattern.source, 'gm'))?.length ?? 0;
  if (hits !== 1) throw new Error(`deploy/haproxy.cfg: expected one ${what}, found ${hits}`);
  return text.replace(new RegExp(pattern.source, 'm'), by);
}

/**
 * deploy/haproxy.cfg reduced to `global`, `defaults` and the pair for `mode`, listening on
 * 127.0.0.1:`port` with the test certificate, forwarding to 127.0.0.1:`backendPort`. The lines only a
 * system install wants (user, group, chroot, syslog) are dropped, maxconn is 1024 and health checks run
 * every 100 ms; nothing else changes.
 */
export function haproxyConfig(mode: TlsProxyMode, port: number, backendPort: number, pemPath: string): string {
  const text = readFileSync(join(ROOT, 'deploy', 'haproxy.cfg'), 'utf8');
  // Sections start at an unindented line; comments and blank lines belong to the section above.
  const sections: string[] = [];
  for (const line of text.split('\n')) {
    if (/^[a-z]/.test(line)) sections.push(line);
    else if (sections.length > 0) sections[sections.length - 1] += '\n' + line;
  }
  const pick = (head: string): string => {
    const s = sections.filter((x) => x.split('\n')[0].trim() === head);
    if (s.length !== 1) throw new Error(`deploy/haproxy.cfg: expected one "${head}" section, found ${s.length}`);
    return s[0];
  };
  const [fe, be] = SECTIONS[mode];
  // maxconn 20000 needs about 40k descriptors, more than a test machine's hard limit may allow.
  const global = pick('global')
    .replace(/^\s+(user|group|chroot|log) .*\n/gm, '')
    .replace(/^(\s+maxconn )\d+/m, '$11024');
  let frontend = pick(fe);
  frontend = replaceOne(
    frontend,
    /^(\s+bind )\S+( ssl crt )\S+/,
    `$1127.0.0.1:${port}$2${pemPath}`,
    `"bind ... ssl crt ..." in ${fe}`,
  );
  // Checks every 100 ms instead of 2 s, so a check kvgate fails takes its server down (fall 3) within a
  // test's first 300 ms rather than after it has finished.
  const backend = replaceOne(
    pick(be),
    /^(\s+server \S+ )127\.0\.0\.1:\d+/,
    `$1127.0.0.1:${backendPort}`,
    `"server ... 127.0.0.1:<port>" in ${be}`,
  ).replace(/ inter \S+/g, ' inter 100ms');
  return [global, pick('defaults'), frontend, backend].join('\n') + '\n';
}

/** Resolves once a TLS handshake (verified against `caPem`) to 127.0.0.1:`port` completes. */
function handshakeOnce(port: number, caPem: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tlsConnect({ host: '127.0.0.1', port, ca: caPem, servername: 'localhost' });
    s.once('secureConnect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => {
      s.destroy();
      resolve(false);
    });
  });
}

/** One attempt on one port: haproxy running and handshaking, or the reason it is not (its stderr). */
async function tryStart(
  mode: TlsProxyMode,
  backendPort: number,
  pemPath: string,
  caPem: string,
): Promise<TlsProxy | { failed: string; bindFailure: boolean }> {
  const port = await freePort();
  const config = haproxyConfig(mode, port, backendPort, pemPath);
  const file = join(ensureWorkDir(), `haproxy-${mode}-${port}.cfg`);
  writeFileSync(file, config);
  // -db: stay in the foreground, no daemon; the process is the proxy.
  const proc = spawn('haproxy', ['-db', '-f', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  live.add(proc);
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  let exited: number | string | null = null;
  const gone = new Promise<void>((resolve) =>
    proc.once('exit', (code, signal) => {
      live.delete(proc);
      exited = code ?? signal;
      resolve();
    }),
  );
  proc.once('error', (e) => (stderr += `spawn: ${e.message}\n`));
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (exited !== null) {
      const failed = `haproxy exited (${exited}) on port ${port}:\n${stderr}`;
      return { failed, bindFailure: /cannot bind|Address already in use/i.test(stderr) };
    }
    if (await handshakeOnce(port, caPem)) break;
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      await gone;
      return { failed: `haproxy did not accept TLS on port ${port} within 10 s:\n${stderr}`, bindFailure: false };
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    port,
    caPem,
    mode,
    config,
    stop: async () => {
      if (exited === null) {
        proc.kill('SIGKILL');
        await gone;
      }
    },
  };
}

/**
 * haproxy terminating TLS on a free 127.0.0.1 port in front of 127.0.0.1:`backendPort`. A port another
 * process took between choosing and binding is retried with a new one.
 */
export async function startTlsProxy(backendPort: number, mode: TlsProxyMode = 'http'): Promise<TlsProxy> {
  const { caPem, pemPath } = testCertificate();
  let last = '';
  for (let attempt = 0; attempt < 5; attempt++) {
    const r = await tryStart(mode, backendPort, pemPath, caPem);
    if (!('failed' in r)) return r;
    last = r.failed;
    if (!r.bindFailure) break;
  }
  throw new Error(`could not start haproxy: ${last}`);
}
