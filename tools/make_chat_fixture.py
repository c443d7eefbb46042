#!/usr/bin/env python3
"""Golden fixtures for the chat template renderer and chat encoding (test/fixtures/chat/).

Run (jinja2 + Hugging Face `tokenizers`, both from offline wheels):
  python3 -m venv /tmp/chatvenv
  /tmp/chatvenv/bin/pip install --no-index --no-deps /opt/pypi/files/tokenizers-0.22.2-*.whl \
      /opt/pypi/files/jinja2-3.1.6-*.whl /opt/pypi/files/markupsafe-3.0.3-cp311-*.whl
  /tmp/chatvenv/bin/python tools/make_chat_fixture.py

Outputs
  templates.json   real chat templates (the GPT-2/BERT family ones read from src/models/*.ts, and
                   hub templates: Zephyr, Llama-2 chat, Llama-3, Mistral, Qwen2, Qwen2.5 with tools,
                   plus one exercising the rest of the subset) rendered by jinja2 the way
                   transformers' apply_chat_template does (ImmutableSandboxedEnvironment,
                   trim_blocks, lstrip_blocks, loopcontrols, raise_exception, transformers' tojson).
  fastchat_sample.json, glaive_sample.json, v1_sft_sample.jsonl
                   a few records copied verbatim from ../shared/data/chat/ (tests must not read shared/).
  encode_golden.json
                   those conversations rendered with the GPT-2 family (ChatML) template, cut at the
                   assistant spans found by the prefix rule (render(messages[:i], add_generation_prompt)
                   vs render(messages[:i+1])), tokenised by HF `tokenizers` (GPT-2 byte-level BPE from
                   test/fixtures/tokenizers/gpt2 + <|im_start|>/<|im_end|> as special tokens): ids and
                   labels (-100 outside assistant spans). Also checked: tokenising the whole render at
                   once and labelling by offsets gives the same ids and labels.
"""
import json
import os
import re

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.ext import loopcontrols
from tokenizers import Tokenizer, AddedToken
from tokenizers.models import BPE
from tokenizers.pre_tokenizers import ByteLevel
from tokenizers.decoders import ByteLevel as ByteLevelDecoder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get('SHARED_DATA', '/work/shared/data')
OUT = os.path.join(ROOT, 'test', 'fixtures', 'chat')


class TemplateRaised(Exception):
    pass


def raise_exception(msg):
    raise TemplateRaised(msg)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # transformers' own tojson filter (jinja2's would HTML-escape)
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
env.filters['tojson'] = tojson
env.globals['raise_exception'] = raise_exception


def render(src, **kw):
    return env.from_string(src).render(**kw)


def family_template(path):
    text = open(os.path.join(ROOT, path), encoding='utf-8').read()
    m = re.search(r'chat: \{\s*template: ("(?:[^"\\]|\\.)*")', text)
    return json.loads(m.group(1))


T = {}
T['gpt2'] = family_template('src/models/gpt2.ts')
T['bert'] = family_template('src/models/bert.ts')
T['zephyr'] = ("{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n"
               "{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n"
               "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n"
               "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}")
T['llama2'] = ("{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}"
               "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
               "{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
               "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
               "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
               "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
               "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
               "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}")
T['llama3'] = ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + "
               "'<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
               "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
T['mistral'] = ("{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
                "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
                "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
                "{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}")
T['qwen2'] = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
              "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
              "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
              "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
