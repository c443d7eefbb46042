#!/usr/bin/python3
"""Golden PEFT adapters (LoRA, prefix tuning, prompt tuning) for test/tuners/peft-golden.test.ts.

Run with Debian's python3-torch:  /usr/bin/python3 tools/make_peft_fixture.py

Neither `peft` nor `transformers` can run here (both need torch >= 2; the system has 1.13), so the
models and PEFT's adapter math are written out below in plain PyTorch, float64, from the published
sources (peft 0.21.0: tuners/lora/layer.py, tuners/prefix_tuning/model.py, peft_model.py,
utils/save_and_load.py, config.py; transformers' modeling_gpt2.py / modeling_bert.py, eager attention).

Base models (HF layout, random float32 weights): GPT2LMHeadModel (Conv1D [in, out] weights, gelu_new,
pre-LN, tied head) and BertForMaskedLM (nn.Linear [out, in], erf gelu, post-LN, tied decoder plus
cls.predictions.bias). Both take P past key/values: keys/values are concatenated in front of the new
ones, position ids start at P (GPT-2: cache_position; BERT: past_key_values_length offset), and the
attention mask covers past + new tokens.

PEFT conventions followed:
  LoRA (lora.Linear): y = base(x) + lora_B(lora_A(x)) * lora_alpha / r, lora_A.weight [r, in],
    lora_B.weight [out, r] (also for GPT-2's Conv1D, whose in/out come from its [in, out] weight);
    merge: W += transpose(B @ A, fan_in_fan_out) * scaling, in float32 as PEFT does it in place.
    Targets match a module whose name equals a target or ends with '.' + target, so BERT's 'dense'
    also wraps cls.predictions.transform.dense.
  Prefix tuning: prompt_embeddings [P, L*2*C] → view(B, P, 2L, H, D) → permute(2, 0, 3, 1, 4) →
    split(2): layer i's key = row 2i, value = row 2i+1, each [B, H, P, D], passed as past_key_values;
    the attention mask is prefixed with P ones. With prefix_projection the saved prompt_embeddings
    are the MLP's output (embedding → Linear → tanh → Linear), which is what PEFT stores.
  Prompt tuning: inputs_embeds = cat(prompt_embeddings, word_embeddings(ids)), mask prefixed with P
    ones, token_type_ids prefixed with P zeros (PeftModelForTokenClassification); the model's outputs
    at the P virtual rows are dropped here (our models return real rows only).
  Saved files: adapter_model.safetensors with PEFT's key names and metadata {"format": "pt"};
    adapter_config.json = asdict(config) as PeftConfig.save_pretrained writes it (json.dumps
    indent=2, sort_keys=True, no trailing newline), inference_mode true, peft_version "0.21.0";
    task_type null (BERT MLM) adds auto_mapping {base_model_class, parent_library}.
BERT MLM has no PEFT task type; the prefix/prompt math for it is the one PEFT's encoder task models
(token classification) use, which is what our models implement.

Writes test/fixtures/peft/: gpt2-base/, bert-base/ (config.json + model.safetensors), one adapter
dir per case, and golden.json (inputs, base and adapter logits [B, T, V] flat, LoRA merged
weights of one module per family, greedy decodes with prefix / prompt adapters and the logits
[8, V] each token was picked from).
"""
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_gpt2_fixtures import write_safetensors  # noqa: E402  (hand-written safetensors writer, F32)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, 'test', 'fixtures', 'peft')
PEFT_VERSION = '0.21.0'

GPT2 = dict(V=64, NPOS=32, C=32, L=2, H=4)
BERT = dict(V=64, NPOS=32, C=32, L=2, H=4, I=48, TV=2)
FMIN = torch.finfo(torch.float64).min


def gen(seed):
    return torch.Generator().manual_seed(seed)


def rn(g, *shape, std=0.2, mean=0.0):
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * std + mean).to(torch.float32)


def f64(w):
    return {k: v.double() for k, v in w.items()}


