#!/usr/bin/env python3
"""In-context tune a teacher with PyTorch + Hugging Face transformers' Trainer, for icld's teacher.path.

The data is what `icld ict export` writes: one JSON line per instance, {"task", "input_ids",
"labels"}, the study's prompts (k demonstrations + query) already tokenized with the base model's
tokenizer, labels -100 except on the answer. So the loss is icld's in-context tuning loss (mean
cross-entropy over the answer tokens of a batch) and no prompt is built here.

One process per GPU:   torchrun --nproc_per_node G train_teacher.py --model gpt2-large --data ict.jsonl --out teacher
DeepSpeed ZeRO-2:      add --deepspeed ds_zero2.json (and --bf16)
CPU rehearsal (gloo):  torchrun --nproc_per_node 2 train_teacher.py ... --cpu

The result (config.json, model.safetensors, tokenizer.json) is a directory icld reads as
teacher.path (with the study's teacher.ict left out, so the study does not tune it again).
Exercised with torch 2.13 + transformers 5.18 (deploy/gpu/README.md).
"""
import argparse
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments


def die(msg):
    print(f"train_teacher.py: {msg}", file=sys.stderr)
    sys.exit(2)


class Instances(torch.utils.data.Dataset):
    """The exported instances, checked line by line (one clear error per bad line)."""

    def __init__(self, path, vocab_size, max_positions):
        self.rows = []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    r = json.loads(line)
                    ids, labels = r["input_ids"], r["labels"]
                except (ValueError, KeyError, TypeError) as e:
                    die(f"{path}:{n}: not an icld ict export line ({e})")
                if len(ids) != len(labels) or not ids:
                    die(f"{path}:{n}: input_ids and labels differ in length")
                if len(ids) > max_positions:
                    die(f"{path}:{n}: {len(ids)} tokens exceed the model's {max_positions} positions (export with this --model)")
                if max(ids) >= vocab_size:
                    die(f"{path}:{n}: token id {max(ids)} is outside the model's vocabulary of {vocab_size} (export with this model's tokenizer)")
                if all(l == -100 for l in labels):
                    die(f"{path}:{n}: no answer tokens (every label is -100)")
                self.rows.append((ids, labels))
        if not self.rows:
            die(f"{path}: no instances")

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        ids, labels = self.rows[i]
        return {"input_ids": ids, "labels": labels}


