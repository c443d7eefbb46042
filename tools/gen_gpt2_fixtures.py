#!/usr/bin/python3
"""Generate tiny GPT-2 checkpoints + golden outputs for test/models/gpt2.test.ts.

Run with Debian's python3-torch:  /usr/bin/python3 tools/gen_gpt2_fixtures.py

`transformers` is not installed here, so GPT2LMHeadModel is re-implemented below in plain
PyTorch, following transformers/models/gpt2/modeling_gpt2.py (eager attention):
  h = wte[ids] + wpe[pos]                                pos = 0..T-1 (no position_ids given)
  per block (pre-LN):
    a = ln_1(h); qkv = a @ c_attn.W + c_attn.b           Conv1D: W is [in, out], y = x @ W + b
    q | k | v = split(qkv, n_embd, dim=-1), heads = reshape(..., n_head, head_dim)
    w = q kᵀ / sqrt(head_dim)                            scale_attn_weights=True
    w = where(causal, w, finfo.min)                      causal mask buffer `attn.bias`
    w = w + (1 - attention_mask)[:, None, None, :] * finfo.min   padding mask on keys
    h = h + (softmax(w) v merged) @ c_proj.W + c_proj.b
    h = h + gelu_new(ln_2(h) @ c_fc.W + c_fc.b) @ mlp.c_proj.W + mlp.c_proj.b
  logits = ln_f(h) @ wte.T                               tied lm_head
  loss = CE(logits[:, :-1], labels[:, 1:], ignore_index=-100), mean over scored tokens
Golden values are computed in float64 from the float32 weights that are written to disk.

safetensors is written by hand (no `safetensors` package): [u64 LE header length][JSON
header, padded with spaces to a multiple of 8][raw little-endian data], header
{"__metadata__": {"format": "pt"}, name: {"dtype", "shape", "data_offsets"}}.

Writes test/fixtures/gpt2/:
  tiny-hf/       what GPT2LMHeadModel.save_pretrained(safe_serialization=True) writes:
                 config.json (to_diff_dict keys, sorted, indent 2), generation_config.json,
                 model.safetensors with `transformer.*` names, no lm_head.weight (tied), no
                 attn.bias / attn.masked_bias (non-persistent buffers since transformers 4.31)
  tiny-hub/      original hub layout: no `transformer.` prefix, F32, `h.N.attn.bias` [1,1,16,16]
                 tril buffers and scalar `h.N.attn.masked_bias`, old-style config (n_ctx, no
                 torch_dtype)
  tiny-hub-f16/  the hub layout with F16 weights, U8 tril buffers and a tied `lm_head.weight`
                 (the same storage, written twice, as torch.save of old checkpoints had it)
  golden.json    see `golden` below
"""
import json
import math
import os
import struct

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, 'test', 'fixtures', 'gpt2')

V, NPOS, C, L, H = 50, 16, 12, 2, 3
EPS = 1e-5
EOS = V - 1

ST_DTYPE = {torch.float32: 'F32', torch.float16: 'F16', torch.uint8: 'U8', torch.bool: 'BOOL'}


# ------------------------------------------------------------------------------------------
# weights

def make_weights():
    g = torch.Generator().manual_seed(20240611)

    def rn(*shape, std=0.2, mean=0.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float32) * std + mean).contiguous()

    w = {}
    w['wte.weight'] = rn(V, C)
    w['wpe.weight'] = rn(NPOS, C)
    for i in range(L):
        p = f'h.{i}.'
        w[p + 'ln_1.weight'] = rn(C, mean=1.0)
        w[p + 'ln_1.bias'] = rn(C)
        w[p + 'attn.c_attn.weight'] = rn(C, 3 * C)   # Conv1D [in, out]
        w[p + 'attn.c_attn.bias'] = rn(3 * C)
        w[p + 'attn.c_proj.weight'] = rn(C, C)
        w[p + 'attn.c_proj.bias'] = rn(C)
        w[p + 'ln_2.weight'] = rn(C, mean=1.0)
        w[p + 'ln_2.bias'] = rn(C)
        w[p + 'mlp.c_fc.weight'] = rn(C, 4 * C)
        w[p + 'mlp.c_fc.bias'] = rn(4 * C)
        w[p + 'mlp.c_proj.weight'] = rn(4 * C, C)
        w[p + 'mlp.c_proj.bias'] = rn(C)
    w['ln_f.weight'] = rn(C, mean=1.0)
    w['ln_f.bias'] = rn(C)
    return w


