// The training report (report.html next to the checkpoints): loss, learning rate and throughput
// curves and the eval table. Chart/table helpers live in src/report (shared by every report).

import { writeFileAtomic } from '../io/atomic.js';
import { htmlPage, htmlTable, lineChart } from '../report/html.js';

interface TrainingLike {
  global_step: number;
  elapsed_s: number;
  log_history: { step: number; loss: number; lr: number; tokens_per_s: number }[];
  eval_history: { step: number; [k: string]: number }[];
}

export function trainingReportHtml(st: TrainingLike): string {
  const train = st.log_history.map((e) => [e.step, e.loss] as [number, number]);
  const evalL = st.eval_history.filter((e) => Number.isFinite(e.loss)).map((e) => [e.step, e.loss] as [number, number]);
  const evalKeys = st.eval_history.length ? Object.keys(st.eval_history[0]).filter((k) => k !== 'step') : [];
  const body = [
    `<p>${st.global_step} steps in ${st.elapsed_s.toFixed(st.elapsed_s < 10 ? 1 : 0)} s.</p>`,
    lineChart('Loss', 'step', [{ name: 'train loss', points: train, color: '#1f77b4' }, { name: 'eval loss', points: evalL, color: '#d62728' }]),
    lineChart('Learning rate', 'step', [{ name: 'lr', points: st.log_history.map((e) => [e.step, e.lr]), color: '#2ca02c' }]),
    lineChart('Throughput', 'step', [{ name: 'tokens/s', points: st.log_history.map((e) => [e.step, e.tokens_per_s]), color: '#9467bd' }]),
    evalKeys.length ? htmlTable(['step', ...evalKeys], st.eval_history.map((e) => [e.step, ...evalKeys.map((k) => (Number.isFinite(e[k]) ? +e[k].toFixed(4) : '–'))])) : '',
  ].join('\n');
  return htmlPage('Training report', body);
}

export function writeTrainingReport(path: string, st: TrainingLike): void {
  writeFileAtomic(path, trainingReportHtml(st));
}
