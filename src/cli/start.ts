// `npm start`: the main job on embedded data — the synthetic ICL-distillation study
// (studies/synthetic.json): a teacher is copy-pretrained and in-context tuned on a generated task
// family whose answers can only be read off the demonstrations, then every student arm (Raw, Multitask-FT,
// ICT, ICL-D, ICL-D (LM), LM-KD) is trained and evaluated on unseen tasks. The default is the
// config's quick version (three seeds); --full runs all of it. Ends with the report's path.

import { fileURLToPath } from 'node:url';
import { readStudyConfig, type StudyResults } from '../distill/study.js';
import { runStudyWithAnalyses } from '../distill/analyses.js';
import { info, formatInfo } from './info.js';

export async function runStart(opts: { full: boolean; out: string; json: boolean }): Promise<void> {
  const log = (s: string): void => { process.stderr.write(s + '\n'); };
  log(formatInfo(info()));
  const cfgPath = fileURLToPath(new URL('../../../studies/synthetic.json', import.meta.url));
  const cfg = readStudyConfig(cfgPath, opts.full);
  log(`study ${cfg.name} (${opts.full ? 'full' : 'quick version; --full for all seeds'}) → ${opts.out} (rerun to resume)`);
  const r = (await runStudyWithAnalyses(cfg, opts.out, log)) as StudyResults & { report: string };
  if (opts.json) { console.log(JSON.stringify(r)); return; }
  const m = (x: Record<string, number>): string => `${(100 * (x.accuracy ?? NaN)).toFixed(1)}%`;
  console.log(`\nunseen-task accuracy (mean over seeds ${cfg.seeds.join(', ')}):`);
  console.log(`  ${'Teacher'.padEnd(14)} ${m(r.teacher.mean)}  (${(r.teacher_params / 1e6).toFixed(2)}M parameters)`);
  for (const [arm, a] of Object.entries(r.arms)) console.log(`  ${arm.padEnd(14)} ${m(a.mean)}  (student ${(r.student_params / 1e6).toFixed(2)}M, keeps ${a.retained === null ? '–' : (100 * a.retained).toFixed(0) + '%'} of the teacher)`);
  for (const [name, b] of Object.entries(r.baselines ?? {})) console.log(`  ${m(b.mean).padStart(20)}  baseline: ${name} (no model)`);
  console.log(`compression ${r.compression}×, measured speed-up ${r.speedup}×`);
  const tested = (r.claims ?? []).filter((c) => c.verdict !== 'not tested here');
  if (tested.length) {
    console.log(`the paper's claims (paired over seeds × tasks; rules in report.html):`);
    for (const c of tested) console.log(`  ${c.verdict.padEnd(15)} ${c.claim}: ${c.measured.split(/; |, one-sided/)[0]}`);
  }
  console.log(`report: ${r.report}`);
}