# ------------------------------------------------------------------------------------------
# the model (GPT2LMHeadModel semantics, eval mode, dropout 0)

def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def layer_norm(x, w, b):
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), w, b, EPS)


def forward(w, ids, attention_mask=None, scale_attn_weights=True, scale_attn_by_inverse_layer_idx=False):
    """logits [B, T, V] in float64. ids: LongTensor [B, T]. The two flags are GPT2Config's:
    w = q kᵀ, divided by sqrt(head_dim) if scale_attn_weights, and by (layer_idx + 1) if
    scale_attn_by_inverse_layer_idx."""
    w = {k: v.double() for k, v in w.items()}
    B, T = ids.shape
    D = C // H
    pos = torch.arange(T).unsqueeze(0).expand(B, T)
    h = w['wte.weight'][ids] + w['wpe.weight'][pos]
    fmin = torch.finfo(torch.float64).min
    causal = torch.tril(torch.ones(NPOS, NPOS, dtype=torch.bool))[:T, :T].view(1, 1, T, T)
    if attention_mask is not None:
        ext = (1.0 - attention_mask.double())[:, None, None, :] * fmin
    for i in range(L):
        p = f'h.{i}.'
        a = layer_norm(h, w[p + 'ln_1.weight'], w[p + 'ln_1.bias'])
        qkv = a @ w[p + 'attn.c_attn.weight'] + w[p + 'attn.c_attn.bias']
        q, k, v = qkv.split(C, dim=2)
        q, k, v = (t.view(B, T, H, D).permute(0, 2, 1, 3) for t in (q, k, v))
        att = q @ k.transpose(-1, -2)
        if scale_attn_weights:
            att = att / math.sqrt(D)
        if scale_attn_by_inverse_layer_idx:
            att = att / float(i + 1)
        att = torch.where(causal, att, torch.tensor(fmin, dtype=att.dtype))
        if attention_mask is not None:
            # fmin + fmin = -inf in float64 too: such keys get probability exactly 0
            att = att + ext
        att = torch.softmax(att, dim=-1)
        o = (att @ v).permute(0, 2, 1, 3).reshape(B, T, C)
        h = h + (o @ w[p + 'attn.c_proj.weight'] + w[p + 'attn.c_proj.bias'])
        m = layer_norm(h, w[p + 'ln_2.weight'], w[p + 'ln_2.bias'])
        m = gelu_new(m @ w[p + 'mlp.c_fc.weight'] + w[p + 'mlp.c_fc.bias'])
        h = h + (m @ w[p + 'mlp.c_proj.weight'] + w[p + 'mlp.c_proj.bias'])
    h = layer_norm(h, w['ln_f.weight'], w['ln_f.bias'])
    return h @ w['wte.weight'].T


def lm_loss(logits, labels):
    shift_logits = logits[:, :-1, :].reshape(-1, V)
    shift_labels = labels[:, 1:].reshape(-1)
    return torch.nn.functional.cross_entropy(shift_logits, shift_labels, ignore_index=-100).item()


def greedy(w, prompt, n, repetition_penalty=1.0):
    """Full recompute each step (no cache). HF RepetitionPenaltyLogitsProcessor semantics:
    for every token id present in input_ids (prompt + generated so far), score < 0 → score * p,
    else score / p."""
    ids = list(prompt)
    out = []
    for _ in range(n):
        logits = forward(w, torch.tensor([ids]))[0, -1].clone()
        if repetition_penalty != 1.0:
            for t in set(ids):
                s = logits[t]
                logits[t] = s * repetition_penalty if s < 0 else s / repetition_penalty
        nxt = int(torch.argmax(logits).item())
        ids.append(nxt)
        out.append(nxt)
    return out


def perplexity(w, ids, window):
    """DESIGN.md §4: consecutive windows of `window` tokens (the last may be shorter), every
    token but the first of a window scored given its predecessors in that window."""
    nll, count = 0.0, 0
    for s in range(0, len(ids), window):
        win = ids[s:s + window]
        if len(win) < 2:
            continue
        logits = forward(w, torch.tensor([win]))[0]
        lp = torch.log_softmax(logits, dim=-1)
        for t in range(len(win) - 1):
            nll -= lp[t, win[t + 1]].item()
            count += 1
    return {'tokens': count, 'nll': nll / count, 'ppl': math.exp(nll / count)}


# ------------------------------------------------------------------------------------------
# files

