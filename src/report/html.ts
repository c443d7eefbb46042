// Shared helpers for the self-contained HTML reports (inline SVG, no scripts or network):
// page, table, mean ± std cells, line chart and horizontal bar chart.
//
// Charts are laid out from estimated text widths (Verdana/DejaVu Sans metrics, the widest common
// sans-serif faces, so other fonts only come out narrower): margins are reserved from the longest
// tick label, long titles and category labels wrap onto more lines, and the legend gets its own
// rows below the plot. Every text stays inside the viewBox, which tests check with textWidth.

export const FONT = "Verdana, 'DejaVu Sans', sans-serif";

export const esc = (s: string): string => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

/** Estimated advance width of `s` in px at `size` px (a slight over-estimate for Verdana/DejaVu). */
export function textWidth(s: string, size: number, bold = false): number {
  let em = 0;
  for (const ch of s) {
    if (/[ilj.,:;'!|()[\]{}`]/.test(ch)) em += 0.36;
    else if (ch === ' ') em += 0.36;
    else if (/[mwMW@%]/.test(ch)) em += 1.0;
    else if (/[A-Z]/.test(ch)) em += 0.76;
    else if (/[0-9]/.test(ch)) em += 0.66;
    else if (ch.charCodeAt(0) > 0x2000) em += 1.0; // symbols such as ×, ±, –, ■ and CJK
    else em += 0.64;
  }
  return em * size * (bold ? 1.12 : 1);
}

/** Greedy word wrap to `maxWidth` px; a word longer than a line is cut with a hyphen. */
export function wrapText(s: string, size: number, maxWidth: number, bold = false): string[] {
  const lines: string[] = [];
  let cur = '';
  for (let word of s.split(/\s+/).filter(Boolean)) {
    while (textWidth(word, size, bold) > maxWidth && word.length > 1) {
      if (cur) { lines.push(cur); cur = ''; }
      let n = word.length - 1;
      while (n > 1 && textWidth(word.slice(0, n) + '-', size, bold) > maxWidth) n--;
      lines.push(word.slice(0, n) + '-');
      word = word.slice(n);
    }
    const cand = cur ? `${cur} ${word}` : word;
    if (cur && textWidth(cand, size, bold) > maxWidth) { lines.push(cur); cur = word; } else cur = cand;
  }
  if (cur || lines.length === 0) lines.push(cur);
  return lines;
}

/** `s`, cut with "…" to fit `maxWidth` px (legend entries). */
export function ellipsize(s: string, size: number, maxWidth: number): string {
  if (textWidth(s, size) <= maxWidth) return s;
  let n = s.length;
  while (n > 1 && textWidth(s.slice(0, n) + '…', size) > maxWidth) n--;
  return s.slice(0, n) + '…';
}

/**
 * A `mean ± std` cell over n seeds. With one seed there is no spread, so no "± 0.0": the cell is
 * the value alone and the row's seed count (seedsCell) says n = 1.
 */
export function meanStdCell(mean: number | undefined, std: number | undefined, n: number, fmt: (v: number) => string): string {
  if (mean === undefined || !Number.isFinite(mean)) return '–';
  if (n <= 1 || std === undefined || !Number.isFinite(std)) return fmt(mean);
  return `${fmt(mean)} ± ${fmt(std)}`;
}

/** The seed-count cell next to mean ± std cells. */
export const seedsCell = (n: number): string => `n = ${n}`;

export function htmlPage(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>` +
    `<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1000px}table{border-collapse:collapse;margin:1em 0}` +
    `td,th{border:1px solid #ccc;padding:4px 8px;text-align:right;vertical-align:top}td:not(:first-child){white-space:nowrap}td:first-child{overflow-wrap:anywhere;min-width:12em}th{background:#f4f4f4}` +
    `td:first-child,th:first-child{text-align:left}svg{display:block;margin:1em 0;max-width:100%;height:auto}.note{color:#555;font-size:90%}</style>` +
    `</head><body><h1>${esc(title)}</h1>${body}</body></html>`;
}

export function htmlTable(head: string[], rows: (string | number)[][]): string {
  return `<table><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr>${rows.map((r) => `<tr>${r.map((c) => `<td>${esc(String(c))}</td>`).join('')}</tr>`).join('')}</table>`;
}

const fmtTick = (v: number): string => String(+v.toPrecision(4));

function text(x: number, y: number, s: string, size: number, o: { anchor?: 'start' | 'middle' | 'end'; bold?: boolean; fill?: string } = {}): string {
  return `<text x="${+x.toFixed(1)}" y="${+y.toFixed(1)}"${o.anchor && o.anchor !== 'start' ? ` text-anchor="${o.anchor}"` : ''} font-size="${size}"` +
    `${o.bold ? ' font-weight="bold"' : ''}${o.fill ? ` fill="${o.fill}"` : ''}>${esc(s)}</text>`;
}

function svgOpen(w: number, h: number, title: string): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" font-family="${FONT}" role="img" aria-label="${esc(title)}">`;
}

/** The title lines, centred, from the top; returns the SVG and the height used. */
function titleBlock(title: string, w: number): { svg: string; height: number } {
  const size = 13, lh = 17;
  const lines = wrapText(title, size, w - 16, true);
  return { svg: lines.map((l, i) => text(w / 2, 6 + size + i * lh, l, size, { anchor: 'middle', bold: true })).join(''), height: 10 + lines.length * lh };
}

/** Evenly spaced "nice" ticks covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, n = 5): number[] {
  const raw = (hi - lo) / Math.max(1, n - 1);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  // From the last tick ≤ lo to the first tick ≥ hi, so the ticks span the data.
  let v = Math.floor(lo / step + 1e-9) * step;
  out.push(+v.toPrecision(12));
  while (v < hi - step * 1e-9) { v += step; out.push(+v.toPrecision(12)); }
  return out;
}

export interface Series { name: string; points: [number, number][]; color: string; }

/** A line chart as an SVG string: title, plot, axes with ticks, x label, then the legend rows. */
export function lineChart(title: string, xLabel: string, series: Series[], w = 640, plotH = 220): string {
  const fin = series.map((s) => ({ ...s, points: s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)) }));
  const pts = fin.flatMap((s) => s.points);
  if (pts.length === 0) return `<p>${esc(title)}: no data</p>`;
  let x0 = Math.min(...pts.map((p) => p[0])), x1 = Math.max(...pts.map((p) => p[0]));
  let y0 = Math.min(...pts.map((p) => p[1])), y1 = Math.max(...pts.map((p) => p[1]));
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  if (y1 === y0) { y0 -= Math.abs(y0) * 0.1 || 1; y1 += Math.abs(y1) * 0.1 || 1; }
  const yt = niceTicks(y0, y1), xt = niceTicks(x0, x1);
  y0 = Math.min(y0, yt[0]); y1 = Math.max(y1, yt[yt.length - 1]);
  x0 = Math.min(x0, xt[0]); x1 = Math.max(x1, xt[xt.length - 1]);
  const fs = 11;
  const head = titleBlock(title, w);
  const padL = Math.max(12 + Math.max(...yt.map((v) => textWidth(fmtTick(v), fs))) + 6, 8 + textWidth(fmtTick(xt[0]), fs) / 2);
  const padR = 12 + textWidth(fmtTick(xt[xt.length - 1]), fs) / 2;
  const top = head.height + 8, bottom = top + plotH;
  const X = (x: number): number => padL + ((x - x0) / (x1 - x0)) * (w - padL - padR);
  const Y = (y: number): number => bottom - ((y - y0) / (y1 - y0)) * plotH;
  const grid = yt.map((v) => `<line x1="${padL}" x2="${w - padR}" y1="${Y(v).toFixed(1)}" y2="${Y(v).toFixed(1)}" stroke="#eee"/>` + text(padL - 6, Y(v) + 4, fmtTick(v), fs, { anchor: 'end' })).join('') +
    xt.map((v) => `<line x1="${X(v).toFixed(1)}" x2="${X(v).toFixed(1)}" y1="${bottom}" y2="${bottom + 4}" stroke="#999"/>` + text(X(v), bottom + 19, fmtTick(v), fs, { anchor: 'middle' })).join('') +
    `<rect x="${padL}" y="${top}" width="${(w - padL - padR).toFixed(1)}" height="${plotH}" fill="none" stroke="#ccc"/>`;
  const lines = fin.filter((s) => s.points.length).map((s) => {
    const d = s.points.map(([x, y], i) => `${i ? 'L' : 'M'}${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join('');
    // Sparse series (a single logged step draws no line at all) also get point markers.
    const dots = s.points.length <= 30 ? s.points.map(([x, y]) => `<circle cx="${X(x).toFixed(1)}" cy="${Y(y).toFixed(1)}" r="2.5" fill="${s.color}"/>`).join('') : '';
    return `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.8"/>${dots}`;
  }).join('');
  const xl = text(w / 2, bottom + 36, xLabel, fs, { anchor: 'middle' });
  // Legend: its own rows under the x label, wrapped at the chart width.
  const lf = 12, rowH = 18, sw = 10;
  const lx0 = Math.min(padL, 8 + Math.max(0, w - 16 - Math.max(...fin.map((s) => sw + 5 + textWidth(s.name, lf)))));
  let lx = lx0, ly = bottom + 46, legend = '';
  for (const s of fin.filter((x) => x.points.length)) {
    const name = ellipsize(s.name, lf, w - 8 - lx0 - sw - 5);
    const iw = sw + 5 + textWidth(name, lf) + 18;
    if (lx > lx0 && lx + iw - 18 > w - 8) { lx = lx0; ly += rowH; }
    legend += `<rect x="${lx.toFixed(1)}" y="${ly + 3}" width="${sw}" height="${sw}" fill="${s.color}"/>` + text(lx + sw + 5, ly + 12, name, lf, { fill: '#222' });
    lx += iw;
  }
  const h = Math.ceil(ly + rowH + 6);
  return `${svgOpen(w, h, title)}${head.svg}${grid}${lines}${xl}${legend}</svg>`;
}

