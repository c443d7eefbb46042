#!/usr/bin/python3
"""Load a GPT-2 or BERT model directory the way transformers' GPT2LMHeadModel /
BertForMaskedLM.from_pretrained does (dispatch on config.json's model_type), run its forward pass
on the given token ids, and print the logits as JSON.

  /usr/bin/python3 tools/check_model_dir.py DIR ID [ID ...]
  /usr/bin/python3 tools/check_model_dir.py --ids ID,ID,... DIR [DIR ...]   (one JSON line per dir)

An independent check of directories written by icl-distill (test/models/hf-roundtrip.test.ts):
nothing here reads the project's TypeScript or its fixtures. `transformers` and `safetensors`
are not installed, so both are re-implemented from their documented behaviour:

  config.json   GPT2Config defaults for missing keys, attribute_map aliases (hidden_size, ...),
                model_type must be 'gpt2' (AutoConfig dispatches on it), tie_word_embeddings
                defaults to true (PretrainedConfig).
  weights       model.safetensors, or model.safetensors.index.json + shards. safetensors
                validation as the reference implementation does it: u64 LE header length,
                JSON header (no duplicate keys), data_offsets contiguous from 0 and covering the
                data section exactly, byte length = numel * dtype size.
  state dict    GPT2LMHeadModel keys (`transformer.*` + `lm_head.weight`); keys without the
                `transformer.` prefix get it (base_model_prefix); attn.bias / attn.masked_bias
                buffers are ignored (_keys_to_ignore_on_load_unexpected); with tied embeddings
                lm_head.weight is wte.weight (tie_weights), and a stored lm_head.weight that
                differs is an error here. transformers only *warns* about missing or unexpected
                keys and initialises missing ones at random; here both are errors, since a
                directory we wrote must load completely. A shape mismatch is an error in
                transformers too.
  forward       eval mode (no dropout), float64 from the stored weights (from_pretrained
                upcasts F16/BF16 to the default float32; float64 is only a tighter reference):
                h = wte[ids] + wpe[0..T-1]; per block (pre-LN) h += attn(ln_1(h)), h += mlp(ln_2(h));
                Conv1D y = x @ W + b with W [in, out]; scores / sqrt(head_dim) if
                scale_attn_weights, / (layer_idx + 1) if scale_attn_by_inverse_layer_idx; causal
                mask; logits = ln_f(h) @ lm_head.weight.T.

BERT (model_type "bert"), after transformers/models/bert (BertConfig, BertForMaskedLM):
  config.json   BertConfig defaults for missing keys; position_embedding_type must be "absolute".
  state dict    `bert.*` + `cls.predictions.*`; keys without `bert.` get it; LayerNorm `gamma`/`beta`
                are renamed `weight`/`bias` (as from_pretrained does for old checkpoints); the
                pooler, `cls.seq_relationship.*` and `embeddings.position_ids`/`token_type_ids`
                buffers are ignored (BertForMaskedLM has no pooler); the decoder weight is the word
                embeddings (tied; a stored one that differs is an error), the decoder bias is
                cls.predictions.bias.
  forward       eval mode, float64, every token real, token types 0: post-LN encoder,
                nn.Linear y = x Wᵀ + b, logits = LN(act(dense(h))) word_embᵀ + bias.

Output (stdout, one JSON object): {"config": {resolved sizes}, "unknown_keys": [config.json keys
neither GPT2Config nor PretrainedConfig knows], "tied": bool, "dtypes": [...],
"ignored": [buffer names], "shape": [1, T, V], "logits": [flat, row-major]}.
Any problem: one line on stderr naming the file, exit 1 (with --ids: {"dir", "error"} on that
dir's line, exit 1 once all dirs are done); bad arguments exit 2.
"""
import json
import math
import os
import struct
import sys

import torch

# GPT2Config's defaults (transformers/models/gpt2/configuration_gpt2.py) for the keys the
# forward pass reads, and its attribute_map.
DEFAULTS = {
    'vocab_size': 50257, 'n_positions': 1024, 'n_embd': 768, 'n_layer': 12, 'n_head': 12,
    'n_inner': None, 'activation_function': 'gelu_new', 'layer_norm_epsilon': 1e-5,
    'scale_attn_weights': True, 'scale_attn_by_inverse_layer_idx': False,
    'reorder_and_upcast_attn': False, 'tie_word_embeddings': True,
}
ATTRIBUTE_MAP = {'hidden_size': 'n_embd', 'max_position_embeddings': 'n_positions',
                 'num_attention_heads': 'n_head', 'num_hidden_layers': 'n_layer'}

