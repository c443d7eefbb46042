// Progress display: a redrawn bar on a TTY, periodic log lines otherwise (CI, pipes).

export class Progress {
  private readonly t0 = performance.now();
  private lastDraw = 0;
  private readonly tty = !!process.stderr.isTTY;
  constructor(private readonly total: number, private readonly start: number, private readonly log: (s: string) => void,
    private readonly everyMs = 10000) {}

  update(done: number, m: { loss: number; tps: number; lr: number }): void {
    const now = performance.now();
    if (now - this.lastDraw < (this.tty ? 200 : this.everyMs) && done !== this.total) return;
    this.lastDraw = now;
    const el = (now - this.t0) / 1000, rate = (done - this.start) / Math.max(el, 1e-9);
    const eta = rate > 0 ? (this.total - done) / rate : 0;
    const frac = done / this.total;
    const msg = `step ${done}/${this.total}  loss ${m.loss.toFixed(4)}  lr ${m.lr.toExponential(2)}  ${Math.round(m.tps)} tok/s  elapsed ${fmt(el)}  ETA ${fmt(eta)}`;
    if (this.tty) {
      const w = 24, fill = Math.round(frac * w);
      process.stderr.write(`\r[${'#'.repeat(fill)}${'.'.repeat(w - fill)}] ${(frac * 100).toFixed(0).padStart(3)}% ${msg}\x1b[K`);
    } else this.log(msg);
  }
  note(s: string): void { if (this.tty) process.stderr.write('\r\x1b[K'); this.log(s); }
  finish(): void { if (this.tty) process.stderr.write('\n'); }
}

export function fmt(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), x = Math.floor(s % 60);
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(x).padStart(2, '0')}s` : `${x}s`;
}
