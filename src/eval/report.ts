// Self-contained HTML reports (inline SVG, no scripts or network): training curves.

import { writeFileAtomic } from '../io/atomic.js';

export interface Series { name: string; points: [number, number][]; color: string; }

const esc = (s: string): string => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

/** A line chart as an SVG string. */
export function lineChart(title: string, xLabel: string, series: Series[], w = 640, h = 320): string {
  const pts = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  if (pts.length === 0) return `<p>${esc(title)}: no data</p>`;
  const pad = { l: 56, r: 16, t: 28, b: 40 };
  let x0 = Math.min(...pts.map((p) => p[0])), x1 = Math.max(...pts.map((p) => p[0]));
  let y0 = Math.min(...pts.map((p) => p[1])), y1 = Math.max(...pts.map((p) => p[1]));
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  if (y1 === y0) { y0 -= 1; y1 += 1; }
  const X = (x: number): number => pad.l + ((x - x0) / (x1 - x0)) * (w - pad.l - pad.r);
  const Y = (y: number): number => h - pad.b - ((y - y0) / (y1 - y0)) * (h - pad.t - pad.b);
  const ticks = [0, 0.25, 0.5, 0.75, 1];
  const grid = ticks.map((f) => {
    const yv = y0 + f * (y1 - y0), xv = x0 + f * (x1 - x0);
    return `<line x1="${pad.l}" x2="${w - pad.r}" y1="${Y(yv)}" y2="${Y(yv)}" stroke="#eee"/>` +
      `<text x="${pad.l - 6}" y="${Y(yv) + 4}" text-anchor="end" font-size="11">${+yv.toPrecision(4)}</text>` +
      `<text x="${X(xv)}" y="${h - pad.b + 16}" text-anchor="middle" font-size="11">${+xv.toPrecision(4)}</text>`;
  }).join('');
  const lines = series.map((s) => {
    const d = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)).map(([x, y], i) => `${i ? 'L' : 'M'}${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join('');
    return `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.8"/>`;
  }).join('');
  const legend = series.map((s, i) => `<text x="${pad.l + 8 + i * 150}" y="${pad.t - 10}" font-size="12" fill="${s.color}">■ ${esc(s.name)}</text>`).join('');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" role="img" aria-label="${esc(title)}">` +
    `<text x="${w / 2}" y="14" text-anchor="middle" font-size="13" font-weight="bold">${esc(title)}</text>${grid}${lines}${legend}` +
    `<text x="${w / 2}" y="${h - 6}" text-anchor="middle" font-size="11">${esc(xLabel)}</text></svg>`;
}

export function htmlPage(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>` +
    `<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1000px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}</style>` +
    `</head><body><h1>${esc(title)}</h1>${body}</body></html>`;
}

export function htmlTable(head: string[], rows: (string | number)[][]): string {
  return `<table><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr>${rows.map((r) => `<tr>${r.map((c) => `<td>${esc(String(c))}</td>`).join('')}</tr>`).join('')}</table>`;
}

interface TrainingLike {
  global_step: number;
  elapsed_s: number;
  log_history: { step: number; loss: number; lr: number; tokens_per_s: number }[];
  eval_history: { step: number; [k: string]: number }[];
}

export function writeTrainingReport(path: string, st: TrainingLike): void {
  const train = st.log_history.map((e) => [e.step, e.loss] as [number, number]);
  const evalL = st.eval_history.filter((e) => Number.isFinite(e.loss)).map((e) => [e.step, e.loss] as [number, number]);
  const body = [
    `<p>${st.global_step} steps in ${st.elapsed_s.toFixed(0)} s.</p>`,
    lineChart('Loss', 'step', [{ name: 'train loss', points: train, color: '#1f77b4' }, { name: 'eval loss', points: evalL, color: '#d62728' }]),
    lineChart('Learning rate', 'step', [{ name: 'lr', points: st.log_history.map((e) => [e.step, e.lr]), color: '#2ca02c' }]),
    lineChart('Throughput', 'step', [{ name: 'tokens/s', points: st.log_history.map((e) => [e.step, e.tokens_per_s]), color: '#9467bd' }]),
    st.eval_history.length ? htmlTable(['step', ...Object.keys(st.eval_history[0]).filter((k) => k !== 'step')],
      st.eval_history.map((e) => [e.step, ...Object.entries(e).filter(([k]) => k !== 'step').map(([, v]) => +v.toFixed(4))])) : '',
  ].join('\n');
  writeFileAtomic(path, htmlPage('Training report', body));
}

/** Horizontal bar chart (values in [0, 1] shown as percentages), optional error bars. */
export function barChart(title: string, bars: { label: string; value: number; err?: number }[], w = 720): string {
  const rowH = 22, padL = 220, padR = 60, top = 28;
  const h = top + bars.length * rowH + 10;
  const X = (v: number): number => padL + Math.max(0, Math.min(1, v)) * (w - padL - padR);
  const rows = bars.map((b, i) => {
    const y = top + i * rowH;
    const err = b.err ? `<line x1="${X(b.value - b.err)}" x2="${X(b.value + b.err)}" y1="${y + 8}" y2="${y + 8}" stroke="#333"/>` : '';
    return `<text x="${padL - 6}" y="${y + 12}" text-anchor="end" font-size="12">${esc(b.label)}</text>` +
      `<rect x="${padL}" y="${y + 2}" width="${Math.max(0, X(b.value) - padL)}" height="${rowH - 6}" fill="#4e79a7"/>${err}` +
      `<text x="${X(b.value) + 4}" y="${y + 12}" font-size="11">${(100 * b.value).toFixed(1)}</text>`;
  }).join('');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" role="img" aria-label="${esc(title)}">` +
    `<text x="${w / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">${esc(title)}</text>${rows}</svg>`;
}