# Keys GPT2Config.__init__ or PretrainedConfig know. transformers keeps any other key as a plain
# attribute that nothing reads (a typo such as n_layers is silently ignored), so they are reported.
KNOWN_KEYS = set(DEFAULTS) | set(ATTRIBUTE_MAP) | {
    'resid_pdrop', 'embd_pdrop', 'attn_pdrop', 'initializer_range', 'summary_type', 'summary_use_proj',
    'summary_activation', 'summary_proj_to_labels', 'summary_first_dropout', 'use_cache', 'n_ctx',
    'bos_token_id', 'eos_token_id', 'pad_token_id', 'sep_token_id', 'decoder_start_token_id',
    'model_type', 'architectures', 'torch_dtype', 'transformers_version', '_name_or_path',
    'return_dict', 'output_hidden_states', 'output_attentions', 'torchscript', 'use_bfloat16',
    'tf_legacy_loss', 'pruned_heads', 'chunk_size_feed_forward', 'is_encoder_decoder', 'is_decoder',
    'cross_attention_hidden_size', 'add_cross_attention', 'tie_encoder_decoder', 'finetuning_task',
    'id2label', 'label2id', 'num_labels', 'tokenizer_class', 'prefix', 'task_specific_params',
    'problem_type', 'max_length', 'min_length', 'do_sample', 'early_stopping', 'num_beams',
    'num_beam_groups', 'diversity_penalty', 'temperature', 'top_k', 'top_p', 'typical_p',
    'repetition_penalty', 'length_penalty', 'no_repeat_ngram_size', 'encoder_no_repeat_ngram_size',
    'bad_words_ids', 'num_return_sequences', 'output_scores', 'return_dict_in_generate',
    'forced_bos_token_id', 'forced_eos_token_id', 'remove_invalid_values',
    'exponential_decay_length_penalty', 'suppress_tokens', 'begin_suppress_tokens',
}

# safetensors dtypes: (element size, torch dtype)
DTYPES = {
    'F64': (8, torch.float64), 'F32': (4, torch.float32), 'F16': (2, torch.float16),
    'BF16': (2, torch.bfloat16), 'I64': (8, torch.int64), 'I32': (4, torch.int32),
    'I16': (2, torch.int16), 'I8': (1, torch.int8), 'U8': (1, torch.uint8), 'BOOL': (1, torch.bool),
}


class CheckError(Exception):
    pass


def fail(msg):
    raise CheckError(msg)