def write_safetensors(path, tensors):
    """tensors: list of (name, torch tensor) in the order the data is laid out."""
    header = {'__metadata__': {'format': 'pt'}}
    blobs = []
    off = 0
    for name, t in tensors:
        t = t.contiguous()
        if t.dtype == torch.bool:
            raw = bytes(t.to(torch.uint8).flatten().tolist())
        elif t.dtype == torch.uint8:
            raw = bytes(t.flatten().tolist())
        else:
            # numpy-free little-endian bytes via struct
            fmt = {torch.float32: 'f', torch.float16: 'e'}[t.dtype]
            raw = struct.pack('<%d%s' % (t.numel(), fmt), *t.flatten().tolist())
        header[name] = {'dtype': ST_DTYPE[t.dtype], 'shape': list(t.shape), 'data_offsets': [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    hj = json.dumps(header, separators=(',', ':')).encode('utf-8')
    hj += b' ' * ((8 - len(hj) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)
    return {name: {'dtype': header[name]['dtype'], 'shape': header[name]['shape']} for name, _ in tensors}


def write_json(path, obj, sort_keys=True):
    with open(path, 'w') as f:
        f.write(json.dumps(obj, indent=2, sort_keys=sort_keys) + '\n')


def hf_config():
    # What GPT2Config(...).save_pretrained writes (to_diff_dict: every GPT2Config-specific key,
    # plus architectures / torch_dtype / transformers_version; tie_word_embeddings=True is the
    # PretrainedConfig default and therefore left out).
    return {
        'activation_function': 'gelu_new',
        'architectures': ['GPT2LMHeadModel'],
        'attn_pdrop': 0.0,
        'bos_token_id': EOS,
        'embd_pdrop': 0.0,
        'eos_token_id': EOS,
        'initializer_range': 0.02,
        'layer_norm_epsilon': EPS,
        'model_type': 'gpt2',
        'n_ctx': NPOS,
        'n_embd': C,
        'n_head': H,
        'n_inner': None,
        'n_layer': L,
        'n_positions': NPOS,
        'reorder_and_upcast_attn': False,
        'resid_pdrop': 0.0,
        'scale_attn_by_inverse_layer_idx': False,
        'scale_attn_weights': True,
        'summary_activation': None,
        'summary_first_dropout': 0.1,
        'summary_proj_to_labels': True,
        'summary_type': 'cls_index',
        'summary_use_proj': True,
        'torch_dtype': 'float32',
        'transformers_version': '4.46.3',
        'use_cache': True,
        'vocab_size': V,
    }


def hub_config():
    # the style of openai-community/gpt2's config.json (no torch_dtype, n_ctx present)
    return {
        'activation_function': 'gelu_new',
        'architectures': ['GPT2LMHeadModel'],
        'attn_pdrop': 0.0,
        'bos_token_id': EOS,
        'embd_pdrop': 0.0,
        'eos_token_id': EOS,
        'initializer_range': 0.02,
        'layer_norm_epsilon': EPS,
        'model_type': 'gpt2',
        'n_ctx': NPOS,
        'n_embd': C,
        'n_head': H,
        'n_layer': L,
        'n_positions': NPOS,
        'resid_pdrop': 0.0,
        'summary_activation': None,
        'summary_first_dropout': 0.1,
        'summary_proj_to_labels': True,
        'summary_type': 'cls_index',
        'summary_use_proj': True,
        'task_specific_params': {'text-generation': {'do_sample': True, 'max_length': 50}},
        'vocab_size': V,
    }


def main():
    os.makedirs(OUT, exist_ok=True)
    w = make_weights()
    names = list(w.keys())

    # tiny-hf: transformers' state_dict order, `transformer.` prefix, buffers and tied head dropped
    d = os.path.join(OUT, 'tiny-hf')
    os.makedirs(d, exist_ok=True)
    hf_tensors = write_safetensors(os.path.join(d, 'model.safetensors'), [('transformer.' + n, w[n]) for n in names])
    write_json(os.path.join(d, 'config.json'), hf_config())
    write_json(os.path.join(d, 'generation_config.json'),
               {'_from_model_config': True, 'bos_token_id': EOS, 'eos_token_id': EOS, 'transformers_version': '4.46.3'})

    # tiny-hub: original layout, F32, with mask buffers
    d = os.path.join(OUT, 'tiny-hub')
    os.makedirs(d, exist_ok=True)
    tril = torch.tril(torch.ones(NPOS, NPOS, dtype=torch.float32)).view(1, 1, NPOS, NPOS)
    hub = []
    for n in names:
        hub.append((n, w[n]))
        if n.endswith('attn.c_proj.bias'):
            i = n.split('.')[1]
            hub.append((f'h.{i}.attn.bias', tril))
            hub.append((f'h.{i}.attn.masked_bias', torch.tensor(-1e4, dtype=torch.float32)))
    write_safetensors(os.path.join(d, 'model.safetensors'), hub)
    write_json(os.path.join(d, 'config.json'), hub_config())

    # tiny-hub-f16: F16 weights, U8 buffers, tied lm_head.weight written out
    d = os.path.join(OUT, 'tiny-hub-f16')
    os.makedirs(d, exist_ok=True)
    w16 = {n: t.half() for n, t in w.items()}
    hub16 = []
    for n in names:
        hub16.append((n, w16[n]))
        if n.endswith('attn.c_proj.bias'):
            i = n.split('.')[1]
            hub16.append((f'h.{i}.attn.bias', tril.to(torch.uint8)))
    hub16.append(('lm_head.weight', w16['wte.weight']))
    write_safetensors(os.path.join(d, 'model.safetensors'), hub16)
    cfg16 = hub_config()
    cfg16['torch_dtype'] = 'float16'
    write_json(os.path.join(d, 'config.json'), cfg16)
    w16f = {n: t.float() for n, t in w16.items()}

    # golden
    ids = torch.tensor([
        [3, 14, 15, 9, 26, 5, 35, 8, 9, 7],
        [42, 11, 0, 27, 18, 28, 1, EOS, EOS, EOS],
    ])
    mask = torch.tensor([[1] * 10, [1] * 7 + [0] * 3])
    labels = ids.clone()
    labels[mask == 0] = -100
    logits = forward(w, ids, mask)
    logits_nomask = forward(w, ids)
    loss = lm_loss(logits, labels)
    loss_all = lm_loss(logits_nomask, ids)
    logits16 = forward(w16f, ids, mask)
    logits_inv = forward(w, ids, mask, scale_attn_by_inverse_layer_idx=True)
    logits_noscale = forward(w, ids, mask, scale_attn_weights=False)

    prompt = [3, 14, 15, 9, 26]
    cont = greedy(w, prompt, 8)
    # a prompt whose greedy path repeats tokens, so that a penalty changes it
    rep_prompt, rep_pen = None, 3.0
    for cand in ([7, 7, 7], [1, 2, 3], [5, 9], [12, 30, 12, 30], [0], [20, 21, 22]):
        plain = greedy(w, cand, 8)
        pen = greedy(w, cand, 8, rep_pen)
        if plain != pen:
            rep_prompt = cand
            break
    assert rep_prompt is not None, 'no prompt found where repetition penalty changes the greedy path'

    ppl_ids = [(i * 7 + 3) % V for i in range(37)]
    ppl = perplexity(w, ppl_ids, NPOS)

    golden = {
        'note': 'generated by tools/gen_gpt2_fixtures.py (float64 reference of GPT2LMHeadModel)',
        'config': {'vocab_size': V, 'n_positions': NPOS, 'n_embd': C, 'n_layer': L, 'n_head': H},
        'input_ids': ids.tolist(),
        'attention_mask': mask.tolist(),
        'labels': labels.tolist(),
        'logits': [round(x, 9) for x in logits.flatten().tolist()],
        'logits_shape': list(logits.shape),
        'loss': loss,
        'logits_no_mask': [round(x, 9) for x in logits_nomask.flatten().tolist()],
        'loss_no_mask_labels_ids': loss_all,
        'logits_f16_weights': [round(x, 9) for x in logits16.flatten().tolist()],
        'logits_scale_attn_by_inverse_layer_idx': [round(x, 9) for x in logits_inv.flatten().tolist()],
        'logits_no_scale_attn_weights': [round(x, 9) for x in logits_noscale.flatten().tolist()],
        'greedy': {'prompt': prompt, 'max_new_tokens': 8, 'tokens': cont},
        'repetition_penalty': {'prompt': rep_prompt, 'penalty': rep_pen, 'max_new_tokens': 8,
                               'greedy_tokens': greedy(w, rep_prompt, 8),
                               'penalised_tokens': greedy(w, rep_prompt, 8, rep_pen)},
        'perplexity': {'ids': ppl_ids, 'window': NPOS, **ppl},
        'hf_tensors': hf_tensors,
    }
    with open(os.path.join(OUT, 'golden.json'), 'w') as f:
        json.dump(golden, f, indent=1)
        f.write('\n')
    print('greedy', cont, 'rep', golden['repetition_penalty'], 'loss', loss, 'ppl', ppl)


if __name__ == '__main__':
    main()
