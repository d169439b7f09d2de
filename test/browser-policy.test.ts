/**
 * BrowserPolicy (src/security/browser-policy.ts) on its own: origin patterns, the Host allow-list against
 * DNS rebinding, CORS answers, the CSRF rule, and validation naming every bad entry.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  BrowserPolicy,
  BrowserPolicyError,
  CORS_EXPOSED_HEADERS,
  CORS_REQUEST_HEADERS,
  isSimpleContentType,
  validateBrowserPolicy,
} from '../src/security/browser-policy';

const policy = (allowedOrigins: string[], allowedHosts: string[] = [], listenHost?: string): BrowserPolicy =>
  new BrowserPolicy({ allowedOrigins, allowedHosts, listenHost });

/** Asserts each origin's verdict, naming the one that differs. */
function origins(p: BrowserPolicy, want: Record<string, boolean>): void {
  for (const [o, ok] of Object.entries(want)) assert.equal(p.checkOrigin(o), ok, `checkOrigin(${JSON.stringify(o)})`);
}
function hosts(p: BrowserPolicy, want: Record<string, boolean>): void {
  for (const [h, ok] of Object.entries(want)) assert.equal(p.checkHost(h), ok, `checkHost(${JSON.stringify(h)})`);
}

describe('BrowserPolicy.checkOrigin', () => {
  it("no Origin (absent, or uWS's empty string) is allowed; with nothing listed every browser origin is refused", () => {
    const p = policy([]);
    assert.equal(p.checkOrigin(undefined), true);
    assert.equal(p.checkOrigin(''), true);
    origins(p, {
      'http://127.0.0.1:8080': false,
      'http://localhost': false,
      'https://example.com': false,
      null: false,
    });
  });

  it('exact entries: case, default ports and spelling of the entry are normalised', () => {
    const p = policy([
      'HTTPS://App.Example.COM:443',
      'http://127.0.0.1:8080',
      'http://localhost',
      'http://[0:0::1]:9000',
    ]);
    origins(p, {
      'https://app.example.com': true,
      'https://APP.example.com': true,
      'https://app.example.com:443': true,
      'http://app.example.com': false, // another scheme
      'https://app.example.com:8443': false, // another port
      'http://127.0.0.1:8080': true,
      'http://127.0.0.1': false,
      'http://127.0.0.1:8081': false,
      'http://localhost': true,
      'http://localhost:80': true,
      'http://localhost:3000': false,
      'http://[::1]:9000': true,
      'http://[::1]': false,
    });
  });

  it('refuses what is not a serialised origin: trailing slash, path, user info, trailing dot, bad port', () => {
    const p = policy(['https://example.com']);
    origins(p, {
      'https://example.com': true,
      'https://example.com/': false,
      'https://example.com/x': false,
      'https://example.com?': false,
      'https://user@example.com': false,
      'https://example.com.': false,
      'https://example.com:99999': false,
      'https://example.com:0': false,
      'https://example.com:': false,
      ' https://example.com': false,
      'example.com': false,
      'https://example.com, https://evil.com': false,
      'constructor://example.com': false,
      'tostring://example.com': false,
    });
  });

  it('look-alikes are refused: a listed name as a label of another, or as a substring', () => {
    const p = policy(['https://example.com', 'https://*.example.com']);
    origins(p, {
      'https://example.com.evil.com': false,
      'https://evilexample.com': false,
      'https://example.com.': false,
      'https://xexample.com': false,
      'https://evil.com#.example.com': false,
      'https://evil.com/.example.com': false,
      'https://example.co': false,
      'https://example.comm': false,
    });
  });

  it('subdomain wildcards match names below the domain only, with the scheme and port of the entry', () => {
    const p = policy(['https://*.example.com', 'http://*.dev.test:8080']);
    origins(p, {
      'https://a.example.com': true,
      'https://a.b.example.com': true,
      'https://A.EXAMPLE.COM': true,
      'https://a.example.com:443': true,
      'https://example.com': false, // the domain itself is not below it
      'https://.example.com': false, // empty labels are no name
      'https://..example.com': false,
      'https://a..example.com': false,
      'https://-a.example.com': false,
      'http://a.example.com': false,
      'https://a.example.com:8443': false,
      'https://a.example.com.evil.com': false,
      'https://aexample.com': false,
      'http://x.dev.test:8080': true,
      'http://x.dev.test': false,
    });
  });

  it('null and file:// origins: refused unless null is listed, and * does not cover them', () => {
    origins(policy(['*']), { null: false, NULL: false, 'file://': false, 'file:///etc/passwd': false });
    origins(policy(['https://example.com']), { null: false, 'file://': false });
    origins(policy(['null']), { null: true, 'file://': true, 'https://example.com': false });
  });

  it('* allows any origin (but null), whatever its scheme', () => {
    origins(policy(['*']), {
      'https://anything.example': true,
      'http://127.0.0.1:1': true,
      'chrome-extension://abcdef': true,
      'not an origin': false,
    });
  });

  it('IDN entries compare as the punycode browsers send', () => {
    origins(policy(['https://bücher.example']), {
      'https://xn--bcher-kva.example': true,
      'https://bucher.example': false,
    });
  });
});

