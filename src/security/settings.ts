/**
 * The `security` section of the configuration as one type, and its check: browser policy, trusted proxies,
 * credentials and limits, each named at its own path, every bad setting at once. The module stays free of
 * config/ (config/schema.ts imports it), so problems come back as `{path, text}` sentences.
 *
 * One rule spans sections: with `auth.mode: "off"` the gateway serves anyone who can reach it, so it
 * listens on loopback only (the public port and the admin listener), unless `insecurePublic` (the
 * `--insecure-public` flag) says the operator means it. This is Redis's "protected mode".
 */
import { validateAuthOptions, type AuthOptions } from './authenticator';
import { validateBrowserPolicy } from './browser-policy';
import { validateTrustedProxies } from './client-address';
import { validateAddressLimitsSpec, type AddressLimitsSpec } from './address-limits';
import { isPlainObject, validateLimitsSpec, type LimitsSpec } from './tenant-limits';

export interface SecurityLimits {
  /** Per-principal rates of a tenant not named in `tenants`. */
  default: LimitsSpec;
  /** Specs by tenant: each replaces `default` as a whole for that tenant. */
  tenants: Record<string, LimitsSpec>;
  /** Connections per address, per principal, and new connections a second per address. */
  connections: AddressLimitsSpec;
}

export interface SecurityConfig {
  allowedOrigins: string[];
  allowedHosts: string[];
  /** Peers (CIDRs) whose X-Forwarded-For or PROXY header names the client (a TLS terminator). */
  trustedProxies: string[];
  /** Allows `auth.mode: "off"` on a non-loopback address. */
  insecurePublic: boolean;
  auth: AuthOptions;
  limits: SecurityLimits;
}

export interface SecurityProblem {
  path: string;
  text: string;
}

const FIELDS = new Set(['allowedOrigins', 'allowedHosts', 'trustedProxies', 'insecurePublic', 'auth', 'limits']);
const LIMIT_FIELDS = new Set(['default', 'tenants', 'connections']);

/** Where the gateway will listen, for the loopback rule. */
export interface Listeners {
  host: string;
  adminHost: string | null;
}

export function validateSecurity(raw: unknown, listen: Listeners, path = 'security'): SecurityProblem[] {
  if (!isPlainObject(raw)) return [{ path, text: `${path} must be an object of settings` }];
  const out: SecurityProblem[] = [];
  for (const k of Object.keys(raw))
    if (!FIELDS.has(k)) out.push({ path: `${path}.${k}`, text: `unknown setting "${path}.${k}"` });
  out.push(...validateBrowserPolicy({ allowedOrigins: raw.allowedOrigins, allowedHosts: raw.allowedHosts }, path));
  if (raw.trustedProxies !== undefined)
    out.push(...validateTrustedProxies(raw.trustedProxies, `${path}.trustedProxies`));
  if (raw.insecurePublic !== undefined && typeof raw.insecurePublic !== 'boolean')
    out.push({ path: `${path}.insecurePublic`, text: `${path}.insecurePublic must be true or false` });
  const auth = validateAuthOptions(raw.auth, `${path}.auth`);
  for (const p of auth.problems) out.push({ path: p.path, text: `${p.path}: ${p.message}` });
  const limits = raw.limits;
  if (limits !== undefined) {
    if (!isPlainObject(limits))
      out.push({ path: `${path}.limits`, text: `${path}.limits must be an object of settings` });
    else {
      for (const k of Object.keys(limits))
        if (!LIMIT_FIELDS.has(k))
          out.push({ path: `${path}.limits.${k}`, text: `unknown setting "${path}.limits.${k}"` });
      const add = (ps: { path: string; message: string }[]): void => {
        for (const p of ps) out.push({ path: p.path, text: p.message });
      };
      add(validateLimitsSpec(limits.default, `${path}.limits.default`).problems);
      add(validateAddressLimitsSpec(limits.connections, `${path}.limits.connections`).problems);
      const tenants = limits.tenants;
      if (tenants !== undefined) {
        if (!isPlainObject(tenants))
          out.push({ path: `${path}.limits.tenants`, text: `${path}.limits.tenants must be an object of tenants` });
        else
          for (const [name, spec] of Object.entries(tenants))
            add(validateLimitsSpec(spec, `${path}.limits.tenants.${name}`).problems);
      }
    }
  }
  if (isPlainObject(raw.auth) && raw.auth.mode === 'off' && raw.insecurePublic !== true) {
    for (const [where, host] of [
      ['host', listen.host],
      ['admin.host', listen.adminHost],
    ] as const) {
      if (host !== null && typeof host === 'string' && !isLoopbackHost(host))
        out.push({
          path: `${path}.auth.mode`,
          text:
            `${path}.auth.mode is "off" (no authentication) but ${where} is ${JSON.stringify(host)}, not loopback: ` +
            'configure apiKeys or jwt, listen on 127.0.0.1, or pass --insecure-public',
        });
    }
  }
  return out;
}

/** A listen address only this machine can reach. `localhost` counts: it resolves to loopback. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  return h === 'localhost' || h === '::1' || h === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}