def flat(t):
    return [float('%.8g' % x) for x in t.flatten().tolist()]


# ------------------------------------------------------------------------------------------
# base weights (HF names as save_pretrained writes them)

def gpt2_weights():
    g = gen(1201)
    V, N, C, L = GPT2['V'], GPT2['NPOS'], GPT2['C'], GPT2['L']
    w = {'transformer.wte.weight': rn(g, V, C, std=0.4), 'transformer.wpe.weight': rn(g, N, C, std=0.2)}
    for i in range(L):
        p = f'transformer.h.{i}.'
        w[p + 'ln_1.weight'] = rn(g, C, mean=1.0)
        w[p + 'ln_1.bias'] = rn(g, C, std=0.1)
        w[p + 'attn.c_attn.weight'] = rn(g, C, 3 * C)
        w[p + 'attn.c_attn.bias'] = rn(g, 3 * C, std=0.1)
        w[p + 'attn.c_proj.weight'] = rn(g, C, C)
        w[p + 'attn.c_proj.bias'] = rn(g, C, std=0.1)
        w[p + 'ln_2.weight'] = rn(g, C, mean=1.0)
        w[p + 'ln_2.bias'] = rn(g, C, std=0.1)
        w[p + 'mlp.c_fc.weight'] = rn(g, C, 4 * C)
        w[p + 'mlp.c_fc.bias'] = rn(g, 4 * C, std=0.1)
        w[p + 'mlp.c_proj.weight'] = rn(g, 4 * C, C)
        w[p + 'mlp.c_proj.bias'] = rn(g, C, std=0.1)
    w['transformer.ln_f.weight'] = rn(g, C, mean=1.0)
    w['transformer.ln_f.bias'] = rn(g, C, std=0.1)
    return w


def bert_weights():
    g = gen(1202)
    V, N, C, L, I, TV = BERT['V'], BERT['NPOS'], BERT['C'], BERT['L'], BERT['I'], BERT['TV']
    w = {
        'bert.embeddings.word_embeddings.weight': rn(g, V, C, std=0.5),
        'bert.embeddings.position_embeddings.weight': rn(g, N, C, std=0.3),
        'bert.embeddings.token_type_embeddings.weight': rn(g, TV, C, std=0.3),
        'bert.embeddings.LayerNorm.weight': rn(g, C, mean=1.0),
        'bert.embeddings.LayerNorm.bias': rn(g, C, std=0.1),
    }
    for i in range(L):
        p = f'bert.encoder.layer.{i}.'
        for n in ('query', 'key', 'value'):
            w[p + f'attention.self.{n}.weight'] = rn(g, C, C, std=0.25)
            w[p + f'attention.self.{n}.bias'] = rn(g, C, std=0.1)
        w[p + 'attention.output.dense.weight'] = rn(g, C, C)
        w[p + 'attention.output.dense.bias'] = rn(g, C, std=0.1)
        w[p + 'attention.output.LayerNorm.weight'] = rn(g, C, mean=1.0)
        w[p + 'attention.output.LayerNorm.bias'] = rn(g, C, std=0.1)
        w[p + 'intermediate.dense.weight'] = rn(g, I, C)
        w[p + 'intermediate.dense.bias'] = rn(g, I, std=0.1)
        w[p + 'output.dense.weight'] = rn(g, C, I)
        w[p + 'output.dense.bias'] = rn(g, C, std=0.1)
        w[p + 'output.LayerNorm.weight'] = rn(g, C, mean=1.0)
        w[p + 'output.LayerNorm.bias'] = rn(g, C, std=0.1)
    w['cls.predictions.transform.dense.weight'] = rn(g, C, C)
    w['cls.predictions.transform.dense.bias'] = rn(g, C, std=0.1)
    w['cls.predictions.transform.LayerNorm.weight'] = rn(g, C, mean=1.0)
    w['cls.predictions.transform.LayerNorm.bias'] = rn(g, C, std=0.1)
    w['cls.predictions.bias'] = rn(g, V, std=0.3)
    return w


