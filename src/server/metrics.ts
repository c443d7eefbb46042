// Prometheus text exposition (format 0.0.4) for the server: counters, gauges and histograms kept
// in memory; label values are escaped as the format requires.

const esc = (v: string): string => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
const labelText = (l: Record<string, string>): string => {
  const ks = Object.keys(l);
  return ks.length ? `{${ks.map((k) => `${k}="${esc(l[k])}"`).join(',')}}` : '';
};

class Counter {
  private readonly v = new Map<string, number>();
  constructor(readonly name: string, readonly help: string) {}
  inc(labels: Record<string, string> = {}, by = 1): void { const k = labelText(labels); this.v.set(k, (this.v.get(k) ?? 0) + by); }
  get(labels: Record<string, string> = {}): number { return this.v.get(labelText(labels)) ?? 0; }
  text(): string {
    const rows = this.v.size ? [...this.v].map(([k, n]) => `${this.name}${k} ${n}`) : [`${this.name} 0`];
    return [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`, ...rows].join('\n');
  }
}

class Histogram {
  private readonly series = new Map<string, { counts: number[]; sum: number; n: number; labels: Record<string, string> }>();
  constructor(readonly name: string, readonly help: string, readonly buckets: number[]) {}
  observe(x: number, labels: Record<string, string> = {}): void {
    const k = labelText(labels);
    let s = this.series.get(k);
    if (!s) { s = { counts: this.buckets.map(() => 0), sum: 0, n: 0, labels }; this.series.set(k, s); }
    for (let i = 0; i < this.buckets.length; i++) if (x <= this.buckets[i]) s.counts[i]++;
    s.sum += x; s.n++;
  }
  text(): string {
    const out = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const s of this.series.values()) {
      this.buckets.forEach((b, i) => out.push(`${this.name}_bucket${labelText({ ...s.labels, le: String(b) })} ${s.counts[i]}`));
      out.push(`${this.name}_bucket${labelText({ ...s.labels, le: '+Inf' })} ${s.n}`);
      out.push(`${this.name}_sum${labelText(s.labels)} ${s.sum}`, `${this.name}_count${labelText(s.labels)} ${s.n}`);
    }
    return out.join('\n');
  }
}

const gauge = (name: string, help: string, v: number): string => `# HELP ${name} ${help}\n# TYPE ${name} gauge\n${name} ${v}`;

const BATCH = [1, 2, 4, 8, 16, 32, 64, 128];

const LATENCY = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export class Metrics {
  readonly requests = new Counter('icld_requests_total', 'HTTP requests by route and status code.');
  readonly promptTokens = new Counter('icld_prompt_tokens_total', 'Prompt tokens processed.');
  readonly generatedTokens = new Counter('icld_generated_tokens_total', 'Tokens generated.');
  readonly latency = new Histogram('icld_request_duration_seconds', 'Request latency (arrival to the end of the response) by route.', LATENCY);
  readonly ttft = new Histogram('icld_time_to_first_token_seconds', 'Time from a generation request\'s arrival to its first generated token.', LATENCY);

  readonly batchSize = new Histogram('icld_decode_batch_size', 'Sequences per forward call: one batched runtime step for all generations sharing the model\'s runtime, 1 for a generation on its own forward (adapters).', BATCH);

  text(state: { queue: number; active: number; slots: number; runtime: boolean }): string {
    return [
      this.requests.text(), this.promptTokens.text(), this.generatedTokens.text(),
      gauge('icld_queue_length', 'Requests waiting for a slot.', state.queue),
      gauge('icld_active_slots', 'Slots generating now.', state.active),
      gauge('icld_slots', 'Slots configured.', state.slots),
      gauge('icld_batched_runtime', '1 when the base model decodes through the shared fused runtime (one forward per step for all its slots), 0 when each generation runs its own forward.', state.runtime ? 1 : 0),
      this.latency.text(), this.ttft.text(), this.batchSize.text(),
    ].join('\n') + '\n';
  }
}
