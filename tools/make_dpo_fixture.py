#!/usr/bin/env python3
"""Golden numbers for src/finetune/dpo.ts's dpoLoss: TRL's DPO loss formulas written out in
PyTorch (sigmoid, sigmoid with label smoothing = conservative DPO, ipo) on given per-pair
sequence log-probabilities. Writes test/fixtures/dpo/loss.json with the inputs, the loss, the
gradient of the loss w.r.t. the policy log-probabilities, and the metrics TRL logs.

Usage: /usr/bin/python3 tools/make_dpo_fixture.py
"""
import json
import os

import torch
import torch.nn.functional as F


def dpo(pc, pr, rc, rr, beta, eps, loss_type):
    # TRL DPOTrainer.dpo_loss: logits = (pi_c - pi_r) - (ref_c - ref_r)
    logits = (pc - pr) - (rc - rr)
    if loss_type == "sigmoid":
        losses = -F.logsigmoid(beta * logits) * (1 - eps) - F.logsigmoid(-beta * logits) * eps
    elif loss_type == "ipo":
        losses = (logits - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(loss_type)
    chosen_rewards = beta * (pc - rc).detach()
    rejected_rewards = beta * (pr - rr).detach()
    return losses.mean(), chosen_rewards, rejected_rewards


def case(name, n, beta, eps, loss_type, gen, spread, start=False):
    # Sequence log-probs of a few dozen tokens: large negative numbers, as a real model gives.
    pc = (-20 + spread * torch.randn(n, generator=gen, dtype=torch.float64)).requires_grad_()
    pr = (-22 + spread * torch.randn(n, generator=gen, dtype=torch.float64)).requires_grad_()
    rc = -21 + spread * torch.randn(n, generator=gen, dtype=torch.float64)
    rr = -21 + spread * torch.randn(n, generator=gen, dtype=torch.float64)
    if start:  # the first step of training: policy = reference, h = 0
        rc, rr = pc.detach().clone(), pr.detach().clone()
    loss, cr, rj = dpo(pc, pr, rc, rr, beta, eps, loss_type)
    loss.backward()
    return {
        "name": name, "beta": beta, "label_smoothing": eps, "loss_type": loss_type,
        "policy_chosen": pc.tolist(), "policy_rejected": pr.tolist(),
        "ref_chosen": rc.tolist(), "ref_rejected": rr.tolist(),
        "loss": loss.item(),
        "grad_policy_chosen": pc.grad.tolist(), "grad_policy_rejected": pr.grad.tolist(),
        "metrics": {
            "rewards/chosen": cr.mean().item(),
            "rewards/rejected": rj.mean().item(),
            "rewards/accuracies": (cr > rj).double().mean().item(),
            "rewards/margins": (cr - rj).mean().item(),
            "logps/chosen": pc.detach().mean().item(),
            "logps/rejected": pr.detach().mean().item(),
        },
    }


def main():
    gen = torch.Generator().manual_seed(12)
    cases = [
        case("sigmoid", 6, 0.1, 0.0, "sigmoid", gen, 3.0),
        case("sigmoid large beta", 5, 2.0, 0.0, "sigmoid", gen, 8.0),
        case("label smoothing", 6, 0.5, 0.2, "sigmoid", gen, 3.0),
        case("ipo", 6, 0.1, 0.0, "ipo", gen, 3.0),
        case("ipo beta 1", 4, 1.0, 0.0, "ipo", gen, 1.0),
        case("sigmoid at the start (policy = reference)", 4, 0.1, 0.0, "sigmoid", gen, 3.0, start=True),
        case("label smoothing at the start", 4, 0.3, 0.25, "sigmoid", gen, 3.0, start=True),
    ]
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures", "dpo", "loss.json")
    with open(out, "w") as f:
        json.dump({"generator": "tools/make_dpo_fixture.py", "torch": torch.__version__, "cases": cases}, f, indent=1)
        f.write("\n")
    print(f"wrote {out}: {len(cases)} cases")


if __name__ == "__main__":
    main()