# ------------------------------------------------------------------------------------------
# models (float64, eval mode). `lora` maps a module path to (A [r,in], B [out,r], scaling).

def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def lora_delta(x, lora, name):
    if lora is None or name not in lora:
        return 0.0
    A, B, s = lora[name]
    return (x @ A.T) @ B.T * s


def attend(q, k, v, mask, past_len, causal):
    """q [B,H,T,D], k/v [B,H,S,D] (S = past_len + T), mask [B,S] or None."""
    T, S, D = q.shape[2], k.shape[2], q.shape[3]
    s = q @ k.transpose(-1, -2) / math.sqrt(D)
    if causal:
        allowed = torch.arange(S)[None, :] <= (past_len + torch.arange(T))[:, None]
        s = torch.where(allowed[None, None], s, torch.tensor(FMIN, dtype=s.dtype))
    if mask is not None:
        s = s + (1.0 - mask.double())[:, None, None, :] * FMIN
    return torch.softmax(s, dim=-1) @ v


def gpt2_forward(w, ids=None, embeds=None, mask=None, past=None, lora=None):
    """GPT2LMHeadModel. ids [B,T] or inputs_embeds [B,T,C]; past: per layer (k, v) [B,H,P,D].
    Returns logits [B,T,V] and the new per-layer (k, v)."""
    C, L, H = GPT2['C'], GPT2['L'], GPT2['H']
    D = C // H
    x = w['transformer.wte.weight'][ids] if embeds is None else embeds
    B, T = x.shape[0], x.shape[1]
    P = 0 if past is None else past[0][0].shape[2]
    h = x + w['transformer.wpe.weight'][torch.arange(P, P + T)][None]

    def ln(t, n):
        return torch.nn.functional.layer_norm(t, (C,), w[n + '.weight'], w[n + '.bias'], 1e-5)

    def conv1d(t, n):
        return t @ w[n + '.weight'] + w[n + '.bias'] + lora_delta(t, lora, n)

    present = []
    for i in range(L):
        p = f'transformer.h.{i}.'
        qkv = conv1d(ln(h, p + 'ln_1'), p + 'attn.c_attn')
        q, k, v = (t.view(B, T, H, D).permute(0, 2, 1, 3) for t in qkv.split(C, dim=2))
        if past is not None:
            k = torch.cat([past[i][0], k], dim=2)
            v = torch.cat([past[i][1], v], dim=2)
        present.append((k, v))
        o = attend(q, k, v, mask, P, True).permute(0, 2, 1, 3).reshape(B, T, C)
        h = h + conv1d(o, p + 'attn.c_proj')
        m = gelu_new(conv1d(ln(h, p + 'ln_2'), p + 'mlp.c_fc'))
        h = h + conv1d(m, p + 'mlp.c_proj')
    h = ln(h, 'transformer.ln_f')
    return h @ w['transformer.wte.weight'].T, present


def bert_forward(w, ids=None, embeds=None, mask=None, types=None, past=None, lora=None):
    """BertForMaskedLM with past key/values (BertSelfAttention concatenates them in front)."""
    C, L, H = BERT['C'], BERT['L'], BERT['H']
    D = C // H
    x = w['bert.embeddings.word_embeddings.weight'][ids] if embeds is None else embeds
    B, T = x.shape[0], x.shape[1]
    P = 0 if past is None else past[0][0].shape[2]
    if types is None:
        types = torch.zeros(B, T, dtype=torch.long)

    def ln(t, n):
        return torch.nn.functional.layer_norm(t, (C,), w[n + '.weight'], w[n + '.bias'], 1e-12)

    def lin(t, n):
        return t @ w[n + '.weight'].T + w[n + '.bias'] + lora_delta(t, lora, n)

    gelu = torch.nn.functional.gelu  # erf form
    x = x + w['bert.embeddings.position_embeddings.weight'][torch.arange(P, P + T)][None] \
        + w['bert.embeddings.token_type_embeddings.weight'][types]
    x = ln(x, 'bert.embeddings.LayerNorm')
    for i in range(L):
        p = f'bert.encoder.layer.{i}.'

        def heads(t):
            return t.view(B, T, H, D).permute(0, 2, 1, 3)
        q, k, v = (heads(lin(x, p + f'attention.self.{n}')) for n in ('query', 'key', 'value'))
        if past is not None:
            k = torch.cat([past[i][0], k], dim=2)
            v = torch.cat([past[i][1], v], dim=2)
        o = attend(q, k, v, mask, P, False).permute(0, 2, 1, 3).reshape(B, T, C)
        a = ln(lin(o, p + 'attention.output.dense') + x, p + 'attention.output.LayerNorm')
        x = ln(lin(gelu(lin(a, p + 'intermediate.dense')), p + 'output.dense') + a, p + 'output.LayerNorm')
    h = ln(gelu(lin(x, 'cls.predictions.transform.dense')), 'cls.predictions.transform.LayerNorm')
    return h @ w['bert.embeddings.word_embeddings.weight'].T + w['cls.predictions.bias']


