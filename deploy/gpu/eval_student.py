#!/usr/bin/env python3
"""Evaluate a model icld trained (config.json, model.safetensors, tokenizer.json) with PyTorch +
Hugging Face transformers, and check the numbers against icld's on the same data.

Few-shot scoring: `icld icl eval ... --items items.jsonl --predictions preds.jsonl` writes every
scored sequence (the prompt of one test example with one option, already tokenized) and icld's
per-example option scores; this script scores the same sequences (sum of log P over the
continuation tokens), picks the best option per example, reports accuracy per task and seed,
and compares the scores and picks with icld's.

Perplexity: `--text-file F` scores F exactly as `icld eval-lm` does (the text tokenized without
special tokens, cut into consecutive windows of n_positions tokens, every token but a window's
first scored); `--eval-lm J` compares with icld's `eval-lm --json` output.

Exit status 1 when a comparison is off by more than --tol (relative), 2 for bad input.
"""
import argparse
import json
import math
import os
import sys
from collections import defaultdict

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast


def die(msg, code=2):
    print(f"eval_student.py: {msg}", file=sys.stderr)
    sys.exit(code)


def read_jsonl(path, what):
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as e:
                    die(f"{path}:{n}: not JSON ({e}); expected {what}")
    return rows


def load(model_dir, device):
    if not os.path.isfile(os.path.join(model_dir, "config.json")):
        die(f"--model {model_dir}: no config.json (an icld model directory: config.json, model.safetensors, tokenizer.json)")
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).to(device).eval()
    try:
        tok = AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError):
        # icld writes tokenizer.json alone (no tokenizer_config.json): load the file itself.
        tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(model_dir, "tokenizer.json"))
    return model, tok


@torch.no_grad()
def score_items(model, items, batch, device):
    """Sum of log P(ids[t] | ids[:t]) for t >= cont_start, per item; right-padded batches."""
    out = [0.0] * len(items)
    order = sorted(range(len(items)), key=lambda i: -len(items[i]["input_ids"]))
    for s in range(0, len(order), batch):
        idx = order[s:s + batch]
        L = max(len(items[i]["input_ids"]) for i in idx)
        ids = torch.zeros((len(idx), L), dtype=torch.long)
        att = torch.zeros((len(idx), L), dtype=torch.long)
        for b, i in enumerate(idx):
            x = items[i]["input_ids"]
            ids[b, :len(x)] = torch.tensor(x)
            att[b, :len(x)] = 1
        logp = torch.log_softmax(model(input_ids=ids.to(device), attention_mask=att.to(device)).logits.float(), dim=-1).cpu()
        for b, i in enumerate(idx):
            x, c = items[i]["input_ids"], items[i]["cont_start"]
            out[i] = sum(logp[b, t - 1, x[t]].item() for t in range(c, len(x)))
    return out


@torch.no_grad()
def perplexity(model, ids, window, device):
    """icld eval-lm's rule: consecutive windows of `window` tokens, each scored on its own."""
    total, count = 0.0, 0
    for s in range(0, len(ids), window):
        w = ids[s:s + window]
        if len(w) < 2:
            continue
        x = torch.tensor([w], device=device)
        logits = model(input_ids=x).logits.float()
        total += torch.nn.functional.cross_entropy(logits[0, :-1], x[0, 1:], reduction="sum").item()
        count += len(w) - 1
    if count == 0:
        die("the text has fewer than 2 tokens")
    return {"tokens": count, "nll": total / count, "ppl": math.exp(total / count)}