def no_duplicates(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            fail(f'duplicate key {k!r}')
        d[k] = v
    return d


def read_json(path):
    try:
        with open(path, 'rb') as f:
            return json.loads(f.read().decode('utf-8'), object_pairs_hook=no_duplicates)
    except CheckError as e:
        fail(f'{path}: {e}')
    except (OSError, UnicodeDecodeError, ValueError) as e:
        fail(f'{path}: {e}')


def read_safetensors(path):
    """name -> float64 tensor, plus the set of dtypes found."""
    try:
        with open(path, 'rb') as f:
            buf = f.read()
    except OSError as e:
        fail(f'{path}: {e}')
    if len(buf) < 8:
        fail(f'{path}: file of {len(buf)} bytes has no header length')
    (n,) = struct.unpack('<Q', buf[:8])
    if n > len(buf) - 8:
        fail(f'{path}: header length {n} exceeds the file ({len(buf)} bytes)')
    raw = buf[8:8 + n]
    if not raw.startswith(b'{'):
        fail(f'{path}: header does not start with "{{"')
    try:
        header = json.loads(raw.decode('utf-8'), object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, ValueError, CheckError) as e:
        fail(f'{path}: bad header: {e}')
    if not isinstance(header, dict):
        fail(f'{path}: header is not a JSON object')
    meta = header.pop('__metadata__', None)
    if meta is not None and not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        fail(f'{path}: __metadata__ must map strings to strings')
    data = buf[8 + n:]
    entries = []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {'dtype', 'shape', 'data_offsets'}:
            fail(f'{path}: tensor {name!r}: expected exactly dtype, shape, data_offsets')
        if info['dtype'] not in DTYPES:
            fail(f'{path}: tensor {name!r}: unknown dtype {info["dtype"]!r}')
        shape, offs = info['shape'], info['data_offsets']
        if not (isinstance(shape, list) and all(isinstance(s, int) and s >= 0 for s in shape)):
            fail(f'{path}: tensor {name!r}: bad shape {shape!r}')
        if not (isinstance(offs, list) and len(offs) == 2 and all(isinstance(o, int) for o in offs) and 0 <= offs[0] <= offs[1]):
            fail(f'{path}: tensor {name!r}: bad data_offsets {offs!r}')
        entries.append((offs[0], offs[1], name, info['dtype'], shape))
    entries.sort()
    end = 0
    out, dtypes = {}, set()
    for a, b, name, dt, shape in entries:
        if a != end:
            fail(f'{path}: tensor {name!r} starts at {a}, expected {end} (gap or overlap)')
        size, tdt = DTYPES[dt]
        numel = math.prod(shape)
        if b - a != numel * size:
            fail(f'{path}: tensor {name!r}: {b - a} bytes for {dt} {shape} (expected {numel * size})')
        end = b
        t = torch.frombuffer(bytearray(data[a:b]), dtype=tdt) if numel else torch.empty(0, dtype=tdt)
        out[name] = t.reshape(shape).to(torch.float64)
        dtypes.add(dt)
    if end != len(data):
        fail(f'{path}: tensors cover {end} of the {len(data)} data bytes')
    return out, dtypes


def load_weights(d):
    single = os.path.join(d, 'model.safetensors')
    index = os.path.join(d, 'model.safetensors.index.json')
    if os.path.exists(single):
        return read_safetensors(single)
    if not os.path.exists(index):
        fail(f'{d}: no model.safetensors or model.safetensors.index.json')
    idx = read_json(index)
    wm = idx.get('weight_map') if isinstance(idx, dict) else None
    if not isinstance(wm, dict) or not wm:
        fail(f'{index}: no weight_map')
    out, dtypes = {}, set()
    for shard in sorted(set(wm.values())):
        if not isinstance(shard, str) or os.path.basename(shard) != shard:
            fail(f'{index}: bad shard name {shard!r}')
        tensors, dts = read_safetensors(os.path.join(d, shard))
        for name in tensors:
            if wm.get(name) != shard:
                fail(f'{os.path.join(d, shard)}: tensor {name!r} is not mapped to this shard in {index}')
            if name in out:
                fail(f'{os.path.join(d, shard)}: tensor {name!r} appears in two shards')
        out.update(tensors)
        dtypes |= dts
    for name, shard in wm.items():
        if name not in out:
            fail(f'{index}: {name!r} is mapped to {shard} but that shard does not hold it')
    return out, dtypes


def resolve_config(d, raw=None):
    path = os.path.join(d, 'config.json')
    raw = read_json(path) if raw is None else raw
    if not isinstance(raw, dict):
        fail(f'{path}: not a JSON object')
    if raw.get('model_type') != 'gpt2':
        fail(f'{path}: model_type is {raw.get("model_type")!r}; AutoConfig needs "gpt2" or "bert"')
    cfg = dict(DEFAULTS)
    for k, v in raw.items():
        cfg[ATTRIBUTE_MAP.get(k, k)] = v
    for k in ('vocab_size', 'n_positions', 'n_embd', 'n_layer', 'n_head'):
        if not (isinstance(cfg[k], int) and not isinstance(cfg[k], bool) and cfg[k] > 0):
            fail(f'{path}: {k} must be a positive integer, got {cfg[k]!r}')
    if cfg['n_embd'] % cfg['n_head']:
        fail(f'{path}: n_embd {cfg["n_embd"]} is not divisible by n_head {cfg["n_head"]}')
    if cfg['n_inner'] is not None and not (isinstance(cfg['n_inner'], int) and cfg['n_inner'] > 0):
        fail(f'{path}: n_inner must be null or a positive integer, got {cfg["n_inner"]!r}')
    for k in ('scale_attn_weights', 'scale_attn_by_inverse_layer_idx', 'tie_word_embeddings'):
        if not isinstance(cfg[k], bool):
            fail(f'{path}: {k} must be true or false, got {cfg[k]!r}')
    if not isinstance(cfg['layer_norm_epsilon'], (int, float)) or cfg['layer_norm_epsilon'] <= 0:
        fail(f'{path}: layer_norm_epsilon must be a positive number')
    if cfg['activation_function'] not in ACT:
        fail(f'{path}: activation_function {cfg["activation_function"]!r} is not in transformers ACT2FN (checked here: {", ".join(sorted(ACT))})')
    cfg['_unknown_keys'] = sorted(k for k in raw if k not in KNOWN_KEYS)
    return cfg


def expected_shapes(cfg):
    V, P, C, L = cfg['vocab_size'], cfg['n_positions'], cfg['n_embd'], cfg['n_layer']
    inner = cfg['n_inner'] or 4 * C
    s = {'transformer.wte.weight': [V, C], 'transformer.wpe.weight': [P, C],
         'transformer.ln_f.weight': [C], 'transformer.ln_f.bias': [C], 'lm_head.weight': [V, C]}
    for i in range(L):
        p = f'transformer.h.{i}.'
        s.update({p + 'ln_1.weight': [C], p + 'ln_1.bias': [C],
                  p + 'attn.c_attn.weight': [C, 3 * C], p + 'attn.c_attn.bias': [3 * C],
                  p + 'attn.c_proj.weight': [C, C], p + 'attn.c_proj.bias': [C],
                  p + 'ln_2.weight': [C], p + 'ln_2.bias': [C],
                  p + 'mlp.c_fc.weight': [C, inner], p + 'mlp.c_fc.bias': [inner],
                  p + 'mlp.c_proj.weight': [inner, C], p + 'mlp.c_proj.bias': [C]})
    return s


def build_state(d, cfg, tensors):
    where = d
    # base_model_prefix handling: a checkpoint without `transformer.` gets it added.
    if not any(k.startswith('transformer.') for k in tensors):
        tensors = {(k if k == 'lm_head.weight' else 'transformer.' + k): v for k, v in tensors.items()}
    want = expected_shapes(cfg)
    ignored = []
    state = {}
    for k, v in tensors.items():
        parts = k.split('.')
        if len(parts) == 5 and parts[:2] == ['transformer', 'h'] and parts[3] == 'attn' and parts[4] in ('bias', 'masked_bias'):
            ignored.append(k)
        elif k not in want:
            fail(f'{where}: unexpected tensor {k!r} (transformers would drop it)')
        else:
            state[k] = v
    tied = cfg['tie_word_embeddings']
    for k, shape in want.items():  # model order, so the first problem reported is stable
        if k not in state:
            if k == 'lm_head.weight' and tied:
                continue
            fail(f'{where}: missing tensor {k!r} (transformers would initialise it at random)')
        if list(state[k].shape) != shape:
            fail(f'{where}: {k} has shape {list(state[k].shape)}, GPT2LMHeadModel expects {shape}')
    if tied:
        if 'lm_head.weight' in state and not torch.equal(state['lm_head.weight'], state['transformer.wte.weight']):
            fail(f'{where}: tie_word_embeddings is true but lm_head.weight differs from transformer.wte.weight')
        state['lm_head.weight'] = state['transformer.wte.weight']
    return state, tied, sorted(ignored)


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


ACT = {
    'gelu_new': gelu_new,
    'gelu_pytorch_tanh': lambda x: torch.nn.functional.gelu(x, approximate='tanh'),
    'gelu': lambda x: torch.nn.functional.gelu(x),
    'gelu_fast': lambda x: 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x))),
    'quick_gelu': lambda x: x * torch.sigmoid(1.702 * x),
    'relu': torch.relu,
    'silu': torch.nn.functional.silu,
    'swish': torch.nn.functional.silu,
    'tanh': torch.tanh,
}