# ------------------------------------------------------------------------------------------
# PEFT pieces

def peft_config_base(peft_type, task_type, base):
    return {
        'auto_mapping': None, 'base_model_name_or_path': base, 'inference_mode': True,
        'peft_type': peft_type, 'peft_version': PEFT_VERSION, 'revision': None, 'task_type': task_type,
    }


def auto_mapping(task_type, family):
    # PeftModel.save_pretrained: task_type None → the base model class goes into auto_mapping
    if task_type is not None:
        return None
    return {'base_model_class': 'BertForMaskedLM', 'parent_library': 'transformers.models.bert.modeling_bert'} \
        if family == 'bert' else None


def lora_config(task_type, base, family, r, alpha, targets, fan_in_fan_out):
    c = peft_config_base('LORA', task_type, base)
    c['auto_mapping'] = auto_mapping(task_type, family)
    c.update({
        'alora_invocation_tokens': None, 'alpha_pattern': {}, 'arrow_config': None, 'bias': 'none',
        'corda_config': None, 'ensure_weight_tying': False, 'eva_config': None, 'exclude_modules': None,
        'fan_in_fan_out': fan_in_fan_out, 'init_lora_weights': True, 'kasa_config': None,
        'layer_replication': None, 'layers_pattern': None, 'layers_to_transform': None, 'loftq_config': {},
        'lora_alpha': alpha, 'lora_bias': False, 'lora_dropout': 0.0, 'lora_ga_config': None,
        'megatron_config': None, 'megatron_core': 'megatron.core', 'modules_to_save': None,
        'monteclora_config': None, 'qalora_group_size': 16, 'r': r, 'rank_pattern': {},
        'target_modules': targets, 'target_parameters': None, 'trainable_token_indices': None,
        'use_bdlora': None, 'use_dora': False, 'use_qalora': False, 'use_rslora': False, 'velora_config': None,
    })
    return c


def prompt_learning_config(peft_type, task_type, base, family, P, dims):
    c = peft_config_base(peft_type, task_type, base)
    c['auto_mapping'] = auto_mapping(task_type, family)
    c.update({'modules_to_save': None, 'num_attention_heads': dims['H'], 'num_layers': dims['L'],
              'num_transformer_submodules': 1, 'num_virtual_tokens': P, 'token_dim': dims['C']})
    return c


def targeted(names, targets):
    """PEFT's _check_target_module_exists for a list: exact name or '.'-suffix match."""
    return [n for n in names if any(n == t or n.endswith('.' + t) for t in targets)]


def make_lora(w, modules, r, alpha, fan_in_fan_out, seed):
    """Random non-zero A and B (B too, so the update is not zero). Returns the saved state dict and
    the {module: (A, B, scaling)} map (float32 tensors)."""
    g = gen(seed)
    sd, lora = {}, {}
    for m in modules:
        W = w[m + '.weight']
        fin, fout = (W.shape[0], W.shape[1]) if fan_in_fan_out else (W.shape[1], W.shape[0])
        A = rn(g, r, fin, std=0.3)
        B = rn(g, fout, r, std=0.3)
        sd[f'base_model.model.{m}.lora_A.weight'] = A
        sd[f'base_model.model.{m}.lora_B.weight'] = B
        lora[m] = (A, B, alpha / r)
    return sd, lora