T['qwen25'] = r'''{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
'''
# The rest of the subset, in one template: namespace, slices, filters, tests, loop fields, literals,
# operators, comments, whitespace control, break/continue, conditional expressions.
T['features'] = r'''{# a comment that disappears #}
{% set ns = namespace(sys='', n=0, seen=[]) %}
{% for m in messages if m.role != 'tool' %}
  {% if m.role == 'system' %}{% set ns.sys = ns.sys ~ m.content | trim %}{% continue %}{% endif %}
  {% set ns.n = ns.n + 1 %}
  {% set ns.seen = ns.seen + [m.role] %}
  [{{ loop.index }}/{{ loop.length }} {{ loop.index0 }} {{ loop.revindex }} first={{ loop.first }} last={{ loop.last }}]
  {{- m.role | upper }}: {{ m.content | replace('\n', ' / ') }}{{ ' (long)' if m.content | length > 20 else '' }}
  {% if loop.index0 >= 4 %}{% break %}{% endif %}
{% endfor %}
sys={{ ns.sys | default('none', true) }} n={{ ns.n }} roles={{ ns.seen | join(',') }} first={{ (messages | first).role }} last={{ (messages | last)['role'] }}
{{- '\n' -}}
slices: {{ messages[1:] | length }} {{ messages[-1].content[:5] }} {{ 'abcdef'[::2] }} {{ 'abcdef'[::-1] }} {{ [1, 2, 3, 4][1:-1] }}
math: {{ 7 // 2 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 3 * 4 - 5 }} {{ 'ab' * 3 }} {{ 10 - 2 - 3 }} {{ 1 + 2 * 3 }}
cmp: {{ 1 < 2 < 3 }} {{ 2 >= 3 }} {{ 'x' in 'xyz' }} {{ 'q' not in ['a', 'b'] }} {{ 'a' in {'a': 1} }} {{ not none }} {{ none == none }}
tests: {{ foo is defined }} {{ messages is defined }} {{ none is none }} {{ 'a' is string }} {{ 3 is string }} {{ extra is not none }} {{ 4 is divisibleby 2 }} {{ [1] is sequence }}
values: {{ none }} {{ true }} {{ [1, 'a', none, false, {'k': 'v'}] }} {{ {'b': 1, 'a': [1, 2]} | tojson }} {{ {'b': 1, 'a': 'é"'} | tojson(indent=2) }}
strings: {{ 'tab\there' }} {{ "quote's" ~ 'x\'y' }} {{ '  pad  ' | trim }}|{{ 'Hello World' | lower }} {{ 'a,b,,c'.split(',') }} {{ ' x y '.split() }} {{ '[[x]]'.strip('[]') }} {{ 'hello'.startswith('he') }} {{ 42 | string ~ '!' }}
{{- extra.key | default('dflt') }} {{ extra['list'] | join('+') }} {{ extra.missing | default('missing') }} {{ extra.get('key') }} {% for k, v in extra.items() %}{{ k }}={{ v }};{% endfor %}

undefined: [{% for t in nothing %}x{% endfor %}]{{ nothing | join(',') }}|{{ nothing | length }}|{{ nothing is iterable }}
json: {{ "\x7f\x01é\u2028\t" | tojson }} {{ [none, true, 'x', {'k': [1]}] | tojson }} {{ {'b': 2, 'a': 1} | tojson(sort_keys=true) }}
{%- if add_generation_prompt %}

GEN{{ bos_token }}{{ eos_token }}
{%- endif %}
'''

# Qwen3-style: reverse loop with a namespace flag, think-tag splitting, `is false` tests.
T['qwen3'] = r'''{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and message.content is string and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.content is string %}
        {%- set content = message.content %}
    {%- else %}
        {%- set content = '' %}
    {%- endif %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "system" %}
        {{- '<|im_start|>system\n' + content + '<|im_end|>\n' }}
    {%- elif message.role == "assistant" %}
        {%- set reasoning_content = '' %}
        {%- if '</think>' in content %}
            {%- set reasoning_content = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
            {%- set content = content.split('</think>')[-1].lstrip('\n') %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\n' + content }}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {{- '<|im_start|>user\n<tool_response>\n' + content + '\n</tool_response><|im_end|>\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}
{%- endif %}'''
# Llama-3.1-style tool bits: items filter, reject with a test, mapping tests, tojson(indent).
T['llama31ish'] = r'''{{- bos_token }}
{%- if builtin_tools is defined %}Tools: {{ builtin_tools | reject('equalto', 'code_interpreter') | join(", ") }}
{% endif %}
{%- if tools is not none %}{{- tools | tojson(indent=4) }}{{ "

" }}{% endif %}
{%- for message in messages %}
    {%- if message.tool_calls is defined and message.tool_calls | length == 1 %}
        {%- set tool_call = message.tool_calls[0].function %}
        {{- '<|python_tag|>' + tool_call.name + '.call(' }}
        {%- for arg_name, arg_val in tool_call.arguments | items %}
            {{- arg_name + '="' + arg_val + '"' }}
            {%- if not loop.last %}{{- ", " }}{% endif %}
        {%- endfor %}
        {{- ")<|eom_id|>" }}
    {%- elif message.content is mapping or message.content is string %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>

' + message['content'] | trim + '<|eot_id|>' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>

' }}{%- endif %}'''