def forward(cfg, w, ids):
    C, H, L = cfg['n_embd'], cfg['n_head'], cfg['n_layer']
    D = C // H
    eps = float(cfg['layer_norm_epsilon'])
    act = ACT[cfg['activation_function']]
    T = len(ids)
    x = torch.tensor([ids], dtype=torch.long)
    h = w['transformer.wte.weight'][x] + w['transformer.wpe.weight'][torch.arange(T)].unsqueeze(0)
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool)).view(1, 1, T, T)
    fmin = torch.tensor(torch.finfo(torch.float64).min, dtype=torch.float64)

    def ln(t, name):
        return torch.nn.functional.layer_norm(t, (C,), w[name + '.weight'], w[name + '.bias'], eps)

    def conv1d(t, name):
        return t @ w[name + '.weight'] + w[name + '.bias']

    for i in range(L):
        p = f'transformer.h.{i}.'
        q, k, v = conv1d(ln(h, p + 'ln_1'), p + 'attn.c_attn').split(C, dim=2)
        q, k, v = (t.view(1, T, H, D).permute(0, 2, 1, 3) for t in (q, k, v))
        att = q @ k.transpose(-1, -2)
        if cfg['scale_attn_weights']:
            att = att / math.sqrt(D)
        if cfg['scale_attn_by_inverse_layer_idx']:
            att = att / float(i + 1)
        att = torch.softmax(torch.where(causal, att, fmin), dim=-1)
        o = (att @ v).permute(0, 2, 1, 3).reshape(1, T, C)
        h = h + conv1d(o, p + 'attn.c_proj')
        h = h + conv1d(act(conv1d(ln(h, p + 'ln_2'), p + 'mlp.c_fc')), p + 'mlp.c_proj')
    return ln(h, 'transformer.ln_f') @ w['lm_head.weight'].T