def close(a, b, tol):
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="icld model directory")
    p.add_argument("--items", help="icl eval --items output")
    p.add_argument("--predictions", help="icl eval --predictions output of the same run (to compare with)")
    p.add_argument("--text-file", help="text to compute the perplexity of")
    p.add_argument("--eval-lm", help="icld eval-lm --json output on the same text (to compare with)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--tol", type=float, default=1e-3, help="relative tolerance of the comparisons")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args()
    if not a.items and not a.text_file:
        die("give --items (few-shot scoring) and/or --text-file (perplexity)")
    if a.predictions and not a.items:
        die("--predictions needs --items")
    if a.eval_lm and not a.text_file:
        die("--eval-lm needs --text-file")
    model, tok = load(a.model, a.device)
    report, bad = {"model": a.model}, []

    if a.items:
        items = read_jsonl(a.items, "icl eval --items lines")
        if not items:
            die(f"{a.items}: no scored sequences (only classification tasks are exported)")
        for n, it in enumerate(items, 1):
            if it.get("order", 0) != 0 or it.get("calib"):
                die(f"{a.items}:{n}: demonstration orders > 1 and --calibrate are not scored here (export with --orders 1, no --calibrate)")
        scores = score_items(model, items, a.batch_size, a.device)
        # (task, seed, example) -> option scores and the gold option
        ex = defaultdict(dict)
        gold = {}
        for it, s in zip(items, scores):
            key = (it["task"], it["seed"], it["example"])
            ex[key][it["option"]] = s
            if it["gold"]:
                gold[key] = it["option"]
        acc = defaultdict(list)
        picks = {}
        for key, opts in ex.items():
            best = max(sorted(opts), key=lambda o: opts[o])  # first of equal maxima, as icld
            picks[key] = best
            acc[(key[0], key[1])].append(1.0 if gold.get(key) == best else 0.0)
        per = {f"{t} seed {s}": sum(v) / len(v) for (t, s), v in sorted(acc.items())}
        tasks = sorted({t for t, _ in acc})
        task_mean = {t: sum(per[k] for k in per if k.startswith(t + " seed ")) / sum(1 for k in per if k.startswith(t + " seed ")) for t in tasks}
        report["scoring"] = {"sequences": len(items), "examples": len(ex), "accuracy": per, "average_accuracy": sum(task_mean.values()) / len(task_mean)}
        if a.predictions:
            preds = read_jsonl(a.predictions, "icl eval --predictions lines")
            seen = defaultdict(int)
            maxdiff, agree, n = 0.0, 0, 0
            for pr in preds:
                if not pr.get("scores"):
                    continue  # generation tasks have no option scores
                key = (pr["task"], pr["seed"], seen[(pr["task"], pr["seed"])])
                seen[(pr["task"], pr["seed"])] += 1
                if key not in ex:
                    die(f"{a.predictions}: {key} is not in {a.items} (export both from one icl eval run)")
                ours = [ex[key][o] for o in range(len(pr["scores"]))]
                maxdiff = max(maxdiff, max(abs(x - y) / max(1.0, abs(y)) for x, y in zip(ours, pr["scores"])))
                icld_pick = max(range(len(pr["scores"])), key=lambda o: (pr["scores"][o], -o))
                agree += picks[key] == icld_pick
                n += 1
            report["scoring"]["vs_icld"] = {"examples": n, "max_rel_score_diff": maxdiff, "same_prediction": agree}
            if n != len(ex) or maxdiff > a.tol:
                bad.append(f"scores differ from icld's (max relative difference {maxdiff:.2e}, {n} of {len(ex)} examples matched)")
            elif agree != n:
                # Scores within tolerance can still swap a near-tie; name it rather than fail on it.
                report["scoring"]["vs_icld"]["note"] = f"{n - agree} near-tie(s) picked differently"

    if a.text_file:
        with open(a.text_file, encoding="utf-8") as f:
            text = f.read()
        ids = tok(text, add_special_tokens=False)["input_ids"]
        window = getattr(model.config, "n_positions", None) or model.config.max_position_embeddings
        ppl = perplexity(model, ids, window, a.device)
        report["perplexity"] = ppl
        if a.eval_lm:
            with open(a.eval_lm, encoding="utf-8") as f:
                j = json.load(f)
            report["perplexity"]["vs_icld"] = {"icld_tokens": j["tokens"], "icld_nll": j["nll"], "rel_nll_diff": abs(ppl["nll"] - j["nll"]) / max(1.0, abs(j["nll"]))}
            if j["tokens"] != ppl["tokens"] or not close(ppl["nll"], j["nll"], a.tol):
                bad.append(f"perplexity differs from icld's: {ppl['tokens']} tokens nll {ppl['nll']:.6f} here, {j['tokens']} tokens nll {j['nll']:.6f} in icld")

    print(json.dumps(report, indent=2))
    if bad:
        die("; ".join(bad), 1)


if __name__ == "__main__":
    main()
