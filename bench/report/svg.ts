/**
 * Hand-built SVG charts for RESULTS.md: grouped bar charts and line charts (optionally with a second
 * y axis), with axes, ticks, labels, a legend and min-max whiskers. No dependencies.
 */
const W = 760;
const H = 400;
const M = { top: 48, right: 70, bottom: 72, left: 78 };
export const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];

export interface BarDatum {
  name: string;
  value: number;
  min?: number;
  max?: number;
  color?: string;
}

export interface BarGroup {
  label: string;
  bars: BarDatum[];
}

export interface BarChart {
  title: string;
  yLabel: string;
  groups: BarGroup[];
  /** Draw a dashed horizontal line (e.g. a target). */
  refLine?: { value: number; label: string };
  log?: boolean;
}

export interface LinePoint {
  x: number;
  y: number;
  min?: number;
  max?: number;
}

export interface LineSeries {
  name: string;
  points: LinePoint[];
  color?: string;
  /** Plot against the right-hand axis. */
  right?: boolean;
  dashed?: boolean;
}

export interface LineChart {
  title: string;
  xLabel: string;
  yLabel: string;
  y2Label?: string;
  /** Categorical x: point.x indexes these labels, evenly spaced. */
  xLabels: string[];
  series: LineSeries[];
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function fmtNum(v: number): string {
  if (!Number.isFinite(v)) return 'n/a';
  const a = Math.abs(v);
  if (a >= 1e6) return `${+(v / 1e6).toFixed(a >= 1e7 ? 1 : 2)}M`;
  if (a >= 1e3) return `${+(v / 1e3).toFixed(a >= 1e4 ? 0 : 1)}k`;
  if (a >= 10) return `${+v.toFixed(0)}`;
  if (a >= 1) return `${+v.toFixed(1)}`;
  if (a === 0) return '0';
  return `${+v.toPrecision(2)}`;
}

/** "Nice" tick values from 0 to at least max. */
function ticks(max: number, n = 5): number[] {
  if (!(max > 0)) return [0, 1];
  const raw = max / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = 0; v <= max + step * 0.999; v += step) out.push(+v.toPrecision(12));
  return out;
}

function frame(title: string): string[] {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${W / 2}" y="24" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`,
  ];
}

function yAxis(out: string[], tv: number[], y: (v: number) => number, label: string, right = false): void {
  const x = right ? W - M.right : M.left;
  out.push(`<line x1="${x}" y1="${M.top}" x2="${x}" y2="${H - M.bottom}" stroke="#333"/>`);
  for (const t of tv) {
    const yy = y(t);
    if (!right) out.push(`<line x1="${M.left}" y1="${yy}" x2="${W - M.right}" y2="${yy}" stroke="#e5e5e5"/>`);
    out.push(
      `<text x="${right ? x + 6 : x - 6}" y="${yy + 4}" text-anchor="${right ? 'start' : 'end'}">${fmtNum(t)}</text>`,
    );
  }
  const lx = right ? W - 14 : 18;
  out.push(
    `<text transform="translate(${lx},${(M.top + H - M.bottom) / 2}) rotate(-90)" text-anchor="middle">${esc(label)}</text>`,
  );
}

function legend(out: string[], items: { name: string; color: string; dashed?: boolean }[]): void {
  let x = M.left;
  const y = H - 18;
  for (const it of items) {
    out.push(
      `<line x1="${x}" y1="${y - 4}" x2="${x + 18}" y2="${y - 4}" stroke="${it.color}" stroke-width="6"${it.dashed ? ' stroke-dasharray="4 2"' : ''}/>`,
    );
    out.push(`<text x="${x + 24}" y="${y}">${esc(it.name)}</text>`);
    x += 34 + it.name.length * 7;
  }
}