def check(d, ids):
    if not os.path.isdir(d):
        fail(f'{d}: not a directory')
    raw = read_json(os.path.join(d, 'config.json'))
    if isinstance(raw, dict) and raw.get('model_type') == 'bert':
        return check_bert(d, raw, ids)
    cfg = resolve_config(d, raw)
    for t in ids:
        if not 0 <= t < cfg['vocab_size']:
            fail(f'{d}: token id {t} is outside the vocabulary of {cfg["vocab_size"]}')
    if len(ids) > cfg['n_positions']:
        fail(f'{d}: {len(ids)} tokens exceed n_positions {cfg["n_positions"]}')
    tensors, dtypes = load_weights(d)
    state, tied, ignored = build_state(d, cfg, tensors)
    with torch.no_grad():
        logits = forward(cfg, state, ids)
    return {'config': {k: cfg[k] for k in DEFAULTS}, 'unknown_keys': cfg['_unknown_keys'], 'tied': tied,
            'dtypes': sorted(dtypes), 'ignored': ignored, 'shape': list(logits.shape),
            'logits': logits.flatten().tolist()}


# ------------------------------------------------------------------------------------------
# BERT

# BertConfig's defaults (transformers/models/bert/configuration_bert.py).
BERT_DEFAULTS = {
    'vocab_size': 30522, 'hidden_size': 768, 'num_hidden_layers': 12, 'num_attention_heads': 12,
    'intermediate_size': 3072, 'hidden_act': 'gelu', 'max_position_embeddings': 512, 'type_vocab_size': 2,
    'layer_norm_eps': 1e-12, 'position_embedding_type': 'absolute', 'tie_word_embeddings': True,
}
BERT_KNOWN = (KNOWN_KEYS - set(DEFAULTS) - set(ATTRIBUTE_MAP) - {'n_ctx', 'summary_type', 'summary_use_proj',
              'summary_activation', 'summary_proj_to_labels', 'summary_first_dropout', 'resid_pdrop', 'embd_pdrop',
              'attn_pdrop'}) | set(BERT_DEFAULTS) | {'hidden_dropout_prob', 'attention_probs_dropout_prob',
              'classifier_dropout', 'gradient_checkpointing', 'tie_word_embeddings', 'add_cross_attention'}
BERT_IGNORED = ('bert.pooler.dense.weight', 'bert.pooler.dense.bias', 'cls.seq_relationship.weight',
                'cls.seq_relationship.bias', 'bert.embeddings.position_ids', 'bert.embeddings.token_type_ids')


