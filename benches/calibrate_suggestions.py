#!/usr/bin/env python3
"""Choose the suggestion settings of issue 15 on pie-eval's calibrate half.

Reads the JSONL records of `pie-eval --suggest --half calibrate` runs made
with a build that recorded the first suggestion's stream (chunk by chunk,
with its confidence so far) and every branch decoded for the alternatives
(commit 4e8d95c; `--fork both --pool 4`), and prints:

  1. how alternatives ranked by each key, from pools of 1-4 runner-ups per
     kind of fork point, do on EM@3 / EM@1;
  2. for each number of tokens the verdict waits for, the threshold that
     shows at least 45% of the triggers, and what it gives: EM among the
     shown over EM of showing all, and when the verdict comes (ms of
     decoding after the request, median / p95, over the shown).

The editor's filters are re-implemented here as in src/predict/suggest.rs
(`hidden`); the report half is never read.

    python3 benches/calibrate_suggestions.py cal-py/suggest.jsonl cal-rs/suggest.jsonl
"""
import json
import math
import sys


def load(paths):
    records = []
    for path in paths:
        with open(path) as f:
            records += [json.loads(line) for line in f if line.strip()]
    return [r for r in records if r["half"] == "calibrate"]


def first_line(text):
    return text.split("\n")[0]


def exact(a, b):
    return a.strip() == b.strip()


def score(confidence):
    return math.exp(confidence["mean_logprob"]) if confidence["tokens"] else 0.0


def hidden(text, confidence, threshold, above, below, complete=True):
    code = text.strip()
    if not code:
        return "blank"
    if all(c in ")]},;" or c.isspace() for c in code):
        return "only-closing"
    line = (text[1:] if text.startswith("\n") else text).split("\n")[0].strip()

    def repeats(other):
        if other is None or not other.strip():
            return False
        return other.strip() == line if complete else other.strip().startswith(line)

    if "\n" not in text.lstrip("\n") and (repeats(above) or repeats(below)):
        return "repeats"
    if confidence < threshold:
        return "unsure"
    return None


def percentile(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    return values[round((len(values) - 1) * p / 100)]


RANKS = {
    "decoded": lambda c: 0,
    "deficit": lambda c: c["deficit"],
    "mean": lambda c: -c["confidence"]["mean_logprob"],
    "sum": lambda c: -c["confidence"]["mean_logprob"] * c["confidence"]["tokens"],
}


def em_at_3(records, rank, pool):
    hits1 = hits3 = 0
    for r in records:
        target = r["target"]["text"]
        lines = [first_line(r["choices"][0]["text"]).strip()] if r["choices"] else [""]
        # The branches only (records from 7b4a2e1 on also hold beam lines).
        cands = [c for c in r.get("candidates", []) if c.get("source", "fork") == "fork"]
        at_first = sorted((c for c in cands if c["at_first_code"]), key=lambda c: c["deficit"])
        elsewhere = sorted((c for c in cands if not c["at_first_code"]), key=lambda c: c["deficit"])
        for c in sorted(at_first[:pool] + elsewhere[:pool], key=RANKS[rank]):
            line = first_line(c["text"]).strip()
            if len(lines) < 3 and line and line not in lines:
                lines.append(line)
        hits1 += exact(lines[0], target)
        hits3 += any(exact(l, target) for l in lines)
    return 100 * hits1 / len(records), 100 * hits3 / len(records)


def verdict_gate(records, k, coverage=0.45):
    items = []
    for r in records:
        if not r["choices"] or not r.get("stream"):
            continue
        first = r["choices"][0]
        text = first["text"]
        step = next((s for s in r["stream"] if s["tokens"] >= k), None)
        if step is None or step["chars"] >= len(text):
            judged, conf, complete, ms = text, score(first["confidence"]), True, r["first_ms"]
            if step is not None:
                conf, ms = step["score"], step["ms"]
        else:
            judged, conf, complete, ms = text[: step["chars"]], step["score"], False, step["ms"]
        hit = exact(first_line(text), r["target"]["text"])
        items.append((judged, conf, complete, r.get("line_above"), r.get("line_below"), hit, ms))
    n = len(records)
    em_all = sum(i[5] for i in items) / n

    def shown(t):
        return [i for i in items if hidden(i[0], i[1], t, i[3], i[4], i[2]) is None]

    threshold = max((t / 100 for t in range(101) if len(shown(t / 100)) >= coverage * n), default=0.0)
    chosen = shown(threshold)
    em_shown = sum(i[5] for i in chosen) / max(len(chosen), 1)
    ms = [i[6] for i in chosen]
    return threshold, len(chosen) / n, em_shown / em_all, percentile(ms, 50), percentile(ms, 95)


def main():
    records = load(sys.argv[1:])
    for language in ("python", "rust"):
        group = [r for r in records if r["target"]["language"].lower() == language]
        if not group:
            continue
        print(f"## {language}: {len(group)} calibrate triggers\n")
        print("| rank | pool | EM@1 % | EM@3 % | EM@3 / EM@1 |\n|---|---:|---:|---:|---:|")
        for rank in RANKS:
            for pool in (1, 2, 3, 4):
                e1, e3 = em_at_3(group, rank, pool)
                print(f"| {rank} | {pool} | {e1:.1f} | {e3:.1f} | {e3 / e1:.2f} |")
        if not any(r.get("stream") for r in group):
            print("\n(no streams recorded: the verdict table needs records from 4e8d95c)\n")
            continue
        print("\n| verdict after tokens | threshold (45% shown) | shown % | EM shown / EM all | verdict ms p50 | p95 |")
        print("|---:|---:|---:|---:|---:|---:|")
        for k in (4, 6, 8, 10, 12, 48):
            t, cov, ratio, p50, p95 = verdict_gate(group, k)
            print(f"| {k} | {t:.2f} | {100 * cov:.1f} | {ratio:.2f} | {p50:.0f} | {p95:.0f} |")
        print()


if __name__ == "__main__":
    main()