describe('BrowserPolicy.checkHost (DNS rebinding)', () => {
  it('default (nothing listed): IP literals, localhost and a named listen host; a rebinding name is refused', () => {
    const p = policy([], [], 'KV.internal');
    hosts(p, {
      '127.0.0.1:8080': true,
      '127.0.0.1': true,
      '10.1.2.3:80': true,
      '[::1]:8080': true,
      '[::1]': true,
      '[::ffff:127.0.0.1]:8080': true,
      'localhost:8080': true,
      LOCALHOST: true,
      'localhost.:8080': true,
      'kv.internal:8080': true,
      // An attacker's name that resolves to 127.0.0.1 by the time the page asks:
      'evil.example:8080': false,
      'evil.example': false,
      '127.0.0.1.evil.example:8080': false,
      'localhost.evil.example': false,
      'evil.localhost:8080': false,
      'x.kv.internal': false,
      // Not a Host a browser sends:
      '': false,
      '[::1': false,
      '[evil.example]:80': false,
      '::1': false,
      '127.0.0.1:99999': false,
      'a b': false,
    });
    assert.equal(p.checkHost(undefined), false);
  });

  it('a wildcard listen address adds no name', () => {
    hosts(policy([], [], '0.0.0.0'), { '0.0.0.0:1': true, 'evil.example': false });
    hosts(policy([], [], '::'), { 'evil.example': false, localhost: true });
  });

  it('listed hosts replace the default: with port, without port, IPv6, wildcards, case', () => {
    const p = policy(
      [],
      ['kv.example.com', 'api.example.com:8080', '[::1]:9000', '::2', '*.svc.local', 'LB.Example:443'],
    );
    hosts(p, {
      'kv.example.com': true,
      'kv.example.com:1234': true, // no port in the entry: any port
      'KV.EXAMPLE.COM:80': true,
      'api.example.com:8080': true,
      'api.example.com:8081': false,
      'api.example.com': false,
      '[::1]:9000': true,
      '[::1]:9001': false,
      '[::2]:5': true,
      'a.svc.local:7000': true,
      'svc.local': false,
      'lb.example': true, // a browser leaves out :443
      'lb.example:443': true,
      'lb.example:444': false,
      // The default no longer applies once hosts are listed:
      '127.0.0.1:8080': false,
      'localhost:8080': false,
      'evil.example': false,
    });
  });

  it('* turns the check off', () => {
    hosts(policy([], ['*']), { 'evil.example:1': true, '': true });
    assert.equal(policy([], ['*']).checkHost(undefined), true);
  });
});

