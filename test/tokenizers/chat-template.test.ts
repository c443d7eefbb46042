// Chat template renderer: outputs equal python jinja2's (rendered as transformers does, by
// tools/make_chat_fixture.py) on the family templates and real hub templates; errors are one line
// naming the construct and its position; raise_exception surfaces the template's message.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderChatTemplate, ChatTemplate, TemplateRaisedError } from '../../src/tokenizers/chat-template.js';
import { modelFamily } from '../../src/models/index.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
interface Case { name: string; template: string; vars: Record<string, unknown> & { messages: unknown[] }; output?: string; error?: string }
const fix = JSON.parse(readFileSync(join(ROOT, 'test/fixtures/chat/templates.json'), 'utf8')) as { templates: Record<string, string>; cases: Case[] };

describe('chat template renderer vs jinja2', () => {
  it('fixture templates are the registered family templates', () => {
    assert.equal(fix.templates.gpt2, modelFamily('gpt2').chat.template);
    assert.equal(fix.templates.bert, modelFamily('bert').chat.template);
  });
  for (const c of fix.cases) {
    it(c.name, () => {
      const src = fix.templates[c.template];
      if (c.error !== undefined) {
        assert.throws(() => renderChatTemplate(src, c.vars), (e: Error) => e instanceof TemplateRaisedError && e.message === c.error);
      } else {
        assert.equal(renderChatTemplate(src, c.vars), c.output);
      }
    });
  }
});

describe('chat template details', () => {
  const r = (src: string, vars: Record<string, unknown> = {}) => renderChatTemplate(src, { messages: [], ...vars });

  it('whitespace control, trim_blocks and lstrip_blocks', () => {
    assert.equal(r('a  {{- "b" -}}  c'), 'abc');
    assert.equal(r('x\n    {% if true %}\ny\n    {% endif %}\nz\n'), 'x\ny\nz');
    assert.equal(r('x\n    {%+ if true %}y{% endif +%}\nz'), 'x\n    y\nz');
    assert.equal(r('a {# note #}\nb'), 'a b');
  });

  it('loop scoping: a plain set inside a loop does not leak; namespace attributes do', () => {
    assert.equal(r('{% set x = 1 %}{% for i in [1, 2] %}{% set x = i * 10 %}{{ x }},{% endfor %}{{ x }}'), '10,20,1');
    assert.equal(r('{% set ns = namespace(x=1) %}{% for i in [1, 2] %}{% set ns.x = ns.x + i %}{% endfor %}{{ ns.x }}'), '4');
    assert.equal(r('{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }}{% else %}none{% endfor %}|{% for x in [] %}x{% else %}empty{% endfor %}'), '37|empty');
  });

  it('filters bind tighter than binary operators; conditional expressions', () => {
    assert.equal(r("{{ 'a' + ' b ' | trim + 'c' }}"), 'abc');
    assert.equal(r("{{ 'yes' if messages else 'no' }}{{ 'x' if false }}"), 'no');
    assert.equal(r('{{ -3 | abs }} {{ [3, 1] | first }}'), '3 3');
  });

  it('extra variables and undefined values behave like jinja2', () => {
    assert.equal(r('{{ custom }}|{{ nothing }}|{{ nothing | default("d") }}|{{ nothing is defined }}', { custom: 'C' }), 'C||d|False');
    assert.throws(() => r('{{ nothing.field }}'), (e: Error) => e.message === "chat template line 1:11: 'nothing' is undefined (reading .field)");
  });

  it('raise_exception throws the template message', () => {
    assert.throws(() => r("{{ raise_exception('no system role, please') }}"), (e: Error) => e instanceof TemplateRaisedError && e.message === 'no system role, please');
  });

  it('strftime_now formats the current date (Llama 3.1 templates call it)', () => {
    const d = new Date();
    const got = r("{{ strftime_now('%d %b %Y') }}");
    // Allow the day to roll over between the two clock reads.
    const fmt = (x: Date) => `${String(x.getDate()).padStart(2, '0')} ${x.toLocaleString('en-US', { month: 'short' })} ${x.getFullYear()}`;
    assert.ok(got === fmt(d) || got === fmt(new Date()), got);
  });

  it('remembers which names a template reads', () => {
    assert.ok(new ChatTemplate(fix.templates.qwen25).names.has('tools'));
    assert.ok(!new ChatTemplate(fix.templates.gpt2).names.has('tools'));
  });

  const bad: [string, string, RegExp][] = [
    ['{% call m() %}{% endcall %}', 'a call block', /^chat template line 1:1: unsupported statement \{% call %\}$/],
    ['{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, 2) }}', 'a macro called with too many arguments', /^chat template line 1:1: macro 'm' takes 1 arguments, got 2$/],
    ['ok\n  {% if x %}never closed', 'an unclosed if', /^chat template line 2:3: \{% if %\} is never closed \(expected \{% endif %\}\)$/],
    ['{% endfor %}', 'a stray endfor', /^chat template line 1:1: \{% endfor %\} without a matching \{% for %\}$/],
    ['{{ x | wordwrap }}', 'an unknown filter', /^chat template line 1:6: unsupported filter 'wordwrap'$/],
    ['{{ x is sameas y }}', 'an unknown test', /^chat template line 1:6: unsupported test 'is sameas'$/],
    ['{{ "abc }}', 'an unclosed string', /^chat template line 1:4: string literal is never closed$/],
    ['{{ 1 + }}', 'a missing operand', /^chat template line 1:\d+: .*expression/],
    ['{{ x @ y }}', 'an unknown character', /^chat template line 1:6: unexpected character "@"$/],
    ['{% set a, b = 1, 2 %}', 'tuple assignment', /tuple assignment in \{% set %\} is not supported/],
    ['{% set x %}a{% endset %}', 'block set', /block \{% set %\}…\{% endset %\} is not supported/],
    ['{{ 1 + "a" }}', 'adding a number to text', /^chat template line 1:6: cannot add int and str/],
    ['{% set x = 1 %}{% set x.y = 2 %}', 'setting an attribute on a non-namespace', /can only set attributes on namespace\(\) objects/],
    ['{{ foo', 'an unclosed tag', /^chat template line 1:1: tag opened here is never closed with \}\}$/],
  ];
  for (const [src, what, re] of bad) {
    it(`rejects ${what} in one line`, () => {
      assert.throws(() => r(src, { x: 'v', y: 'w' }), (e: Error) => re.test(e.message) && !e.message.includes('\n'));
    });
  }
});