def resolve_bert_config(d, raw):
    path = os.path.join(d, 'config.json')
    cfg = dict(BERT_DEFAULTS)
    cfg.update(raw)
    for k in ('vocab_size', 'hidden_size', 'num_hidden_layers', 'num_attention_heads', 'intermediate_size',
              'max_position_embeddings', 'type_vocab_size'):
        if not (isinstance(cfg[k], int) and not isinstance(cfg[k], bool) and cfg[k] > 0):
            fail(f'{path}: {k} must be a positive integer, got {cfg[k]!r}')
    if cfg['hidden_size'] % cfg['num_attention_heads']:
        fail(f'{path}: hidden_size {cfg["hidden_size"]} is not divisible by num_attention_heads {cfg["num_attention_heads"]}')
    if cfg['position_embedding_type'] != 'absolute':
        fail(f'{path}: position_embedding_type {cfg["position_embedding_type"]!r} is not checked here (absolute only)')
    if cfg['hidden_act'] not in ACT:
        fail(f'{path}: hidden_act {cfg["hidden_act"]!r} is not in transformers ACT2FN (checked here: {", ".join(sorted(ACT))})')
    if cfg['tie_word_embeddings'] is not True:
        fail(f'{path}: tie_word_embeddings must be true here')
    cfg['_unknown_keys'] = sorted(k for k in raw if k not in BERT_KNOWN)
    return cfg


def bert_expected_shapes(cfg):
    V, P, C, L, I, TV = (cfg[k] for k in ('vocab_size', 'max_position_embeddings', 'hidden_size', 'num_hidden_layers',
                                          'intermediate_size', 'type_vocab_size'))
    s = {'bert.embeddings.word_embeddings.weight': [V, C], 'bert.embeddings.position_embeddings.weight': [P, C],
         'bert.embeddings.token_type_embeddings.weight': [TV, C],
         'bert.embeddings.LayerNorm.weight': [C], 'bert.embeddings.LayerNorm.bias': [C]}
    for i in range(L):
        p = f'bert.encoder.layer.{i}.'
        for n in ('query', 'key', 'value'):
            s[p + f'attention.self.{n}.weight'] = [C, C]
            s[p + f'attention.self.{n}.bias'] = [C]
        s.update({p + 'attention.output.dense.weight': [C, C], p + 'attention.output.dense.bias': [C],
                  p + 'attention.output.LayerNorm.weight': [C], p + 'attention.output.LayerNorm.bias': [C],
                  p + 'intermediate.dense.weight': [I, C], p + 'intermediate.dense.bias': [I],
                  p + 'output.dense.weight': [C, I], p + 'output.dense.bias': [C],
                  p + 'output.LayerNorm.weight': [C], p + 'output.LayerNorm.bias': [C]})
    s.update({'cls.predictions.transform.dense.weight': [C, C], 'cls.predictions.transform.dense.bias': [C],
              'cls.predictions.transform.LayerNorm.weight': [C], 'cls.predictions.transform.LayerNorm.bias': [C],
              'cls.predictions.bias': [V], 'cls.predictions.decoder.weight': [V, C], 'cls.predictions.decoder.bias': [V]})
    return s


def build_bert_state(d, cfg, tensors):
    state, ignored = {}, []
    for k, v in tensors.items():
        n = 'bert.' + k if k.split('.')[0] in ('embeddings', 'encoder', 'pooler') else k
        if n.endswith('.gamma'):
            n = n[:-len('gamma')] + 'weight'
        elif n.endswith('.beta'):
            n = n[:-len('beta')] + 'bias'
        if n in BERT_IGNORED:
            ignored.append(k)
            continue
        if n in state:
            fail(f'{d}: two tensors map to {n!r}')
        state[n] = v
    want = bert_expected_shapes(cfg)
    for k in state:
        if k not in want:
            fail(f'{d}: unexpected tensor {k!r} (transformers would drop it)')
    wte = state.get('bert.embeddings.word_embeddings.weight')
    if 'cls.predictions.decoder.weight' in state:
        if wte is None or not torch.equal(state['cls.predictions.decoder.weight'], wte):
            fail(f'{d}: cls.predictions.decoder.weight differs from the word embeddings (the decoder is tied)')
    elif wte is not None:
        state['cls.predictions.decoder.weight'] = wte
    if 'cls.predictions.bias' not in state and 'cls.predictions.decoder.bias' in state:
        state['cls.predictions.bias'] = state['cls.predictions.decoder.bias']
    state.setdefault('cls.predictions.decoder.bias', state.get('cls.predictions.bias'))
    for k, shape in want.items():
        if state.get(k) is None:
            fail(f'{d}: missing tensor {k!r} (transformers would initialise it at random)')
        if list(state[k].shape) != shape:
            fail(f'{d}: {k} has shape {list(state[k].shape)}, BertForMaskedLM expects {shape}')
    if not torch.equal(state['cls.predictions.decoder.bias'], state['cls.predictions.bias']):
        fail(f'{d}: cls.predictions.decoder.bias differs from cls.predictions.bias (tied in transformers)')
    return state, sorted(ignored)