# Macros, as newer Qwen templates render multimodal content through one.
T['macros'] = r'''{%- macro render_content(content, sep='') -%}
    {%- if content is string -%}{{ content }}
    {%- else -%}
        {%- for item in content -%}
            {%- if item.type == 'text' -%}{{ sep if not loop.first }}{{ item.text }}{%- endif -%}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro -%}
{%- macro header(role) %}<|im_start|>{{ role }}
{% endmacro %}
{%- for message in messages -%}
{{ header(message.role) }}{{ render_content(message.content, sep=' | ') }}<|im_end|>
{% endfor -%}
{%- if add_generation_prompt %}{{ header('assistant') }}{% endif %}'''

with open(os.path.join(OUT if os.path.isdir(OUT) else (os.makedirs(OUT) or OUT), '.keep'), 'w'):
    pass
os.remove(os.path.join(OUT, '.keep'))

base = [
    {'role': 'system', 'content': 'You are a terse assistant.'},
    {'role': 'user', 'content': 'Hi there!\nHow are you?'},
    {'role': 'assistant', 'content': '  Fine, thanks.  '},
    {'role': 'user', 'content': 'Name a colour.'},
    {'role': 'assistant', 'content': 'Blue — «bleu» 蓝.'},
]
no_sys = base[1:]
tool_msgs = [
    {'role': 'system', 'content': 'Use tools.'},
    {'role': 'user', 'content': 'Weather in Paris?'},
    {'role': 'assistant', 'content': '', 'tool_calls': [{'type': 'function', 'function': {'name': 'get_weather', 'arguments': {'city': 'Paris', 'unit': 'C'}}}]},
    {'role': 'tool', 'content': '{"temp": 21}'},
    {'role': 'tool', 'content': '{"sky": "clear"}'},
    {'role': 'assistant', 'content': 'It is 21 °C and clear.'},
]
tools = [{'type': 'function', 'function': {'name': 'get_weather', 'description': 'Weather for a city', 'parameters': {'type': 'object', 'properties': {'city': {'type': 'string'}}, 'required': ['city']}}}]
tok_vars = {'bos_token': '<s>', 'eos_token': '</s>'}

cases = []


def case(name, template, **vars_):
    kw = dict(tok_vars)
    kw.update(vars_)
    kw.setdefault('add_generation_prompt', False)
    try:
        out = {'output': render(T[template], **kw)}
    except TemplateRaised as e:
        out = {'error': str(e)}
    cases.append({'name': name, 'template': template, 'vars': kw, **out})


for tpl in ['gpt2', 'bert', 'zephyr', 'llama3', 'qwen2', 'qwen25']:
    case(f'{tpl} with system', tpl, messages=base)
    case(f'{tpl} prompt', tpl, messages=base[:4], add_generation_prompt=True)
    case(f'{tpl} no system', tpl, messages=no_sys)