export interface Bar { label: string; value: number; err?: number; }

/**
 * Horizontal bar chart of fractions, shown as percentages, with optional ± error bars. The axis
 * runs from 0 to max(1, largest value + error); long labels wrap onto several lines.
 */
export function barChart(title: string, bars: Bar[], w = 720): string {
  const fs = 12, vs = 11, lh = 16;
  const head = titleBlock(title, w);
  if (bars.length === 0) return `<p>${esc(title)}: no data</p>`;
  const hi = Math.max(1, ...bars.map((b) => (Number.isFinite(b.value) ? b.value + (b.err ?? 0) : 0)));
  const ticks = niceTicks(0, hi, 5);
  const xmax = ticks[ticks.length - 1];
  const maxLabel = Math.floor(w * 0.4);
  const wrapped = bars.map((b) => wrapText(b.label, fs, maxLabel));
  const padL = 10 + Math.max(...wrapped.flat().map((l) => textWidth(l, fs))) + 8;
  const valueText = (b: Bar): string => (Number.isFinite(b.value) ? (100 * b.value).toFixed(1) : '–');
  const padR = 10 + Math.max(textWidth(`${(100 * xmax).toFixed(0)}%`, vs) / 2, ...bars.map((b) => textWidth(valueText(b), vs) + 6));
  const X = (v: number): number => padL + (Math.max(0, Math.min(xmax, v)) / xmax) * (w - padL - padR);
  let y = head.height + 6;
  const rows = bars.map((b, i) => {
    const rh = Math.max(22, wrapped[i].length * lh + 8);
    const mid = y + rh / 2;
    const labels = wrapped[i].map((l, j) => text(padL - 8, mid + 4 + (j - (wrapped[i].length - 1) / 2) * lh, l, fs, { anchor: 'end' })).join('');
    const v = Number.isFinite(b.value) ? b.value : 0;
    const err = b.err ? `<line x1="${X(v - b.err).toFixed(1)}" x2="${X(v + b.err).toFixed(1)}" y1="${mid}" y2="${mid}" stroke="#333"/>` : '';
    // The value sits right of the bar (and its error bar), or inside the bar's end when that would leave the chart.
    const end = X(v + (b.err ?? 0)) + 4, tw = textWidth(valueText(b), vs);
    const vLabel = end + tw <= w - 4 ? text(end, mid + 4, valueText(b), vs) : text(X(v) - 4, mid + 4, valueText(b), vs, { anchor: 'end', fill: '#fff' });
    const out = labels + `<rect x="${padL}" y="${(y + 3).toFixed(1)}" width="${Math.max(0, X(v) - padL).toFixed(1)}" height="${rh - 6}" fill="#4e79a7"/>${err}${vLabel}`;
    y += rh;
    return out;
  }).join('');
  const axisY = y + 2;
  const axis = `<line x1="${padL}" x2="${(w - padR).toFixed(1)}" y1="${axisY}" y2="${axisY}" stroke="#999"/>` +
    ticks.map((t) => `<line x1="${X(t).toFixed(1)}" x2="${X(t).toFixed(1)}" y1="${head.height + 6}" y2="${axisY + 4}" stroke="#eee"/>` + text(X(t), axisY + 16, `${(100 * t).toFixed(0)}%`, vs, { anchor: 'middle' })).join('');
  const h = Math.ceil(axisY + 24);
  return `${svgOpen(w, h, title)}${head.svg}${axis}${rows}</svg>`;
}

