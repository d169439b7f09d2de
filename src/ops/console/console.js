// The kvgate console's page script (served as a file: the page's Content-Security-Policy allows no inline
// script). It polls GET /console/data, keeps the last samples, and turns counters into rates and histogram
// counts into percentiles itself; the key inspector calls /console/key and /console/placement. Every request
// carries `Authorization: Bearer <token>` when a token was typed (kept in sessionStorage, for this tab only).
// Text from the gateway (keys, values, shard names) goes into the page as text nodes only, never as HTML.
'use strict';

(function () {
  const TOKEN = 'kvgate.console.token';
  const KEEP = 120;
  const params = new URLSearchParams(location.search);
  const every = Math.max(250, Number(params.get('interval')) || 1000);
  const samples = [];

  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs, text) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = String(text);
    return e;
  };
  const svg = (tag, attrs) => {
    const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  };

  const token = () => sessionStorage.getItem(TOKEN) || '';
  const headers = () => (token() === '' ? {} : { authorization: `Bearer ${token()}` });

  async function call(method, path, body) {
    const res = await fetch(path, { method, headers: headers(), body, cache: 'no-store' });
    let doc = null;
    try {
      doc = await res.json();
    } catch {
      doc = { error: { code: 'BAD_ANSWER', message: `HTTP ${res.status}, not JSON` } };
    }
    return { status: res.status, doc };
  }

  // ---- numbers ----

  const sum = (xs) => xs.reduce((a, b) => a + b, 0);

  /** Histogram `a` minus `b` (same bounds), bucket by bucket: what was observed between two samples. */
  function diff(a, b) {
    return {
      bounds: a.bounds,
      counts: a.counts.map((c, i) => c - (b ? b.counts[i] : 0)),
      sum: a.sum - (b ? b.sum : 0),
      count: a.count - (b ? b.count : 0),
    };
  }

  /** Adds histograms of the same bounds. */
  function add(hs) {
    const out = { bounds: hs[0].bounds, counts: hs[0].counts.map(() => 0), sum: 0, count: 0 };
    for (const h of hs) {
      h.counts.forEach((c, i) => (out.counts[i] += c));
      out.sum += h.sum;
      out.count += h.count;
    }
    return out;
  }

  /**
   * The q-quantile of a bucketed histogram, as Prometheus's histogram_quantile: linear inside the bucket
   * that holds it; in the +Inf bucket, the highest bound. Null when nothing was observed.
   */
  function quantile(h, q) {
    if (h.count <= 0) return null;
    const rank = q * h.count;
    let acc = 0;
    for (let i = 0; i < h.counts.length; i++) {
      const c = h.counts[i];
      if (acc + c >= rank && c > 0) {
        if (i >= h.bounds.length) return h.bounds[h.bounds.length - 1];
        const lo = i === 0 ? 0 : h.bounds[i - 1];
        return lo + (h.bounds[i] - lo) * ((rank - acc) / c);
      }
      acc += c;
    }
    return h.bounds[h.bounds.length - 1];
  }

  const fmt = (v, unit) => {
    if (v === null || !Number.isFinite(v)) return '–';
    if (unit === 'B') {
      const u = ['B', 'KiB', 'MiB', 'GiB'];
      let i = 0;
      while (Math.abs(v) >= 1024 && i < u.length - 1) {
        v /= 1024;
        i++;
      }
      return `${v.toFixed(i === 0 ? 0 : 1)} ${u[i]}`;
    }
    if (unit === 'ms') return `${v < 1 ? v.toFixed(3) : v.toFixed(1)} ms`;
    if (Math.abs(v) >= 1e6) return `${(v / 1e6).toFixed(2)}M`;
    if (Math.abs(v) >= 1e4) return `${(v / 1e3).toFixed(1)}k`;
    return Number.isInteger(v) || Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2);
  };

  // ---- charts ----

  /**
   * A chart: `series(prev, cur, dt)` gives [{name, value}] for one step (value null: nothing to show for
   * it). Values of every step are kept with the chart, so a series that appears later (a new shard) starts
   * where it appears.
   */
  const charts = [];
  function chart(id, title, unit, series) {
    const box = el('div', { class: 'chart', id: `chart-${id}` });
    box.append(el('h3', {}, title));
    const plot = svg('svg', { viewBox: '0 0 300 100', preserveAspectRatio: 'none', role: 'img', 'aria-label': title });
    const legend = el('div', { class: 'legend' });
    box.append(plot, legend);
    $('charts').append(box);
    charts.push({ id, unit, series, box, plot, legend, steps: [] });
  }

  function drawChart(c) {
    const names = [];
    for (const s of c.steps) for (const p of s) if (!names.includes(p.name)) names.push(p.name);
    let max = 0;
    for (const s of c.steps) for (const p of s) if (p.value !== null && p.value > max) max = p.value;
    max = max <= 0 ? 1 : max * 1.1;
    const n = c.steps.length;
    // The steps kept fill the width (the newest at the right edge); past KEEP the oldest fall off.
    const x = (i) => (n <= 1 ? 300 : (i / (n - 1)) * 300);
    const y = (v) => 100 - (v / max) * 92;
    c.plot.replaceChildren();
    for (const g of [0.25, 0.5, 0.75])
      c.plot.append(svg('line', { class: 'grid', x1: 0, x2: 300, y1: y(max * g), y2: y(max * g) }));
    const top = svg('text', { class: 'axis', x: 2, y: 9 });
    top.textContent = fmt(max, c.unit);
    c.plot.append(top);
    c.legend.replaceChildren();
    let drawn = 0;
    names.forEach((name, k) => {
      const cls = `s${k % 8}`;
      // one polyline per run of steps with a value (a step without one breaks the line)
      let run = [];
      const flush = () => {
        if (run.length > 0) c.plot.append(svg('polyline', { class: cls, 'data-series': name, points: run.join(' ') }));
        drawn += run.length;
        run = [];
      };
      let last = null;
      c.steps.forEach((s, i) => {
        const p = s.find((q) => q.name === name);
        if (p === undefined || p.value === null) return flush();
        run.push(`${x(i).toFixed(1)},${y(p.value).toFixed(1)}`);
        last = p.value;
      });
      flush();
      const item = el('span', { 'data-series': name });
      item.append(el('span', { class: `sw k${k % 8}` }), document.createTextNode(`${name} ${fmt(last, c.unit)}`));
      c.legend.append(item);
    });
    c.box.dataset.steps = String(n);
    c.box.dataset.points = String(drawn);
  }

  const allShards = (d) => d.pools.flatMap((p) => p.shards.map((s) => ({ pool: p.name, ...s })));
  const shardName = (d, s) => (d.pools.length > 1 ? `${s.pool}/${s.shard}` : s.shard);
  const poolHist = (d, field) => add(d.pools.map((p) => p[field]));
  const byShard = (prev, cur) => {
    const was = new Map(allShards(prev).map((s) => [`${s.pool} ${s.shard}`, s]));
    return allShards(cur).map((s) => ({ s, was: was.get(`${s.pool} ${s.shard}`) }));
  };
  const rttQuantile = (prev, cur, q) =>
    byShard(prev, cur).map(({ s, was }) => {
      const v = quantile(diff(s.rtt, was && was.rtt), q);
      return { name: shardName(cur, s), value: v === null ? null : v * 1000 };
    });

  chart('keys', 'Keys per second', '', (prev, cur, dt) => [
    {
      name: 'client ops',
      value: (sum(cur.pools.map((p) => p.clientKeys)) - sum(prev.pools.map((p) => p.clientKeys))) / dt,
    },
    {
      name: 'keys to shards',
      value: (sum(allShards(cur).map((s) => s.keys)) - sum(allShards(prev).map((s) => s.keys))) / dt,
    },
  ]);
  chart('flush-keys', 'Keys per shard flush (mean, p99)', '', (prev, cur) => {
    const h = diff(poolHist(cur, 'flushKeys'), poolHist(prev, 'flushKeys'));
    return [
      { name: 'mean', value: h.count > 0 ? h.sum / h.count : null },
      { name: 'p99', value: quantile(h, 0.99) },
    ];
  });
  chart('flush-hold', 'Flush hold time (mean, p99)', 'ms', (prev, cur) => {
    const h = diff(poolHist(cur, 'flushHold'), poolHist(prev, 'flushHold'));
    const p99 = quantile(h, 0.99);
    return [
      { name: 'mean', value: h.count > 0 ? (h.sum / h.count) * 1000 : null },
      { name: 'p99', value: p99 === null ? null : p99 * 1000 },
    ];
  });
  chart('coalescing', 'Coalescing ratio (client ops per key sent)', '', (prev, cur) => {
    const ops = sum(cur.pools.map((p) => p.clientKeys)) - sum(prev.pools.map((p) => p.clientKeys));
    const sent = sum(allShards(cur).map((s) => s.keys)) - sum(allShards(prev).map((s) => s.keys));
    return [{ name: 'ratio', value: sent > 0 ? ops / sent : null }];
  });
  chart('rtt-p50', 'Shard round trip p50', 'ms', (prev, cur) => rttQuantile(prev, cur, 0.5));
  chart('rtt-p99', 'Shard round trip p99', 'ms', (prev, cur) => rttQuantile(prev, cur, 0.99));
  chart('connections', 'Client connections', '', (_prev, cur) => [
    { name: 'WebSocket', value: cur.connections.ws },
    { name: 'HTTP', value: cur.connections.http },
  ]);
  chart('buffered', 'Bytes buffered for clients', 'B', (_prev, cur) => [{ name: 'used', value: cur.buffered.used }]);
  chart('memory', 'Process memory', 'B', (_prev, cur) => [
    { name: 'rss', value: cur.memory.rss },
    { name: 'heap used', value: cur.memory.heapUsed },
    { name: 'external', value: cur.memory.external },
  ]);

  // ---- health ----

  function cell(row, text, cls) {
    const td = el('td', cls ? { class: cls } : {}, text);
    row.append(td);
    return td;
  }

  function drawHealth(d) {
    const pools = $('pools').tBodies[0];
    pools.replaceChildren();
    for (const p of d.pools) {
      const up = p.shards.filter((s) => s.up).length;
      const status = up === p.shards.length ? 'up' : up === 0 ? 'down' : 'degraded';
      const tr = el('tr', { 'data-pool': p.name });
      cell(tr, p.name + (p.name === d.defaultPool ? ' (default)' : ''));
      cell(tr, p.backend);
      cell(tr, status, status);
      cell(tr, `${up} / ${p.shards.length}`, 'n');
      cell(tr, p.prefixes.length === 0 ? '–' : p.prefixes.join(' '));
      pools.append(tr);
    }
    const shards = $('shards').tBodies[0];
    shards.replaceChildren();
    for (const s of allShards(d)) {
      const tr = el('tr', { 'data-pool': s.pool, 'data-shard': s.shard });
      cell(tr, s.pool);
      cell(tr, s.shard);
      const state = s.ejected ? 'ejected' : s.up ? 'up' : 'down';
      cell(tr, state, state);
      for (const v of [s.reconnects, s.resets, s.timeouts, s.retries, s.inflightBatches, s.keys, s.flushes])
        cell(tr, fmt(v), 'n');
      shards.append(tr);
    }
    const spread = $('spread');
    spread.replaceChildren();
    for (const p of d.pools) {
      if (p.ring === null) continue;
      const t = el('table', { 'data-pool': p.name });
      t.append(el('caption', {}, `pool ${p.name}`));
      const head = el('tr');
      for (const h of ['server', 'points', 'share']) head.append(el('th', {}, h));
      t.append(head);
      for (const r of p.ring) {
        const tr = el('tr');
        cell(tr, r.server);
        cell(tr, r.points, 'n');
        cell(tr, `${(r.share * 100).toFixed(1)} %`, 'n');
        t.append(tr);
      }
      spread.append(t);
    }
  }

  // ---- polling ----

  function status(text, error) {
    $('status').textContent = text;
    $('status').classList.toggle('error', error);
  }

  /** A supervisor's data carries `workers` (summed over them): how many answered, and why one did not. */
  function workersText(d) {
    if (d.workers === undefined) return '';
    const ok = d.workers.filter((w) => w.error === undefined).length;
    const bad = d.workers.filter((w) => w.error !== undefined).map((w) => `${w.name}: ${w.error}`);
    return `; ${ok} of ${d.workers.length} workers answered${bad.length === 0 ? '' : ` (${bad.join('; ')})`}`;
  }

  async function poll() {
    try {
      const { status: code, doc } = await call('GET', '/console/data');
      if (code !== 200) {
        const e = doc && doc.error ? `${doc.error.code}: ${doc.error.message}` : `HTTP ${code}`;
        status(`${code} ${e}${code === 401 || code === 403 ? ' (type an admin token above)' : ''}`, true);
        return;
      }
      const prev = samples[samples.length - 1];
      samples.push(doc);
      if (samples.length > KEEP + 1) samples.shift();
      if (prev !== undefined) {
        const dt = Math.max(0.001, (doc.at - prev.at) / 1000);
        for (const c of charts) {
          c.steps.push(c.series(prev, doc, dt));
          if (c.steps.length > KEEP) c.steps.shift();
        }
      }
      for (const c of charts) drawChart(c);
      drawHealth(doc);
      status(
        `generation ${doc.generation}${doc.draining ? ', draining' : ''}${workersText(doc)}; ` +
          `updated ${new Date(doc.at).toLocaleTimeString()}`,
        doc.workers !== undefined && doc.workers.some((w) => w.error !== undefined),
      );
    } catch (e) {
      status(`cannot reach the admin listener: ${e.message}`, true);
    } finally {
      setTimeout(poll, every);
    }
  }

  // ---- key inspector ----

  function show(rows) {
    const dl = $('result');
    dl.replaceChildren();
    for (const [name, value, cls] of rows) {
      dl.append(el('dt', {}, name));
      dl.append(el('dd', { 'data-field': name, ...(cls ? { class: cls } : {}) }, value));
    }
  }

  function placementRows(doc) {
    if (!doc.pool) return [];
    const rows = [
      ['pool', `${doc.pool} (${doc.backend})`],
      ['route', doc.route.why],
      ['shard', `${doc.shard.label} (#${doc.shard.index}, ${doc.shard.up ? 'up' : 'down'})`],
    ];
    if (doc.ketama)
      rows.push(
        ['key hash', `${doc.ketama.hash}: ${doc.ketama.keyHashHex} (${doc.ketama.keyHash})`],
        [
          'ring point',
          `#${doc.ketama.pointIndex} of ${doc.ketama.points}: ${doc.ketama.pointHex} → ${doc.ketama.ringServer}`,
        ],
        ['why', doc.ketama.why],
      );
    return rows;
  }

  async function inspect(op) {
    const key = $('key').value;
    if (key === '') return show([['error', 'type a key', 'error']]);
    const q = `key=${encodeURIComponent(key)}`;
    let r;
    try {
      if (op === 'get') r = await call('GET', `/console/key?${q}`);
      else if (op === 'where') r = await call('GET', `/console/placement?${q}`);
      else if (op === 'del') r = await call('DELETE', `/console/key?${q}`);
      else {
        const t = `&ttl=${encodeURIComponent($('ttl').value || '0')}&flags=${encodeURIComponent($('flags').value || '0')}`;
        r = await call('PUT', `/console/key?${q}${t}`, new TextEncoder().encode($('value').value));
      }
    } catch (e) {
      return show([['error', `cannot reach the admin listener: ${e.message}`, 'error']]);
    }
    const d = r.doc;
    const rows = [['key', d.key === undefined ? key : d.key]];
    if (d.error) rows.push(['error', `${r.status} ${d.error.code}: ${d.error.message}`, 'error']);
    else if (op === 'get')
      rows.push(
        d.found ? ['value', d.encoding === 'base64' ? `(base64) ${d.value}` : d.value] : ['value', '(not found)'],
        ...(d.found
          ? [
              ['flags', String(d.flags)],
              ['bytes', String(d.bytes)],
            ]
          : []),
      );
    else if (op === 'set') rows.push(['stored', `${d.bytes} bytes, ttl ${d.ttl}, flags ${d.flags}`]);
    else if (op === 'del') rows.push(['deleted', d.deleted ? 'yes' : 'no such key']);
    show([...rows, ...placementRows(d)]);
  }

  // ---- wiring ----

  document.addEventListener('DOMContentLoaded', () => {
    $('token').value = token();
    $('auth').addEventListener('submit', (e) => {
      e.preventDefault();
      sessionStorage.setItem(TOKEN, $('token').value.trim());
    });
    $('forget').addEventListener('click', () => {
      sessionStorage.removeItem(TOKEN);
      $('token').value = '';
    });
    $('inspector').addEventListener('submit', (e) => {
      e.preventDefault();
      void inspect('get');
    });
    for (const op of ['set', 'del', 'where']) $(op).addEventListener('click', () => void inspect(op));
    void poll();
  });
})();
