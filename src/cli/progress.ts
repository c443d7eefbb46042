// Progress of a long evaluation (eval-lm's windows) on stderr: a redrawn bar on a TTY, a line
// every few seconds otherwise — the same display rules as the trainer's Progress (src/train/progress.ts).

import { fmt } from '../train/progress.js';

export class WindowProgress {
  private readonly t0 = performance.now();
  private lastDraw = 0;
  private drawn = false;
  private readonly tty = !!process.stderr.isTTY;
  constructor(private readonly label: string, private readonly log: (s: string) => void, private readonly everyMs = 5000) {}

  update(done: number, total: number, tokens: number): void {
    const now = performance.now();
    // Short runs stay quiet: nothing before the first interval has passed.
    if (now - this.lastDraw < (this.tty ? 200 : this.everyMs) || (!this.drawn && now - this.t0 < (this.tty ? 500 : this.everyMs))) return;
    this.lastDraw = now;
    this.drawn = true;
    const el = (now - this.t0) / 1000, rate = done / Math.max(el, 1e-9), eta = rate > 0 ? (total - done) / rate : NaN;
    const msg = `${this.label}: window ${done}/${total}  ${Math.round(tokens / Math.max(el, 1e-9))} tok/s  elapsed ${fmt(el)}  ETA ${fmt(eta)}`;
    if (this.tty) {
      const w = 24, fill = Math.round((done / total) * w);
      process.stderr.write(`\r[${'#'.repeat(fill)}${'.'.repeat(w - fill)}] ${((100 * done) / total).toFixed(0).padStart(3)}% ${msg}\x1b[K`);
    } else this.log(msg);
  }

  finish(): void { if (this.tty && this.drawn) process.stderr.write('\r\x1b[K'); }
}