def merged_weights(w, lora, fan_in_fan_out):
    """LoraLayer.merge in float32: W += transpose(B @ A, fan_in_fan_out) * scaling."""
    out = dict(w)
    for m, (A, B, s) in lora.items():
        d = (B @ A) * s
        out[m + '.weight'] = w[m + '.weight'] + (d.T if fan_in_fan_out else d)
    return out


def prefix_past(emb, L, H, C, B):
    """get_prompt for PREFIX_TUNING: [P, 2LC] → per layer (k, v) [B, H, P, D]."""
    P = emb.shape[0]
    kv = emb.double().unsqueeze(0).repeat(B, 1, 1).view(B, P, L * 2, H, C // H).permute([2, 0, 3, 1, 4]).split(2)
    return [(t[0], t[1]) for t in kv]


def write_json(path, obj):
    with open(path, 'w') as f:
        f.write(json.dumps(obj, indent=2, sort_keys=True))


def write_adapter(name, cfg, sd):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    write_json(os.path.join(d, 'adapter_config.json'), cfg)
    write_safetensors(os.path.join(d, 'adapter_model.safetensors'), sorted(sd.items()))


def write_base(name, w, config):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    write_safetensors(os.path.join(d, 'model.safetensors'), list(w.items()))
    with open(os.path.join(d, 'config.json'), 'w') as f:
        f.write(json.dumps(config, indent=2, sort_keys=True) + '\n')


def gpt2_config():
    V = GPT2['V']
    return {
        'activation_function': 'gelu_new', 'architectures': ['GPT2LMHeadModel'], 'attn_pdrop': 0.0,
        'bos_token_id': V - 1, 'embd_pdrop': 0.0, 'eos_token_id': V - 1, 'initializer_range': 0.02,
        'layer_norm_epsilon': 1e-5, 'model_type': 'gpt2', 'n_ctx': GPT2['NPOS'], 'n_embd': GPT2['C'],
        'n_head': GPT2['H'], 'n_inner': None, 'n_layer': GPT2['L'], 'n_positions': GPT2['NPOS'],
        'reorder_and_upcast_attn': False, 'resid_pdrop': 0.0, 'scale_attn_by_inverse_layer_idx': False,
        'scale_attn_weights': True, 'torch_dtype': 'float32', 'transformers_version': '4.46.3',
        'use_cache': True, 'vocab_size': V,
    }


def bert_config():
    return {
        'architectures': ['BertForMaskedLM'], 'attention_probs_dropout_prob': 0.0, 'classifier_dropout': None,
        'hidden_act': 'gelu', 'hidden_dropout_prob': 0.0, 'hidden_size': BERT['C'], 'initializer_range': 0.02,
        'intermediate_size': BERT['I'], 'layer_norm_eps': 1e-12, 'max_position_embeddings': BERT['NPOS'],
        'model_type': 'bert', 'num_attention_heads': BERT['H'], 'num_hidden_layers': BERT['L'], 'pad_token_id': 0,
        'position_embedding_type': 'absolute', 'torch_dtype': 'float32', 'transformers_version': '4.46.3',
        'type_vocab_size': BERT['TV'], 'use_cache': True, 'vocab_size': BERT['V'],
    }


# ------------------------------------------------------------------------------------------
# greedy decoding with past key/values (prefix in the cache from the first step)

def greedy(w, prompt, n, prefix=None, prompt_embeds=None):
    """HF generate, greedy, batch 1, no mask: prefill the prompt (after the prefix past / prompt
    embeddings), then one token at a time with the growing past. Checked against full recompute."""
    past = prefix
    if prompt_embeds is not None:
        emb = torch.cat([prompt_embeds.double()[None], w['transformer.wte.weight'][torch.tensor([prompt])]], dim=1)
        logits, past = gpt2_forward(w, embeds=emb)
    else:
        logits, past = gpt2_forward(w, ids=torch.tensor([prompt]), past=past)
    out, rows = [], []
    for step in range(n):
        rows.append(logits[0, -1])
        top = torch.topk(logits[0, -1], 2).values
        assert top[0] - top[1] > 1e-3, 'near-tie in the greedy path: float32 could pick the other token'
        nxt = int(torch.argmax(logits[0, -1]).item())
        out.append(nxt)
        if step + 1 < n:
            logits, past = gpt2_forward(w, ids=torch.tensor([[nxt]]), past=past)
    # the same tokens from a full recompute at every step (no incremental state)
    ids = list(prompt)
    for t in out:
        if prompt_embeds is not None:
            emb = torch.cat([prompt_embeds.double()[None], w['transformer.wte.weight'][torch.tensor([ids])]], dim=1)
            full, _ = gpt2_forward(w, embeds=emb)
        else:
            full, _ = gpt2_forward(w, ids=torch.tensor([ids]), past=prefix)
        assert int(torch.argmax(full[0, -1]).item()) == t, 'cached and recomputed greedy paths differ'
        ids.append(t)
    return out, torch.stack(rows)


def main():
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    golden = {'note': 'generated by tools/make_peft_fixture.py (float64 PyTorch reference of PEFT 0.21.0 on '
                      'GPT2LMHeadModel / BertForMaskedLM)', 'cases': [], 'decode': []}

    # ---------------- GPT-2
    V, C, L, H = GPT2['V'], GPT2['C'], GPT2['L'], GPT2['H']
    wg = gpt2_weights()
    write_base('gpt2-base', wg, gpt2_config())
    base_g = 'test/fixtures/peft/gpt2-base'
    W = f64(wg)
    EOS = V - 1
    ids = torch.tensor([[5, 17, 33, 2, 48, 11, 60, 23], [40, 7, 19, 52, 3, EOS, EOS, EOS]])
    mask = torch.tensor([[1] * 8, [1] * 5 + [0] * 3])
    B, T = ids.shape
    base_logits, _ = gpt2_forward(W, ids=ids, mask=mask)
    golden['gpt2'] = {'base': 'gpt2-base', 'input_ids': ids.tolist(), 'attention_mask': mask.tolist(),
                      'shape': [B, T, V], 'base_logits': flat(base_logits)}

    # LoRA on c_attn, c_proj (attention and MLP), c_fc; Conv1D → fan_in_fan_out
    targets = ['c_attn', 'c_proj', 'c_fc']
    mods = targeted([n[:-len('.weight')] for n in wg if n.endswith('.weight')], targets)
    assert len(mods) == 4 * L, mods
    sd, lora = make_lora(wg, mods, 4, 8, True, 2101)
    write_adapter('gpt2-lora', lora_config('CAUSAL_LM', base_g, 'gpt2', 4, 8, targets, True), sd)
    lora64 = {m: (A.double(), Bm.double(), s) for m, (A, Bm, s) in lora.items()}
    logits, _ = gpt2_forward(W, ids=ids, mask=mask, lora=lora64)
    merged = merged_weights(wg, lora, True)
    mlogits, _ = gpt2_forward(f64(merged), ids=ids, mask=mask)
    assert (logits - mlogits).abs().max() < 1e-5  # so the test compares the merged model to `logits`
    mw = 'transformer.h.0.attn.c_proj.weight'
    golden['cases'].append({'name': 'gpt2-lora', 'family': 'gpt2', 'adapter': 'gpt2-lora', 'logits': flat(logits),
                            'merged_weight': {'name': mw, 'shape': list(merged[mw].shape), 'data': flat(merged[mw])}})

    # prefix tuning, no projection: prompt_embeddings [P, 2LC] is the KV prefix itself
    P = 5
    g = gen(2102)
    emb = rn(g, P, L * 2 * C, std=0.6)
    write_adapter('gpt2-prefix', dict(prompt_learning_config('PREFIX_TUNING', 'CAUSAL_LM', base_g, 'gpt2', P, GPT2),
                                      encoder_hidden_size=C, init_weights=None, prefix_projection=False),
                  {'prompt_embeddings': emb})
    pmask = torch.cat([torch.ones(B, P, dtype=torch.long), mask], dim=1)
    logits, _ = gpt2_forward(W, ids=ids, mask=pmask, past=prefix_past(emb, L, H, C, B))
    golden['cases'].append({'name': 'gpt2-prefix', 'family': 'gpt2', 'adapter': 'gpt2-prefix', 'logits': flat(logits)})
    prompt = [40, 7, 19, 52, 3]  # a prompt whose greedy paths are not one repeated token
    toks, steps = greedy(W, prompt, 8, prefix=prefix_past(emb, L, H, C, 1))
    base_toks, _ = greedy(W, prompt, 8)
    assert toks != base_toks, 'the prefix does not change the greedy path'
    golden['decode'].append({'name': 'gpt2-prefix greedy', 'adapter': 'gpt2-prefix', 'prompt': prompt,
                             'max_new_tokens': 8, 'tokens': toks, 'base_tokens': base_toks, 'step_logits': flat(steps)})

    # prompt tuning: P virtual input embeddings
    P = 3
    g = gen(2103)
    pe = rn(g, P, C, std=0.5)
    write_adapter('gpt2-prompt', dict(prompt_learning_config('PROMPT_TUNING', 'CAUSAL_LM', base_g, 'gpt2', P, GPT2),
                                      prompt_tuning_init='RANDOM', prompt_tuning_init_text=None,
                                      tokenizer_kwargs=None, tokenizer_name_or_path=None),
                  {'prompt_embeddings': pe})
    embeds = torch.cat([pe.double().unsqueeze(0).repeat(B, 1, 1), W['transformer.wte.weight'][ids]], dim=1)
    pmask = torch.cat([torch.ones(B, P, dtype=torch.long), mask], dim=1)
    logits, _ = gpt2_forward(W, embeds=embeds, mask=pmask)
    golden['cases'].append({'name': 'gpt2-prompt', 'family': 'gpt2', 'adapter': 'gpt2-prompt', 'logits': flat(logits[:, P:])})
    toks, steps = greedy(W, prompt, 8, prompt_embeds=pe)
    assert toks != base_toks, 'the prompt does not change the greedy path'
    golden['decode'].append({'name': 'gpt2-prompt greedy', 'adapter': 'gpt2-prompt', 'prompt': prompt,
                             'max_new_tokens': 8, 'tokens': toks, 'base_tokens': base_toks, 'step_logits': flat(steps)})

    # ---------------- BERT
    V, C, L, H = BERT['V'], BERT['C'], BERT['L'], BERT['H']
    wb = bert_weights()
    write_base('bert-base', wb, bert_config())
    base_b = 'test/fixtures/peft/bert-base'
    W = f64(wb)
    ids = torch.tensor([[2, 17, 45, 3, 63, 61, 5, 4], [2, 50, 3, 33, 8, 4, 0, 0]])
    mask = torch.tensor([[1] * 8, [1] * 6 + [0] * 2])
    types = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 0, 0]])
    B, T = ids.shape
    base_logits = bert_forward(W, ids=ids, mask=mask, types=types)
    golden['bert'] = {'base': 'bert-base', 'input_ids': ids.tolist(), 'attention_mask': mask.tolist(),
                      'token_type_ids': types.tolist(), 'shape': [B, T, V], 'base_logits': flat(base_logits)}

    # LoRA on query/key/value/dense (nn.Linear → fan_in_fan_out false); 'dense' also hits the MLM head's transform
    targets = ['query', 'key', 'value', 'dense']
    mods = targeted([n[:-len('.weight')] for n in wb if n.endswith('.weight')], targets)
    assert 'cls.predictions.transform.dense' in mods and len(mods) == 6 * L + 1, mods
    sd, lora = make_lora(wb, mods, 4, 8, False, 2201)
    write_adapter('bert-lora', lora_config(None, base_b, 'bert', 4, 8, targets, False), sd)
    lora64 = {m: (A.double(), Bm.double(), s) for m, (A, Bm, s) in lora.items()}
    logits = bert_forward(W, ids=ids, mask=mask, types=types, lora=lora64)
    merged = merged_weights(wb, lora, False)
    mlogits = bert_forward(f64(merged), ids=ids, mask=mask, types=types)
    assert (logits - mlogits).abs().max() < 1e-5  # so the test compares the merged model to `logits`
    mw = 'bert.encoder.layer.0.attention.self.query.weight'
    golden['cases'].append({'name': 'bert-lora', 'family': 'bert', 'adapter': 'bert-lora', 'logits': flat(logits),
                            'merged_weight': {'name': mw, 'shape': list(merged[mw].shape), 'data': flat(merged[mw])}})

    # prefix tuning with the reparameterisation MLP: what PEFT saves is its output (folded)
    P, E = 4, 16
    g = gen(2202)
    e0 = rn(g, P, C, std=1.0)
    W1, b1 = rn(g, E, C, std=0.3), rn(g, E, std=0.1)
    W2, b2 = rn(g, L * 2 * C, E, std=0.4), rn(g, L * 2 * C, std=0.2)
    emb = ((torch.tanh(e0.double() @ W1.double().T + b1.double()) @ W2.double().T) + b2.double()).to(torch.float32)
    write_adapter('bert-prefix', dict(prompt_learning_config('PREFIX_TUNING', None, base_b, 'bert', P, BERT),
                                      encoder_hidden_size=E, init_weights=None, prefix_projection=True),
                  {'prompt_embeddings': emb})
    pmask = torch.cat([torch.ones(B, P, dtype=torch.long), mask], dim=1)
    logits = bert_forward(W, ids=ids, mask=pmask, types=types, past=prefix_past(emb, L, H, C, B))
    golden['cases'].append({'name': 'bert-prefix', 'family': 'bert', 'adapter': 'bert-prefix', 'logits': flat(logits)})

    # prompt tuning: virtual embeddings get positions 0..P-1 and token type 0
    P = 3
    g = gen(2203)
    pe = rn(g, P, C, std=0.5)
    write_adapter('bert-prompt', dict(prompt_learning_config('PROMPT_TUNING', None, base_b, 'bert', P, BERT),
                                      prompt_tuning_init='RANDOM', prompt_tuning_init_text=None,
                                      tokenizer_kwargs=None, tokenizer_name_or_path=None),
                  {'prompt_embeddings': pe})
    embeds = torch.cat([pe.double().unsqueeze(0).repeat(B, 1, 1), W['bert.embeddings.word_embeddings.weight'][ids]], dim=1)
    pmask = torch.cat([torch.ones(B, P, dtype=torch.long), mask], dim=1)
    ptypes = torch.cat([torch.zeros(B, P, dtype=torch.long), types], dim=1)
    logits = bert_forward(W, embeds=embeds, mask=pmask, types=ptypes)
    golden['cases'].append({'name': 'bert-prompt', 'family': 'bert', 'adapter': 'bert-prompt', 'logits': flat(logits[:, P:])})

    for c in golden['cases']:
        fam = golden[c['family']]
        d = max(abs(a - b) for a, b in zip(c['logits'], fam['base_logits']))
        assert d > 0.05, f"{c['name']}: the adapter barely changes the logits ({d})"
        print(c['name'], 'max |adapter - base| logits', round(d, 4))
    with open(os.path.join(OUT, 'golden.json'), 'w') as f:
        f.write(json.dumps(golden, separators=(',', ':')) + '\n')
    print('decode', golden['decode'])


if __name__ == '__main__':
    main()