describe('BrowserPolicy CORS', () => {
  const p = policy(['https://app.example.com', 'https://*.example.org'], [], undefined);
  const header = (hs: [string, string][], name: string): string | undefined => hs.find(([k]) => k === name)?.[1];

  it('a listed origin gets 204 with the origin echoed (never *), methods, headers, max-age and Vary', () => {
    const a = p.preflight('https://app.example.com', 'POST', 'content-type,accept');
    assert.equal(a.status, 204);
    assert.equal(header(a.headers, 'access-control-allow-origin'), 'https://app.example.com');
    assert.equal(header(a.headers, 'access-control-allow-methods'), 'GET, PUT, DELETE, POST');
    assert.deepEqual(
      header(a.headers, 'access-control-allow-headers')
        ?.split(',')
        .map((s) => s.trim()),
      [...CORS_REQUEST_HEADERS],
    );
    assert.equal(header(a.headers, 'access-control-max-age'), '600');
    assert.match(header(a.headers, 'vary') ?? '', /^Origin\b/);
    assert.equal(header(a.headers, 'access-control-allow-credentials'), undefined);
    const w = p.preflight('https://x.example.org', 'PUT', '');
    assert.equal(w.status, 204);
    assert.equal(header(w.headers, 'access-control-allow-origin'), 'https://x.example.org');
  });

  it('even with * listed the origin is echoed, not *', () => {
    const a = policy(['*']).preflight('https://any.example', 'DELETE', undefined);
    assert.equal(a.status, 204);
    assert.equal(header(a.headers, 'access-control-allow-origin'), 'https://any.example');
    assert.deepEqual(policy(['*']).corsHeaders('https://any.example')[0], [
      'access-control-allow-origin',
      'https://any.example',
    ]);
  });

  it('refused with 403 and no CORS header: unlisted origin, null, no origin, other methods, other headers', () => {
    const cases: [string | undefined, string | undefined, string | undefined][] = [
      ['https://evil.example', 'POST', 'content-type'],
      ['https://app.example.com.evil.example', 'GET', ''],
      ['null', 'GET', ''],
      [undefined, 'GET', ''],
      ['', 'GET', ''],
      ['https://app.example.com', 'PATCH', ''],
      ['https://app.example.com', 'HEAD', ''],
      ['https://app.example.com', 'post', ''], // browsers send the method uppercased
      ['https://app.example.com', undefined, ''],
      ['https://app.example.com', 'PUT', 'content-type, x-evil'],
      ['https://app.example.com', 'PUT', 'cookie'],
    ];
    for (const [o, m, h] of cases) {
      const a = p.preflight(o, m, h);
      assert.equal(a.status, 403, `preflight(${o}, ${m}, ${h})`);
      assert.equal(a.headers.filter(([k]) => k.startsWith('access-control-')).length, 0);
    }
  });

  it('request headers are matched case-insensitively, with spaces and empty items', () => {
    assert.equal(p.preflight('https://app.example.com', 'PUT', ' Authorization , X-KV-Flags,,Accept').status, 204);
  });

  it('corsHeaders: listed origin echoed with Vary and the exposed headers; others only Vary', () => {
    const hs = p.corsHeaders('https://app.example.com');
    assert.equal(header(hs, 'access-control-allow-origin'), 'https://app.example.com');
    assert.equal(header(hs, 'vary'), 'Origin');
    const exposed = header(hs, 'access-control-expose-headers')?.split(', ');
    assert.deepEqual(exposed, [...CORS_EXPOSED_HEADERS]);
    assert.ok(exposed?.includes('x-kv-flags') && exposed.includes('retry-after'));
    for (const o of ['https://evil.example', 'null', undefined, ''])
      assert.deepEqual(p.corsHeaders(o), [['vary', 'Origin']], `corsHeaders(${o})`);
  });

  it('the shared header tuples cannot be changed by a caller', () => {
    const hs = p.corsHeaders(undefined);
    assert.throws(() => {
      hs[0][1] = '*';
    }, TypeError);
    assert.deepEqual(p.corsHeaders(undefined), [['vary', 'Origin']]);
    const refused = p.preflight('https://evil.example', 'GET', '');
    assert.throws(() => refused.headers.push(['access-control-allow-origin', '*']), TypeError);
  });

  it('max-age is configurable and checked', () => {
    const a = new BrowserPolicy({ allowedOrigins: ['https://a.example'], allowedHosts: [], maxAgeSeconds: 7200 });
    assert.equal(header(a.preflight('https://a.example', 'GET', '').headers, 'access-control-max-age'), '7200');
    assert.throws(
      () => new BrowserPolicy({ allowedOrigins: [], allowedHosts: [], maxAgeSeconds: -1 }),
      BrowserPolicyError,
    );
  });
});

