// Metrics: accuracy, macro-F1 over a label set, SQuAD-style exact match / token F1, mean ± std.

export function accuracy(golds: readonly string[], preds: readonly string[]): number {
  if (golds.length !== preds.length) throw new Error(`accuracy: ${golds.length} golds vs ${preds.length} predictions`);
  if (golds.length === 0) return 0;
  let c = 0;
  for (let i = 0; i < golds.length; i++) if (golds[i] === preds[i]) c++;
  return c / golds.length;
}

/**
 * Macro-F1 over `labels` (the task's options), as sklearn's f1_score(average='macro',
 * labels=options, zero_division=0): a label with no gold and no prediction counts as F1 0.
 */
export function macroF1(golds: readonly string[], preds: readonly string[], labels: readonly string[]): number {
  if (golds.length !== preds.length) throw new Error(`macroF1: ${golds.length} golds vs ${preds.length} predictions`);
  if (labels.length === 0) return 0;
  let sum = 0;
  for (const l of labels) {
    let tp = 0, fp = 0, fn = 0;
    for (let i = 0; i < golds.length; i++) {
      const g = golds[i] === l, p = preds[i] === l;
      if (g && p) tp++; else if (p) fp++; else if (g) fn++;
    }
    const prec = tp + fp > 0 ? tp / (tp + fp) : 0, rec = tp + fn > 0 ? tp / (tp + fn) : 0;
    sum += prec + rec > 0 ? (2 * prec * rec) / (prec + rec) : 0;
  }
  return sum / labels.length;
}

/** A classification task: every example offers the same set of options (in any order). */
export function isClassification(optionSets: readonly (readonly string[])[]): boolean {
  if (optionSets.length === 0 || optionSets[0].length === 0) return false;
  const key = (o: readonly string[]): string => [...new Set(o)].sort().join('\u0000');
  const k0 = key(optionSets[0]);
  return optionSets.every((o) => key(o) === k0);
}

/**
 * Metrics of one option-scored task: accuracy, and for a classification task (one shared label
 * set) macro-F1 over that set; a multiple-choice task (options per example) has no macro-F1
 * (its "labels" differ per example). See headlineMetric.
 */
export function optionTaskMetrics(golds: readonly string[], preds: readonly string[], optionSets: readonly (readonly string[])[]): Record<string, number> {
  if (optionSets.length !== golds.length) throw new Error(`optionTaskMetrics: ${optionSets.length} option sets for ${golds.length} examples`);
  const acc = accuracy(golds, preds);
  if (!isClassification(optionSets)) return { accuracy: acc };
  return { accuracy: acc, macro_f1: macroF1(golds, preds, [...new Set(optionSets[0])]) };
}

/**
 * A task's headline as MetaICL and the paper report it: macro-F1 for classification, accuracy
 * for multiple-choice, exact match for generation, P@1 for a LAMA relation (NaN when none is there).
 */
export function headlineMetric(m: Record<string, number>): number {
  return m.macro_f1 ?? m.accuracy ?? m.em ?? m.p1 ?? NaN;
}

/**
 * SQuAD normalisation (the official evaluate-v1.1 script): lower case, delete punctuation (not
 * replace it: "U.S." → "us", "don't" → "dont"), drop articles, collapse whitespace.
 */
export function normalizeAnswer(s: string): string {
  return s.toLowerCase().replace(/[\p{P}\p{S}]/gu, '').replace(/\b(a|an|the)\b/g, ' ').split(/\s+/).filter(Boolean).join(' ');
}

export function exactMatch(pred: string, gold: string): number { return normalizeAnswer(pred) === normalizeAnswer(gold) ? 1 : 0; }

export function tokenF1(pred: string, gold: string): number {
  const p = normalizeAnswer(pred).split(' ').filter(Boolean), g = normalizeAnswer(gold).split(' ').filter(Boolean);
  if (p.length === 0 || g.length === 0) return p.length === g.length ? 1 : 0;
  const counts = new Map<string, number>();
  for (const t of g) counts.set(t, (counts.get(t) ?? 0) + 1);
  let common = 0;
  for (const t of p) { const c = counts.get(t) ?? 0; if (c > 0) { common++; counts.set(t, c - 1); } }
  if (common === 0) return 0;
  const prec = common / p.length, rec = common / g.length;
  return (2 * prec * rec) / (prec + rec);
}

/** Mean and sample standard deviation (n-1; 0 for a single value). */
export function meanStd(xs: readonly number[]): { mean: number; std: number } {
  if (xs.length === 0) return { mean: NaN, std: NaN };
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  if (xs.length === 1) return { mean: m, std: 0 };
  const v = xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1);
  return { mean: m, std: Math.sqrt(v) };
}