case('llama2 with system', 'llama2', messages=base)
case('llama2 no system', 'llama2', messages=no_sys)
case('llama2 non-alternating roles raise', 'llama2', messages=[base[1], base[1]])
case('mistral', 'mistral', messages=no_sys)
case('mistral system raises', 'mistral', messages=[base[1], base[2], base[0]])
case('qwen25 tools', 'qwen25', messages=tool_msgs, tools=tools, add_generation_prompt=True)
case('qwen25 tool calls without tools', 'qwen25', messages=tool_msgs)
think = [
    {'role': 'user', 'content': 'Q1'},
    {'role': 'assistant', 'content': '<think>\nold reasoning\n</think>\n\nA1'},
    {'role': 'user', 'content': 'Q2'},
    {'role': 'assistant', 'content': '<think>\nnew reasoning\n</think>\n\nA2'},
    {'role': 'tool', 'content': '<tool_response>x</tool_response>'},
]
case('qwen3 thinking', 'qwen3', messages=[{'role': 'system', 'content': 'S'}] + think)
case('qwen3 prompt without thinking', 'qwen3', messages=think[:3], add_generation_prompt=True, enable_thinking=False)
case('llama31ish tool call', 'llama31ish', messages=tool_msgs[1:3] + [{'role': 'assistant', 'content': 'done'}], tools=tools,
     builtin_tools=['brave_search', 'code_interpreter', 'wolfram_alpha'], add_generation_prompt=True)
case('llama31ish no tools', 'llama31ish', messages=[{'role': 'assistant', 'content': 'x', 'tool_calls': [{'function': {'name': 'f', 'arguments': {'a': '1', 'b': '2'}}}]}], tools=None)
case('macros', 'macros', messages=[{'role': 'user', 'content': [{'type': 'text', 'text': 'a'}, {'type': 'image'}, {'type': 'text', 'text': 'b'}]},
                                   {'role': 'assistant', 'content': 'plain'}], add_generation_prompt=True)
case('features', 'features', messages=base + [{'role': 'tool', 'content': 'ignored'}], extra={'key': 'K', 'list': [1, 2, 3]})
case('features prompt', 'features', messages=no_sys + no_sys + no_sys, add_generation_prompt=True, extra={'key': None, 'list': []})

json.dump({'generator': 'tools/make_chat_fixture.py', 'jinja2': jinja2.__version__, 'templates': T, 'cases': cases},
          open(os.path.join(OUT, 'templates.json'), 'w', encoding='utf-8'), ensure_ascii=False, indent=1)

# ------------------------------------------------------------------------------- conversations

fastchat = json.load(open(os.path.join(SHARED, 'chat/fastchat/dummy_conversation.json'), encoding='utf-8'))
glaive = json.load(open(os.path.join(SHARED, 'chat/llamafactory-demo/glaive_toolcall_en_demo.json'), encoding='utf-8'))
v1 = open(os.path.join(SHARED, 'chat/llamafactory-demo/v1_sft_demo.jsonl'), encoding='utf-8').read().splitlines()

# Multi-turn FastChat conversations (4+ turns), and the first glaive record with a function call.
fc_pick = [r for r in fastchat if len(r['conversations']) >= 4][:3]
gl_pick = [r for r in glaive if any(t['from'] == 'function_call' for t in r['conversations'])][:1]
json.dump(fc_pick, open(os.path.join(OUT, 'fastchat_sample.json'), 'w', encoding='utf-8'), ensure_ascii=False, indent=1)
json.dump(gl_pick, open(os.path.join(OUT, 'glaive_sample.json'), 'w', encoding='utf-8'), ensure_ascii=False, indent=1)
open(os.path.join(OUT, 'v1_sft_sample.jsonl'), 'w', encoding='utf-8').write('\n'.join(v1[:3]) + '\n')

SHAREGPT = {'human': 'user', 'gpt': 'assistant', 'function_call': 'assistant', 'observation': 'tool', 'system': 'system'}