def collate(pad_id):
    """Right padding; pads are masked out of attention and loss (as icld's makeBatch pads with EOS)."""

    def f(batch):
        L = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), L), pad_id, dtype=torch.long)
        labels = torch.full((len(batch), L), -100, dtype=torch.long)
        att = torch.zeros((len(batch), L), dtype=torch.long)
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[i, :n] = torch.tensor(b["input_ids"])
            labels[i, :n] = torch.tensor(b["labels"])
            att[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": att}

    return f


def icld_linear(warmup, total):
    """icld's ICT schedule (src/optim/schedule.ts): the 0-based step s gets lr * (s+1)/warmup while
    warming up, then lr decays linearly to 0 at `total` (transformers' "linear" is one step later
    in warmup: its first step has lr 0)."""

    def f(s):
        if warmup > 0 and s < warmup:
            return (s + 1) / warmup
        return max(0.0, 1.0 - (s - warmup) / max(1, total - warmup))

    return f


class IcldTrainer(Trainer):
    """Trainer with icld's learning-rate schedule and, with in_order, the export's order (under
    DDP the data loader hands each process its slice of every global batch)."""

    in_order = False

    def create_scheduler(self, num_training_steps, optimizer=None):
        if self.lr_scheduler is None:
            self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer or self.optimizer, icld_linear(self.args.warmup_steps, num_training_steps))
            self._created_lr_scheduler = True
        return self.lr_scheduler

    def _get_train_sampler(self, *args, **kwargs):
        if self.in_order:
            return torch.utils.data.SequentialSampler(self.train_dataset)
        return super()._get_train_sampler(*args, **kwargs)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="base checkpoint directory (or hub name cached on the cluster), e.g. gpt2-large")
    p.add_argument("--data", required=True, help="icld ict export output (.jsonl)")
    p.add_argument("--out", required=True, help="output model directory (teacher.path)")
    p.add_argument("--steps", type=int, default=0, help="optimizer steps (default: one pass over the data)")
    p.add_argument("--batch-size", type=int, default=4, help="instances per device per step (global batch = G x this x --grad-accum)")
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--warmup", type=int, default=0, help="warmup steps (then linear decay to 0, as icld's ICT)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--bf16", action="store_true", help="bf16 mixed precision (GPUs with bf16)")
    p.add_argument("--deepspeed", default=None, help="DeepSpeed config, e.g. deploy/gpu/ds_zero2.json")
    p.add_argument("--cpu", action="store_true", help="train on CPU (gloo under torchrun): the rehearsal")
    p.add_argument("--logging-steps", type=int, default=10)
    p.add_argument("--in-order", action="store_true",
                   help="no shuffling: step i trains on the export's instances i*B .. (i+1)*B-1 (B the global batch), the batches icld's ICT draws")
    a = p.parse_args()
    if not os.path.isfile(a.data):
        die(f"--data {a.data} not found (write it with: icld ict export --model {a.model} ... --out {a.data})")

    tok = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForCausalLM.from_pretrained(a.model)
    model.config.use_cache = False
    max_pos = getattr(model.config, "n_positions", None) or model.config.max_position_embeddings
    data = Instances(a.data, model.get_input_embeddings().weight.shape[0], max_pos)
    pad = tok.eos_token_id if tok.eos_token_id is not None else 0

    # icld's ICT optimizer: AdamW (0.9, 0.95), eps 1e-8, no weight decay, clip 1.0, and its
    # warmup + linear decay (IcldTrainer.create_scheduler).
    args = TrainingArguments(
        output_dir=a.out,
        per_device_train_batch_size=a.batch_size,
        gradient_accumulation_steps=a.grad_accum,
        max_steps=a.steps if a.steps > 0 else -1,
        num_train_epochs=1,
        learning_rate=a.lr,
        warmup_steps=a.warmup,
        weight_decay=0.0,
        adam_beta1=0.9,
        adam_beta2=0.95,
        adam_epsilon=1e-8,
        max_grad_norm=1.0,
        seed=a.seed,
        bf16=a.bf16,
        deepspeed=a.deepspeed,
        use_cpu=a.cpu,
        # gloo only under torchrun (WORLD_SIZE > 1): a plain process has no process group to join
        ddp_backend="gloo" if a.cpu and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        logging_steps=a.logging_steps,
        save_strategy="no",
        report_to=[],
        ddp_find_unused_parameters=False,
        remove_unused_columns=False,
        dataloader_drop_last=False,
    )
    IcldTrainer.in_order = a.in_order
    trainer = IcldTrainer(model=model, args=args, train_dataset=data, data_collator=collate(pad))
    result = trainer.train()
    # save_model writes the full weights from rank 0 only (ZeRO-2 keeps a whole copy on each
    # GPU); icld reads config.json + model.safetensors + tokenizer.json.
    trainer.save_model(a.out)
    if trainer.is_world_process_zero():
        tok.save_pretrained(a.out)
        with open(os.path.join(a.out, "teacher_training.json"), "w") as f:
            json.dump({"base_model": a.model, "data": os.path.abspath(a.data), "instances": len(data),
                       "world_size": args.world_size, "per_device_batch": a.batch_size, "grad_accum": a.grad_accum,
                       "steps": result.global_step, "lr": a.lr, "warmup": a.warmup, "train_loss": result.training_loss,
                       "deepspeed": a.deepspeed, "bf16": a.bf16,
                       "log_history": trainer.state.log_history}, f, indent=2)
        print(f"teacher: {result.global_step} steps, mean loss {result.training_loss:.4f} -> {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