def bert_forward(cfg, w, ids):
    C, H, L = cfg['hidden_size'], cfg['num_attention_heads'], cfg['num_hidden_layers']
    D, eps, act = C // H, float(cfg['layer_norm_eps']), ACT[cfg['hidden_act']]
    T = len(ids)
    x = torch.tensor([ids], dtype=torch.long)

    def ln(t, name):
        return torch.nn.functional.layer_norm(t, (C,), w[name + '.weight'], w[name + '.bias'], eps)

    def lin(t, name):
        return t @ w[name + '.weight'].T + w[name + '.bias']

    e = 'bert.embeddings.'
    h = ln(w[e + 'word_embeddings.weight'][x] + w[e + 'position_embeddings.weight'][torch.arange(T)][None]
           + w[e + 'token_type_embeddings.weight'][torch.zeros_like(x)], e + 'LayerNorm')
    for i in range(L):
        p = f'bert.encoder.layer.{i}.'
        q, k, v = (lin(h, p + f'attention.self.{n}').view(1, T, H, D).permute(0, 2, 1, 3) for n in ('query', 'key', 'value'))
        o = (torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D), dim=-1) @ v).permute(0, 2, 1, 3).reshape(1, T, C)
        a = ln(lin(o, p + 'attention.output.dense') + h, p + 'attention.output.LayerNorm')
        h = ln(lin(act(lin(a, p + 'intermediate.dense')), p + 'output.dense') + a, p + 'output.LayerNorm')
    t = ln(act(lin(h, 'cls.predictions.transform.dense')), 'cls.predictions.transform.LayerNorm')
    return t @ w['cls.predictions.decoder.weight'].T + w['cls.predictions.decoder.bias']


def check_bert(d, raw, ids):
    cfg = resolve_bert_config(d, raw)
    for t in ids:
        if not 0 <= t < cfg['vocab_size']:
            fail(f'{d}: token id {t} is outside the vocabulary of {cfg["vocab_size"]}')
    if len(ids) > cfg['max_position_embeddings']:
        fail(f'{d}: {len(ids)} tokens exceed max_position_embeddings {cfg["max_position_embeddings"]}')
    tensors, dtypes = load_weights(d)
    state, ignored = build_bert_state(d, cfg, tensors)
    with torch.no_grad():
        logits = bert_forward(cfg, state, ids)
    return {'config': {k: cfg[k] for k in BERT_DEFAULTS}, 'unknown_keys': cfg['_unknown_keys'], 'tied': True,
            'dtypes': sorted(dtypes), 'ignored': ignored, 'shape': list(logits.shape),
            'logits': logits.flatten().tolist()}


USAGE = 'usage: check_model_dir.py DIR ID [ID ...]  |  check_model_dir.py --ids ID,ID,... DIR [DIR ...]'


def main(argv):
    if argv and argv[0] == '--ids':
        # many dirs, one torch start-up: one JSON line per dir, {"dir", "error"} for a failure
        if len(argv) < 3:
            print(USAGE, file=sys.stderr)
            return 2
        ids_text, dirs = argv[1], argv[2:]
        ids_args = ids_text.split(',')
    else:
        if len(argv) < 2 or argv[0] in ('-h', '--help'):
            print(USAGE, file=sys.stderr)
            return 2
        dirs, ids_args = argv[:1], argv[1:]
    try:
        ids = [int(a) for a in ids_args]
    except ValueError:
        print(f'check_model_dir.py: token ids must be integers, got {" ".join(ids_args)}', file=sys.stderr)
        return 2
    many = argv[0] == '--ids'
    status = 0
    for d in dirs:
        try:
            out = check(d, ids)
        except CheckError as e:
            status = 1
            if not many:
                print(f'check_model_dir.py: {e}', file=sys.stderr)
                return 1
            out = {'error': str(e)}
        if many:
            out = {'dir': d, **out}
        json.dump(out, sys.stdout, separators=(',', ':'))
        sys.stdout.write('\n')
    return status


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