describe('CSRF: simple content types and checkRequest', () => {
  it('isSimpleContentType: the three safelisted essences, any case and parameters; absent or empty too', () => {
    for (const ct of [
      'text/plain',
      'text/plain;charset=UTF-8',
      'TEXT/PLAIN ; charset=ndjson',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=----x',
      ' text/plain',
      '',
      undefined,
    ])
      assert.equal(isSimpleContentType(ct), true, `${ct} is simple`);
    for (const ct of [
      'application/x-ndjson',
      'application/msgpack',
      'application/x-msgpack',
      'application/json',
      'text/plainx',
      'text/html',
      'application/octet-stream',
      'multipart/mixed',
    ])
      assert.equal(isSimpleContentType(ct), false, `${ct} is not simple`);
  });

  const p = policy(['https://app.example.com']);
  const gw = '127.0.0.1:8080';

  it('the Host is checked first, for every request, Origin or not', () => {
    assert.equal(p.checkRequest('get', 'evil.example:8080', undefined, undefined), 'host');
    assert.equal(p.checkRequest('get', 'evil.example:8080', 'https://app.example.com', undefined), 'host');
    assert.equal(p.checkRequest('get', gw, '', ''), null);
  });

  it('an unlisted Origin is refused whatever the method or content type (upgrades are GETs)', () => {
    for (const m of ['get', 'put', 'delete', 'post', 'options', 'GET'])
      for (const ct of ['', 'text/plain', 'application/x-ndjson'])
        assert.equal(p.checkRequest(m, gw, 'https://evil.example', ct), 'origin', `${m} ${ct}`);
    assert.equal(p.checkRequest('get', gw, 'null', ''), 'origin');
  });

  it('a listed origin: a simple-typed POST is refused (it skipped the preflight); a text/plain PUT is fine', () => {
    const o = 'https://app.example.com';
    assert.equal(p.checkRequest('post', gw, o, 'text/plain;charset=UTF-8'), 'simple-write');
    assert.equal(p.checkRequest('POST', gw, o, 'application/x-www-form-urlencoded'), 'simple-write');
    assert.equal(p.checkRequest('post', gw, o, 'multipart/form-data; boundary=x'), 'simple-write');
    assert.equal(p.checkRequest('post', gw, o, ''), 'simple-write');
    assert.equal(p.checkRequest('post', gw, o, 'application/x-ndjson'), null);
    assert.equal(p.checkRequest('post', gw, o, 'application/msgpack'), null);
    assert.equal(p.checkRequest('put', gw, o, 'text/plain'), null);
    assert.equal(p.checkRequest('get', gw, o, ''), null);
    assert.equal(p.checkRequest('delete', gw, o, ''), null);
  });

  it('no Origin: a program, not refused here even with a simple type (curl --data-binary)', () => {
    assert.equal(p.checkRequest('post', gw, undefined, 'application/x-www-form-urlencoded'), null);
    assert.equal(p.checkRequest('put', gw, '', 'application/x-www-form-urlencoded'), null);
  });
});

