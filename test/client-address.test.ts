/**
 * ClientAddress (src/security/client-address.ts): the peer unless it is a trusted proxy; then the
 * X-Forwarded-For list walked from the right, or the PROXY v2 address. The address texts are the forms
 * uWS 20.30 gives (measured: "127.0.0.1" on a 127.0.0.1 listener; long-form
 * "0000:0000:0000:0000:0000:ffff:7f00:0001" for an IPv4 client of a "::" listener).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ClientAddress, canonicalAddress, forwardedFor, validateTrustedProxies } from '../src/security/client-address';

const LONG_V4_LOOPBACK = '0000:0000:0000:0000:0000:ffff:7f00:0001';
const LONG_V6_LOOPBACK = '0000:0000:0000:0000:0000:0000:0000:0001';

describe('canonicalAddress', () => {
  it('gives dotted quads for IPv4 and IPv4-mapped, RFC 5952 for IPv6', () => {
    const cases: [string, string][] = [
      ['127.0.0.1', '127.0.0.1'],
      ['0.0.0.0', '0.0.0.0'],
      ['255.255.255.255', '255.255.255.255'],
      [LONG_V4_LOOPBACK, '127.0.0.1'],
      ['::ffff:10.1.2.3', '10.1.2.3'],
      ['::FFFF:0a01:0203', '10.1.2.3'],
      [LONG_V6_LOOPBACK, '::1'],
      ['::', '::'],
      ['2001:0DB8:0000:0000:0000:0000:0000:0005', '2001:db8::5'],
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // first of two equal runs
      ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // a single zero group stays
      ['1::', '1::'],
      ['fe80:0:0:0:0:0:0:0', 'fe80::'],
      ['::1.2.3.4', '::102:304'],
    ];
    for (const [input, want] of cases) assert.equal(canonicalAddress(input), want, input);
  });

  it('refuses what is not an address', () => {
    for (const bad of [
      '',
      ' ',
      'localhost',
      '1.2.3',
      '1.2.3.4.5',
      '256.1.1.1',
      '01.2.3.4', // leading zero: octal to some parsers
      '1.2.3.4:80',
      '[::1]',
      '::1%eth0',
      ':::',
      '1:2:3:4:5:6:7:8:9',
      '1:2:3:4:5:6:7',
      '1::2::3',
      '12345::1',
      '1:',
      ':1',
      '::ffff:1.2.3',
      '1:2:3:4:5:6:7:1.2.3.4',
      'g::1',
      '1.2.3.4 ',
      '0000:0000:0000:0000:0000:0000:0000:0000:0',
    ])
      assert.equal(canonicalAddress(bad), null, JSON.stringify(bad));
  });
});

describe('validateTrustedProxies', () => {
  it('accepts CIDRs and bare addresses of both families', () => {
    assert.deepEqual(
      validateTrustedProxies(
        ['127.0.0.1/32', '10.0.0.0/8', '::1/128', '192.168.1.7', 'fd00::/8', '2001:db8::/32'],
        'p',
      ),
      [],
    );
  });

  it('names every bad entry with its index and why', () => {
    const problems = validateTrustedProxies(
      [
        '10.0.0.0/8',
        'nope',
        '10.0.0.1/8',
        '0.0.0.0/0',
        '::/0',
        '1.2.3.4/33',
        '::1/129',
        7,
        '10.0.0.0/08',
        '2001:db8::1/32',
      ],
      'security.trustedProxies',
    );
    assert.deepEqual(
      problems.map((p) => p.path),
      [1, 2, 3, 4, 5, 6, 7, 8, 9].map((i) => `security.trustedProxies[${i}]`),
    );
    assert.match(problems[0].text, /"nope" is not an IPv4 or IPv6 address/);
    assert.match(problems[1].text, /did you mean "10\.0\.0\.0\/8"/);
    assert.match(problems[2].text, /trusts every address/);
    assert.match(problems[3].text, /trusts every address/);
    assert.match(problems[4].text, /from 1 to 32/);
    assert.match(problems[5].text, /from 1 to 128/);
    assert.match(problems[6].text, /must be a string CIDR, not 7/);
    assert.match(problems[8].text, /did you mean "2001:db8::\/32"/);
  });

  it('refuses a value that is not an array', () => {
    const problems = validateTrustedProxies('127.0.0.1/32', 'security.trustedProxies');
    assert.equal(problems.length, 1);
    assert.equal(problems[0].path, 'security.trustedProxies');
  });

  it('the constructor throws naming each bad entry', () => {
    assert.throws(
      () => new ClientAddress(['10.0.0.0/8', 'x', '::/0']),
      /trustedProxies\[1\][\s\S]*trustedProxies\[2\]/,
    );
  });
});

describe('ClientAddress.isTrusted', () => {
  const ca = new ClientAddress(['127.0.0.1/32', '10.0.0.0/8', '::1/128', '2001:db8:aa::/48']);
  it('matches by range, across text forms, and at the range edges', () => {
    assert.ok(ca.isTrusted('127.0.0.1'));
    assert.ok(ca.isTrusted(LONG_V4_LOOPBACK));
    assert.ok(ca.isTrusted('::ffff:127.0.0.1'));
    assert.ok(!ca.isTrusted('127.0.0.2'));
    assert.ok(ca.isTrusted('10.0.0.0') && ca.isTrusted('10.255.255.255'));
    assert.ok(!ca.isTrusted('11.0.0.0') && !ca.isTrusted('9.255.255.255'));
    assert.ok(ca.isTrusted('::1') && ca.isTrusted(LONG_V6_LOOPBACK));
    assert.ok(!ca.isTrusted('::2'));
    assert.ok(ca.isTrusted('2001:db8:aa:ffff:ffff:ffff:ffff:ffff') && ca.isTrusted('2001:db8:aa::'));
    assert.ok(!ca.isTrusted('2001:db8:ab::') && !ca.isTrusted('2001:db8:a9:ffff::'));
    assert.ok(!ca.isTrusted('garbage') && !ca.isTrusted(''));
  });
  it('an IPv4 range does not match IPv6 addresses that only share low bits', () => {
    assert.ok(!ca.isTrusted('::7f00:1')); // IPv4-compatible, not mapped
    assert.ok(!ca.isTrusted('1::ffff:7f00:1'));
  });
  it('with no trusted proxies nothing is trusted', () => {
    const none = new ClientAddress([]);
    assert.equal(none.trustsAny, false);
    assert.ok(!none.isTrusted('127.0.0.1'));
    assert.equal(none.resolve('127.0.0.1', '6.6.6.6'), '127.0.0.1');
  });
});

describe('ClientAddress.resolve (X-Forwarded-For)', () => {
  const ca = new ClientAddress(['127.0.0.1/32', '10.0.0.0/8', '::1/128']);

  it('an untrusted peer: its own address, whatever header it sends (spoofing ignored)', () => {
    assert.equal(ca.resolve('203.0.113.9', '127.0.0.1'), '203.0.113.9');
    assert.equal(ca.resolve('203.0.113.9', '1.1.1.1, 10.0.0.1'), '203.0.113.9');
    assert.equal(ca.resolve('2001:db8::9', '1.1.1.1'), '2001:db8::9');
    assert.equal(ca.resolve('2001:0db8:0000:0000:0000:0000:0000:0009', undefined), '2001:db8::9');
  });

  it('a trusted peer with no header: the peer, canonical', () => {
    assert.equal(ca.resolve('127.0.0.1', undefined), '127.0.0.1');
    assert.equal(ca.resolve(LONG_V4_LOOPBACK, undefined), '127.0.0.1');
    assert.equal(ca.resolve(LONG_V6_LOOPBACK, ''), '::1');
  });

  it('a trusted peer: the rightmost untrusted entry, never the leftmost blindly', () => {
    assert.equal(ca.resolve('127.0.0.1', '198.51.100.4'), '198.51.100.4');
    // The client wrote "6.6.6.6" itself; the proxy appended what it saw.
    assert.equal(ca.resolve('127.0.0.1', '6.6.6.6, 198.51.100.4'), '198.51.100.4');
    // Trusted hops on the right are skipped.
    assert.equal(ca.resolve('127.0.0.1', '6.6.6.6, 198.51.100.4, 10.1.1.1, 10.2.2.2'), '198.51.100.4');
    assert.equal(ca.resolve(LONG_V4_LOOPBACK, '198.51.100.4,10.1.1.1'), '198.51.100.4');
  });

  it('a client that pretends to be a trusted proxy gains nothing past the first untrusted hop', () => {
    assert.equal(ca.resolve('127.0.0.1', '10.9.9.9, 198.51.100.4'), '198.51.100.4');
    // Every hop trusted: the leftmost one is the client (e.g. inside the trusted network).
    assert.equal(ca.resolve('127.0.0.1', '10.9.9.9, 10.1.1.1'), '10.9.9.9');
  });

  it('garbage stops the walk at the last good hop', () => {
    assert.equal(ca.resolve('127.0.0.1', 'unknown'), '127.0.0.1');
    assert.equal(ca.resolve('127.0.0.1', '198.51.100.4, unknown'), '127.0.0.1');
    assert.equal(ca.resolve('127.0.0.1', '198.51.100.4, evil, 10.1.1.1'), '10.1.1.1');
    assert.equal(ca.resolve('127.0.0.1', '198.51.100.4,'), '127.0.0.1'); // empty entry
    assert.equal(ca.resolve('127.0.0.1', ', 198.51.100.4'), '198.51.100.4'); // garbage left of the answer is not read
    assert.equal(ca.resolve('127.0.0.1', '1.2.3.4:5678'), '127.0.0.1');
    assert.equal(ca.resolve('127.0.0.1', '[2001:db8::1]'), '127.0.0.1');
    assert.equal(ca.resolve('127.0.0.1', 'x'.repeat(10000)), '127.0.0.1');
  });

  it('trims spaces and tabs around entries', () => {
    assert.equal(ca.resolve('127.0.0.1', ' \t198.51.100.4 \t,\t 10.1.1.1 '), '198.51.100.4');
  });

  it('multiple headers joined by forwardedFor are read as one list, the last header rightmost', () => {
    const headers: [string, string][] = [
      ['host', 'x'],
      ['x-forwarded-for', '6.6.6.6'], // the client's own
      ['x-real-ip', '7.7.7.7'],
      ['x-forwarded-for', '198.51.100.4'], // appended by the trusted proxy
    ];
    const req = { forEach: (cb: (k: string, v: string) => void) => headers.forEach(([k, v]) => cb(k, v)) };
    const joined = forwardedFor(req);
    assert.equal(joined, '6.6.6.6, 198.51.100.4');
    assert.equal(ca.resolve('127.0.0.1', joined), '198.51.100.4');
    assert.equal(forwardedFor({ forEach: () => undefined }), undefined);
  });

  it('IPv6 hops and IPv6 answers', () => {
    assert.equal(ca.resolve('::1', '2001:DB8::0:7'), '2001:db8::7');
    assert.equal(ca.resolve(LONG_V6_LOOPBACK, '2001:db8::7, ::1, ::ffff:10.0.0.3'), '2001:db8::7');
    assert.equal(ca.resolve('::1', '::ffff:198.51.100.4'), '198.51.100.4');
  });

  it('a peer text that is no address is returned as is, untrusted', () => {
    assert.equal(ca.resolve('', '198.51.100.4'), '');
    assert.equal(ca.resolve('weird', '198.51.100.4'), 'weird');
  });

  it('returns the header string itself for a whole-string dotted-quad answer (no copy)', () => {
    const peer = '203.0.113.9';
    assert.equal(ca.resolve(peer, undefined), peer);
  });
});

describe('ClientAddress.resolveProxied (PROXY protocol v2)', () => {
  const ca = new ClientAddress(['127.0.0.1/32']);
  it('believes the PROXY address only from a trusted peer', () => {
    assert.equal(ca.resolveProxied('127.0.0.1', '203.0.113.9'), '203.0.113.9');
    assert.equal(ca.resolveProxied(LONG_V4_LOOPBACK, '2001:0db8:0000:0000:0000:0000:0000:0005'), '2001:db8::5');
    // uWS parses a PROXY header from anyone: a direct client's claim is ignored.
    assert.equal(ca.resolveProxied('198.51.100.4', '127.0.0.1'), '198.51.100.4');
  });
  it('no header (or LOCAL, or garbage) from a trusted peer: the peer', () => {
    assert.equal(ca.resolveProxied('127.0.0.1', ''), '127.0.0.1');
    assert.equal(ca.resolveProxied(LONG_V4_LOOPBACK, 'junk'), '127.0.0.1');
  });
});
