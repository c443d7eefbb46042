#!/usr/bin/env python3
"""A fresh, tiny GPT-2 with a given tokenizer, saved as a Hugging Face checkpoint: the stand-in
for gpt2-large in the CPU rehearsal of train_teacher.py (on a cluster, start from the real one)."""
import argparse

import torch

from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("--tokenizer", required=True, help="tokenizer.json (e.g. from icld tokenizer train)")
p.add_argument("--out", required=True)
p.add_argument("--n-positions", type=int, default=256)
p.add_argument("--n-embd", type=int, default=64)
p.add_argument("--n-layer", type=int, default=2)
p.add_argument("--n-head", type=int, default=4)
p.add_argument("--eos", default="<|endoftext|>")
p.add_argument("--seed", type=int, default=0, help="initialisation seed (the rehearsal is repeatable)")
p.add_argument("--dropout", type=float, default=0.0, help="every GPT-2 dropout (0: training is deterministic, as icld's fresh bases)")
a = p.parse_args()
tok = PreTrainedTokenizerFast(tokenizer_file=a.tokenizer, eos_token=a.eos, bos_token=a.eos, unk_token=a.eos)
eos = tok.convert_tokens_to_ids(a.eos)
cfg = GPT2Config(vocab_size=len(tok), n_positions=a.n_positions, n_embd=a.n_embd, n_layer=a.n_layer, n_head=a.n_head,
                 bos_token_id=eos, eos_token_id=eos, resid_pdrop=a.dropout, embd_pdrop=a.dropout, attn_pdrop=a.dropout)
torch.manual_seed(a.seed)
model = GPT2LMHeadModel(cfg)
model.save_pretrained(a.out)
tok.save_pretrained(a.out)
print(f"{a.out}: GPT-2 {sum(x.numel() for x in model.parameters())/1e6:.2f}M parameters, vocab {len(tok)}")