export interface PointSeries { name: string; color: string; points: { x: number; y: number; err?: number }[]; }

/**
 * Points joined in x order (a line with markers), with optional ± error bars and dashed
 * horizontal reference lines (e.g. the teacher at 100%) labelled inside the plot. With
 * `yPercent` the y values are fractions shown as percentages. Same layout rules as lineChart.
 */
export function pointChart(title: string, xLabel: string, series: PointSeries[], o: { yPercent?: boolean; refs?: { y: number; label: string }[]; w?: number; plotH?: number } = {}): string {
  const w = o.w ?? 640, plotH = o.plotH ?? 220;
  const fin = series.map((s) => ({ ...s, points: s.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y)).sort((a, b) => a.x - b.x) })).filter((s) => s.points.length);
  const pts = fin.flatMap((s) => s.points);
  if (pts.length === 0) return `<p>${esc(title)}: no data</p>`;
  const refs = (o.refs ?? []).filter((r) => Number.isFinite(r.y));
  let x0 = Math.min(...pts.map((p) => p.x)), x1 = Math.max(...pts.map((p) => p.x));
  const ys = [...pts.flatMap((p) => [p.y - (p.err ?? 0), p.y + (p.err ?? 0)]), ...refs.map((r) => r.y)];
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (x1 === x0) { x0 -= Math.abs(x0) * 0.1 || 1; x1 += Math.abs(x1) * 0.1 || 1; }
  if (y1 === y0) { y0 -= Math.abs(y0) * 0.1 || 1; y1 += Math.abs(y1) * 0.1 || 1; }
  const yt = niceTicks(y0, y1), xt = niceTicks(x0, x1);
  y0 = Math.min(y0, yt[0]); y1 = Math.max(y1, yt[yt.length - 1]);
  x0 = Math.min(x0, xt[0]); x1 = Math.max(x1, xt[xt.length - 1]);
  const fy = (v: number): string => (o.yPercent ? `${fmtTick(100 * v)}%` : fmtTick(v));
  const fs = 11;
  const head = titleBlock(title, w);
  const padL = Math.max(12 + Math.max(...yt.map((v) => textWidth(fy(v), fs))) + 6, 8 + textWidth(fmtTick(xt[0]), fs) / 2);
  const padR = 12 + textWidth(fmtTick(xt[xt.length - 1]), fs) / 2;
  const top = head.height + 8, bottom = top + plotH;
  const X = (x: number): number => padL + ((x - x0) / (x1 - x0)) * (w - padL - padR);
  const Y = (y: number): number => bottom - ((y - y0) / (y1 - y0)) * plotH;
  const n1 = (v: number): string => v.toFixed(1);
  const grid = yt.map((v) => `<line x1="${padL}" x2="${n1(w - padR)}" y1="${n1(Y(v))}" y2="${n1(Y(v))}" stroke="#eee"/>` + text(padL - 6, Y(v) + 4, fy(v), fs, { anchor: 'end' })).join('') +
    xt.map((v) => `<line x1="${n1(X(v))}" x2="${n1(X(v))}" y1="${bottom}" y2="${bottom + 4}" stroke="#999"/>` + text(X(v), bottom + 19, fmtTick(v), fs, { anchor: 'middle' })).join('') +
    `<rect x="${padL}" y="${top}" width="${n1(w - padL - padR)}" height="${plotH}" fill="none" stroke="#ccc"/>`;
  // Reference labels sit just above their line, or below it when that would leave the plot; cut to the plot width.
  const refSvg = refs.map((r) => {
    const yl = Y(r.y) - top < 4 + fs + 2 ? Y(r.y) + 4 + fs : Y(r.y) - 4;
    return `<line x1="${padL}" x2="${n1(w - padR)}" y1="${n1(Y(r.y))}" y2="${n1(Y(r.y))}" stroke="#777" stroke-dasharray="4 3"/>` +
      text(w - padR - 4, yl, ellipsize(r.label, fs, w - padL - padR - 8), fs, { anchor: 'end', fill: '#555' });
  }).join('');
  const marks = fin.map((s) => {
    const d = s.points.map((p, i) => `${i ? 'L' : 'M'}${n1(X(p.x))},${n1(Y(p.y))}`).join('');
    const errs = s.points.filter((p) => p.err).map((p) => `<line x1="${n1(X(p.x))}" x2="${n1(X(p.x))}" y1="${n1(Y(p.y - p.err!))}" y2="${n1(Y(p.y + p.err!))}" stroke="${s.color}"/>` +
      [p.y - p.err!, p.y + p.err!].map((v) => `<line x1="${n1(X(p.x) - 3)}" x2="${n1(X(p.x) + 3)}" y1="${n1(Y(v))}" y2="${n1(Y(v))}" stroke="${s.color}"/>`).join('')).join('');
    const dots = s.points.map((p) => `<circle cx="${n1(X(p.x))}" cy="${n1(Y(p.y))}" r="3.5" fill="${s.color}"/>`).join('');
    return `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.5"/>${errs}${dots}`;
  }).join('');
  const xl = text(w / 2, bottom + 36, ellipsize(xLabel, fs, w - 16), fs, { anchor: 'middle' });
  const lf = 12, rowH = 18, sw = 10;
  const lx0 = Math.min(padL, 8 + Math.max(0, w - 16 - Math.max(...fin.map((s) => sw + 5 + textWidth(s.name, lf)))));
  let lx = lx0, ly = bottom + 46, legend = '';
  for (const s of fin) {
    const name = ellipsize(s.name, lf, w - 8 - lx0 - sw - 5);
    const iw = sw + 5 + textWidth(name, lf) + 18;
    if (lx > lx0 && lx + iw - 18 > w - 8) { lx = lx0; ly += rowH; }
    legend += `<rect x="${n1(lx)}" y="${ly + 3}" width="${sw}" height="${sw}" fill="${s.color}"/>` + text(lx + sw + 5, ly + 12, name, lf, { fill: '#222' });
    lx += iw;
  }
  const h = Math.ceil(ly + rowH + 6);
  return `${svgOpen(w, h, title)}${head.svg}${grid}${refSvg}${marks}${xl}${legend}</svg>`;
}