def messages_of(rec, template):
    msgs = [{'role': SHAREGPT[t['from']], 'content': t['value']} for t in rec['conversations']]
    tools_text = rec.get('tools')
    if tools_text and not re.search(r'\btools\b', template):
        # A template that ignores `tools` gets them as system text (src/data/chat-encode.ts does the same).
        if msgs[0]['role'] == 'system':
            msgs[0] = {'role': 'system', 'content': msgs[0]['content'] + '\n\n' + tools_text}
        else:
            msgs.insert(0, {'role': 'system', 'content': tools_text})
    return msgs


bpe_dir = os.path.join(ROOT, 'test', 'fixtures', 'tokenizers', 'gpt2')
vocab = json.load(open(os.path.join(bpe_dir, 'encoder.json'), encoding='utf-8'))
merges = [tuple(l.split(' ')) for l in open(os.path.join(bpe_dir, 'vocab.bpe'), encoding='utf-8').read().split('\n')[1:] if l]
tk = Tokenizer(BPE(vocab, merges))
tk.pre_tokenizer = ByteLevel(add_prefix_space=False)
tk.decoder = ByteLevelDecoder()
tk.add_special_tokens([AddedToken('<|endoftext|>', special=True, normalized=False)])
chat_ids = tk.add_special_tokens([AddedToken('<|im_start|>', special=True, normalized=False), AddedToken('<|im_end|>', special=True, normalized=False)])
assert tk.token_to_id('<|im_start|>') == 50257 and tk.token_to_id('<|im_end|>') == 50258


def encode_record(msgs, template):
    full = render(template, messages=msgs, add_generation_prompt=False, bos_token='<|endoftext|>', eos_token='<|endoftext|>')
    spans = []
    for i, m in enumerate(msgs):
        if m['role'] != 'assistant':
            continue
        prompt = render(template, messages=msgs[:i], add_generation_prompt=True, bos_token='<|endoftext|>', eos_token='<|endoftext|>')
        upto = render(template, messages=msgs[:i + 1], add_generation_prompt=False, bos_token='<|endoftext|>', eos_token='<|endoftext|>')
        assert upto.startswith(prompt) and full.startswith(upto)
        spans.append((len(prompt), len(upto)))
    ids, labels, pos = [], [], 0
    for a, b in spans:
        for (s, e, learn) in ((pos, a, False), (a, b, True)):
            piece = tk.encode(full[s:e], add_special_tokens=False).ids if e > s else []
            ids += piece
            labels += piece if learn else [-100] * len(piece)
        pos = b
    tail = tk.encode(full[pos:], add_special_tokens=False).ids if pos < len(full) else []
    ids += tail
    labels += [-100] * len(tail)
    # Cross-check: the whole render tokenised at once, labelled by character offsets, agrees.
    enc = tk.encode(full, add_special_tokens=False)
    assert enc.ids == ids, 'piecewise tokenisation differs from whole-text tokenisation'
    lab2 = [tid if any(a <= s and e <= b for a, b in spans) else -100 for tid, (s, e) in zip(enc.ids, enc.offsets)]
    assert lab2 == labels, 'offset labels differ'
    return {'text': full, 'spans': spans, 'ids': ids, 'labels': labels}


gold = []
for src, recs in (('fastchat_sample.json', fc_pick), ('glaive_sample.json', gl_pick)):
    for j, rec in enumerate(recs):
        msgs = messages_of(rec, T['gpt2'])
        gold.append({'file': src, 'record': j, 'messages': msgs, **encode_record(msgs, T['gpt2'])})
json.dump({'generator': 'tools/make_chat_fixture.py', 'tokenizers': __import__('tokenizers').__version__, 'template': 'gpt2',
           'special_tokens': ['<|im_start|>', '<|im_end|>'], 'special_ids': chat_ids and [50257, 50258], 'conversations': gold},
          open(os.path.join(OUT, 'encode_golden.json'), 'w', encoding='utf-8'), ensure_ascii=False)
print('wrote', OUT, len(cases), 'template cases,', len(gold), 'encoded conversations')
