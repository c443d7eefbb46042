#!/usr/bin/env python3
"""Derive the demo's data files from facts.json (the one hand-written source):
  train.json     every fact asked 3 ways + the identity questions (seed chat format)
  eval.json      one different wording per fact + held-out identity questions, each with "answer"
  identity.json  the identity questions alone (seed chat format)
  prefs.json     30 preference pairs: correct answer (chosen) vs the fact with a wrong name (rejected)
Usage: python3 examples/knowledge-update/make_data.py   (standard library only)
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
PREF_FACTS = 30


def main():
    with open(os.path.join(HERE, "facts.json"), encoding="utf-8") as f:
        src = json.load(f)
    system, ident, facts = src["system"], src["identity"], src["facts"]

    def conv(q, a):
        return {"conversations": [{"role": "system", "content": system}, {"role": "user", "content": q},
                                  {"role": "assistant", "content": a}]}

    keys = set()
    for x in facts:
        key = x["answer"]
        # The answer must be learnable only from training: never inside the questions.
        assert key.lower() not in x["eval_question"].lower(), x["id"]
        assert all(key.lower() not in q.lower() for q in x["train_questions"]), x["id"]
        assert x["eval_question"] not in x["train_questions"], x["id"]
        assert x["fact"].count(key) == 1, x["id"]
        assert key not in keys, x["id"]
        keys.add(key)
    train = [conv(q, x["fact"]) for x in facts for q in x["train_questions"]]
    identity = [conv(t["question"], t["reply"]) for t in ident["train"]]
    evals = [{**conv(x["eval_question"], x["fact"]), "answer": x["answer"], "id": x["id"]} for x in facts]
    seen = {t["question"] for t in ident["train"]}
    for i, t in enumerate(ident["eval"]):
        assert t["question"] not in seen, t["question"]
        evals.append({**conv(t["question"], t["reply"]), "answer": t["answer"], "id": f"identity-{i}"})
    # The same facts asked in a training wording: recall of what was taught, next to eval.json's
    # generalisation to new wordings.
    seen_evals = [{**conv(x["train_questions"][0], x["fact"]), "answer": x["answer"], "id": x["id"]} for x in facts]
    for i, t in enumerate(ident["train"]):
        key = next((w for w in (ident["name"], ident["maker"].split()[0]) if w in t["reply"]), None)
        if key:
            seen_evals.append({**conv(t["question"], t["reply"]), "answer": key, "id": f"identity-seen-{i}"})
    prefs = [{"prompt": [{"role": "system", "content": system}, {"role": "user", "content": x["train_questions"][0]}],
              "chosen": [{"role": "assistant", "content": x["fact"]}],
              "rejected": [{"role": "assistant", "content": x["fact"].replace(x["answer"], x["wrong"])}]}
             for x in facts[:PREF_FACTS]]

    def dump(name, records):
        with open(os.path.join(HERE, name), "w", encoding="utf-8") as f:
            f.write("[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n]\n")

    dump("train.json", train + identity)
    dump("eval.json", evals)
    dump("eval_seen.json", seen_evals)
    dump("identity.json", identity)
    dump("prefs.json", prefs)
    print(f"{len(facts)} facts: train {len(train) + len(identity)}, eval {len(evals)}, identity {len(identity)}, prefs {len(prefs)}")


if __name__ == "__main__":
    main()