export function barChart(c: BarChart): string {
  const out = frame(c.title);
  const names: string[] = [];
  for (const g of c.groups) for (const b of g.bars) if (!names.includes(b.name)) names.push(b.name);
  const colorOf = (name: string, given?: string): string => given ?? PALETTE[names.indexOf(name) % PALETTE.length];
  let max = 0;
  for (const g of c.groups)
    for (const b of g.bars)
      max = Math.max(
        max,
        Number.isFinite(b.max ?? NaN) ? (b.max as number) : 0,
        Number.isFinite(b.value) ? b.value : 0,
      );
  if (c.refLine) max = Math.max(max, c.refLine.value);
  const tv = ticks(max * 1.05);
  const top = tv[tv.length - 1];
  const plotH = H - M.top - M.bottom;
  const y = (v: number): number => H - M.bottom - (Math.max(0, v) / top) * plotH;
  yAxis(out, tv, y, c.yLabel);
  out.push(`<line x1="${M.left}" y1="${H - M.bottom}" x2="${W - M.right}" y2="${H - M.bottom}" stroke="#333"/>`);
  const plotW = W - M.left - M.right;
  const gw = plotW / Math.max(1, c.groups.length);
  c.groups.forEach((g, gi) => {
    const n = g.bars.length;
    const bw = Math.min(60, (gw * 0.8) / Math.max(1, n));
    const x0 = M.left + gi * gw + (gw - bw * n) / 2;
    g.bars.forEach((b, bi) => {
      const x = x0 + bi * bw;
      const color = colorOf(b.name, b.color);
      if (Number.isFinite(b.value)) {
        out.push(
          `<rect x="${x + 1}" y="${y(b.value)}" width="${bw - 2}" height="${H - M.bottom - y(b.value)}" fill="${color}"><title>${esc(`${b.name}: ${fmtNum(b.value)}`)}</title></rect>`,
        );
        if (b.min !== undefined && b.max !== undefined && Number.isFinite(b.min) && Number.isFinite(b.max)) {
          const cx = x + bw / 2;
          out.push(`<line x1="${cx}" y1="${y(b.min)}" x2="${cx}" y2="${y(b.max)}" stroke="#000"/>`);
          out.push(`<line x1="${cx - 4}" y1="${y(b.min)}" x2="${cx + 4}" y2="${y(b.min)}" stroke="#000"/>`);
          out.push(`<line x1="${cx - 4}" y1="${y(b.max)}" x2="${cx + 4}" y2="${y(b.max)}" stroke="#000"/>`);
        }
        out.push(
          `<text x="${x + bw / 2}" y="${y(b.max ?? b.value) - 5}" text-anchor="middle" font-size="${bw < 26 ? 8 : 10}">${fmtNum(b.value)}</text>`,
        );
      } else {
        out.push(`<text x="${x + bw / 2}" y="${H - M.bottom - 5}" text-anchor="middle" font-size="10">n/a</text>`);
      }
    });
    out.push(
      `<text x="${M.left + gi * gw + gw / 2}" y="${H - M.bottom + 18}" text-anchor="middle">${esc(g.label)}</text>`,
    );
  });
  if (c.refLine) {
    const yy = y(c.refLine.value);
    out.push(
      `<line x1="${M.left}" y1="${yy}" x2="${W - M.right}" y2="${yy}" stroke="#d62728" stroke-dasharray="6 4"/>`,
    );
    out.push(
      `<text x="${W - M.right - 4}" y="${yy - 5}" text-anchor="end" fill="#d62728">${esc(c.refLine.label)}</text>`,
    );
  }
  legend(
    out,
    names.map((n) => ({ name: n, color: colorOf(n) })),
  );
  out.push('</svg>');
  return out.join('\n') + '\n';
}

export function lineChart(c: LineChart): string {
  const out = frame(c.title);
  const left = c.series.filter((s) => !s.right);
  const right = c.series.filter((s) => s.right);
  const maxOf = (ss: LineSeries[]): number => {
    let m = 0;
    for (const s of ss)
      for (const p of s.points)
        m = Math.max(m, Number.isFinite(p.max ?? NaN) ? (p.max as number) : 0, Number.isFinite(p.y) ? p.y : 0);
    return m;
  };
  const plotH = H - M.top - M.bottom;
  const tvL = ticks(maxOf(left) * 1.05);
  const topL = tvL[tvL.length - 1];
  const yL = (v: number): number => H - M.bottom - (Math.max(0, v) / topL) * plotH;
  yAxis(out, tvL, yL, c.yLabel);
  let yR = yL;
  if (right.length) {
    const tvR = ticks(maxOf(right) * 1.05);
    const topR = tvR[tvR.length - 1];
    yR = (v: number): number => H - M.bottom - (Math.max(0, v) / topR) * plotH;
    yAxis(out, tvR, yR, c.y2Label ?? '', true);
  }
  out.push(`<line x1="${M.left}" y1="${H - M.bottom}" x2="${W - M.right}" y2="${H - M.bottom}" stroke="#333"/>`);
  const n = c.xLabels.length;
  const plotW = W - M.left - M.right;
  const x = (i: number): number => M.left + (n <= 1 ? plotW / 2 : 30 + (i * (plotW - 60)) / (n - 1));
  c.xLabels.forEach((l, i) => {
    out.push(`<line x1="${x(i)}" y1="${H - M.bottom}" x2="${x(i)}" y2="${H - M.bottom + 5}" stroke="#333"/>`);
    out.push(`<text x="${x(i)}" y="${H - M.bottom + 18}" text-anchor="middle">${esc(l)}</text>`);
  });
  out.push(
    `<text x="${(M.left + W - M.right) / 2}" y="${H - M.bottom + 38}" text-anchor="middle">${esc(c.xLabel)}</text>`,
  );
  c.series.forEach((s, si) => {
    const color = s.color ?? PALETTE[si % PALETTE.length];
    const y = s.right ? yR : yL;
    const pts = s.points.filter((p) => Number.isFinite(p.y));
    if (pts.length > 1) {
      out.push(
        `<polyline fill="none" stroke="${color}" stroke-width="2.5"${s.dashed ? ' stroke-dasharray="7 4"' : ''} points="${pts.map((p) => `${x(p.x).toFixed(1)},${y(p.y).toFixed(1)}`).join(' ')}"/>`,
      );
    }
    for (const p of pts) {
      if (p.min !== undefined && p.max !== undefined && Number.isFinite(p.min) && Number.isFinite(p.max)) {
        out.push(
          `<line x1="${x(p.x)}" y1="${y(p.min)}" x2="${x(p.x)}" y2="${y(p.max)}" stroke="${color}" stroke-width="1.5"/>`,
        );
      }
      out.push(
        `<circle cx="${x(p.x)}" cy="${y(p.y)}" r="4" fill="${color}"><title>${esc(`${s.name}: ${fmtNum(p.y)}`)}</title></circle>`,
      );
      out.push(`<text x="${x(p.x) + 6}" y="${y(p.y) - 6}" font-size="10" fill="${color}">${fmtNum(p.y)}</text>`);
    }
  });
  legend(
    out,
    c.series.map((s, si) => ({ name: s.name, color: s.color ?? PALETTE[si % PALETTE.length], dashed: s.dashed })),
  );
  out.push('</svg>');
  return out.join('\n') + '\n';
}
