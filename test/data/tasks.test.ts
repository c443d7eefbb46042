// Task jsonl loader (issue 9): every malformed line is a one-line error naming FILE:LINE, an empty
// test file is an error (it used to score {"em":0,"f1":0} with exit 0), and every shipped file loads.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readExamples, loadTask, loadSplit } from '../../src/data/tasks.js';

const CROSSFIT = fileURLToPath(new URL('../../../data/tasks/crossfit/', import.meta.url));
let tmp = '';
before(() => { tmp = mkdtempSync(join(tmpdir(), 'icld-tasks-')); });
after(() => { rmSync(tmp, { recursive: true, force: true }); });

let n = 0;
function file(content: string | Uint8Array): string {
  const p = join(tmp, `t${n++}.jsonl`);
  writeFileSync(p, content);
  return p;
}
const esc = (s: string): string => s.replace(/[.\\/]/g, '\\$&');
const good = { task: 't', input: 'x', output: 'yes', options: ['yes', 'no'] };
const line = (o: unknown): string => JSON.stringify(o) + '\n';

describe('readExamples', () => {
  it('reads classification and open-answer ("options": []) lines, CRLF too', () => {
    const p = file(line(good) + '\r\n' + JSON.stringify({ task: 't', input: 'q', output: 'free text', options: [] }) + '\r\n');
    assert.deepEqual(readExamples(p), [good, { task: 't', input: 'q', output: 'free text', options: [] }]);
  });

  it('an empty (or blank) file is an error', () => {
    for (const c of ['', '\n\n  \n']) {
      const p = file(c);
      assert.throws(() => readExamples(p), new RegExp(`${esc(p)}: has no examples`));
    }
  });

  it('an empty test file makes loadTask fail instead of scoring 0', () => {
    const dir = join(tmp, 'tasks'), t = join(dir, 'demo');
    mkdirSync(t, { recursive: true });
    writeFileSync(join(t, 'demo_16_1_train.jsonl'), line(good).repeat(4));
    writeFileSync(join(t, 'demo_test.jsonl'), '');
    assert.throws(() => loadTask(dir, 'demo', 2, 1), new RegExp(`${esc(join(t, 'demo_test.jsonl'))}: has no examples`));
  });

  const bad: [string, string | Uint8Array, RegExp][] = [
    ['missing options', line({ task: 't', input: 'x', output: 'yes' }), /:1: missing "options"/],
    ['options as a string', line({ ...good, options: 'yes,no' }), /:1: expected "options" to be a list of strings.*got "yes,no"/],
    ['options as an object', line({ ...good, options: { a: 'yes' } }), /:1: expected "options" to be a list of strings.*got \{"a":"yes"\}/],
    ['options null', line({ ...good, options: null }), /:1: expected "options" to be a list of strings.*got null/],
    ['a non-string option', line({ ...good, options: ['yes', 2] }), /:1: expected options\[1\] to be a string, got 2/],
    ['duplicate options', line(good) + line({ ...good, options: ['yes', 'no', 'yes'] }), /:2: option "yes" appears twice/],
    ['output not among the options', line({ ...good, output: 'maybe' }), /:1: output "maybe" is not one of the options/],
    ['output as a list', line({ ...good, output: ['yes'] }), /:1: expected "output" to be a string, got \["yes"\]/],
    ['input missing', line({ task: 't', output: 'yes', options: ['yes'] }), /:1: expected "input" to be a string/],
    ['a line that is an array', line(good) + '[1,2]\n', /:2: expected a JSON object/],
    ['invalid JSON', line(good) + '{"input": \n', /:2: invalid JSON/],
    ['invalid UTF-8', Buffer.concat([Buffer.from(line(good)), Buffer.from('{"task":"t","input":"'), Buffer.from([0xc3, 0x28]), Buffer.from('","output":"yes","options":["yes"]}\n')]), /:2: not valid UTF-8/],
  ];
  for (const [what, content, re] of bad) {
    it(`rejects ${what}, naming file:line on one line`, () => {
      const p = file(content);
      assert.throws(() => readExamples(p), (e: Error) => e.message.startsWith(p + ':') && re.test(e.message) && !e.message.includes('\n'));
    });
  }

  it('every shipped task file and split loads', () => {
    let files = 0, examples = 0, open = 0;
    for (const t of readdirSync(CROSSFIT)) {
      if (t === '_config') continue;
      for (const f of readdirSync(join(CROSSFIT, t))) {
        const ex = readExamples(join(CROSSFIT, t, f));
        files++; examples += ex.length; open += ex.filter((e) => e.options.length === 0).length;
      }
    }
    assert.ok(files > 800 && examples > 25_000, `${files} files, ${examples} examples`);
    assert.ok(open > 2000, 'open-answer tasks are shipped with "options": []');
    for (const s of readdirSync(join(CROSSFIT, '_config'))) assert.ok(loadSplit(CROSSFIT, s.replace(/\.json$/, '')).test.length > 0);
  });
});