describe('validateBrowserPolicy', () => {
  it('accepts good sections, an empty one, and none', () => {
    assert.deepEqual(validateBrowserPolicy(undefined, 'security'), []);
    assert.deepEqual(validateBrowserPolicy({}, 'security'), []);
    assert.deepEqual(
      validateBrowserPolicy(
        {
          allowedOrigins: [
            '*',
            'null',
            'https://a.example',
            'http://127.0.0.1:8080',
            'https://*.b.example:8443',
            'http://[::1]:1',
          ],
          allowedHosts: ['*', 'a.example', 'a.example:80', '127.0.0.1', '[::1]:8080', '::1', '*.svc.local'],
          other: 'not looked at',
        },
        'security',
      ),
      [],
    );
  });

  it('names every bad entry at once, each with its path and why', () => {
    const bad = {
      allowedOrigins: [
        'https://ok.example', // 0: fine
        'example.com', // 1: no scheme
        'ftp://example.com', // 2: scheme
        'ws://example.com', // 3: a WebSocket URL
        'https://example.com/', // 4: trailing slash
        'https://example.com/app', // 5: path
        'https://ex*.com', // 6: wildcard inside a label
        'https://a.*.example.com', // 7: wildcard not first
        '*://example.com', // 8: wildcard scheme
        'https://*.com', // 9: a whole TLD
        'https://example.com:70000', // 10: port
        'file://', // 11: file
        'https://user@example.com', // 12: user info
        42, // 13: not a string
        '', // 14: empty
        'https://*.127.0.0.1', // 15: wildcard over an address
        'https://example.com.', // 16: trailing dot
        'https://127.1', // 17: not a canonical address
        'https://exa mple.com', // 18: space
        'constructor://example.com', // 19: not a scheme, whatever Object.prototype has
      ],
      allowedHosts: [
        'ok.example',
        'http://a.example',
        'a.example/x',
        'a.*.example',
        'a.example:0',
        '',
        7,
        '[::1',
        'a b',
      ],
    };
    const problems = validateBrowserPolicy(bad, 'security');
    const paths = problems.map((p) => p.path);
    const wantOrigins = Array.from({ length: 19 }, (_, i) => `security.allowedOrigins[${i + 1}]`);
    const wantHosts = Array.from({ length: 8 }, (_, i) => `security.allowedHosts[${i + 1}]`);
    assert.deepEqual(paths, [...wantOrigins, ...wantHosts]);
    const text = (path: string): string => problems.find((p) => p.path === path)!.text;
    assert.match(text('security.allowedOrigins[1]'), /"example\.com" needs a scheme/);
    assert.match(text('security.allowedOrigins[2]'), /only http and https/);
    assert.match(text('security.allowedOrigins[3]'), /WebSocket URL.*http:\/\//);
    assert.match(text('security.allowedOrigins[4]'), /trailing slash.*write https:\/\/example\.com$/);
    assert.match(text('security.allowedOrigins[5]'), /path/);
    assert.match(text('security.allowedOrigins[6]'), /wildcard out of place/);
    assert.match(text('security.allowedOrigins[7]'), /wildcard out of place/);
    assert.match(text('security.allowedOrigins[8]'), /wildcard in its scheme/);
    assert.match(text('security.allowedOrigins[9]'), /top-level domain/);
    assert.match(text('security.allowedOrigins[10]'), /port outside/);
    assert.match(text('security.allowedOrigins[11]'), /list null/);
    assert.match(text('security.allowedOrigins[13]'), /must be a string/);
    assert.match(text('security.allowedHosts[1]'), /has a scheme/);
    assert.match(text('security.allowedHosts[3]'), /wildcard out of place/);
  });

  it('wrong shapes', () => {
    assert.deepEqual(validateBrowserPolicy([], 'security'), [{ path: 'security', text: 'security must be an object' }]);
    assert.deepEqual(validateBrowserPolicy({ allowedOrigins: 'https://a.example' }, 's'), [
      { path: 's.allowedOrigins', text: 's.allowedOrigins must be an array of strings' },
    ]);
  });

  it('the constructor refuses what validation refuses, listing every problem', () => {
    assert.throws(
      () => new BrowserPolicy({ allowedOrigins: ['https://a.example/', 'ftp://b'], allowedHosts: ['http://c'] }),
      (e: unknown) => e instanceof BrowserPolicyError && e.problems.length === 3 && /trailing slash/.test(e.message),
    );
  });
});
