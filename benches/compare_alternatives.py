#!/usr/bin/env python3
"""Compare where the alternatives come from, on the same triggers.

Reads pie-eval --suggest records made with `--beam N` beside the branches
(from 7b4a2e1 on, every candidate carries its `source`: "fork" or "beam"),
ranks each pool as the editor does (line log-probability, distinct first
lines, none only closing brackets, the first suggestion first), and prints
EM@1, EM@3 and EM@3 / EM@1 per pool, and each pool's difference from the best pool in triggers with a
paired bootstrap 95% interval. The files given are pooled: pass calibrate
runs to choose, report runs to report.

    python3 benches/compare_alternatives.py c4-rs/suggest.jsonl c4-py/suggest.jsonl

Runs of different settings on the same triggers compare as `label=files`
(files comma-separated), paired by record id and target:

    python3 benches/compare_alternatives.py beam4=c4-b4-rs/suggest.jsonl beam8=c4-b8-rs/suggest.jsonl

Only the pools whose sources the records hold are shown. The copies pools
(`--bonus`) need the records and this script as of 3af5cd0.
"""
import json
import random
import sys

POOLS = {"branches": {"fork"}, "beam": {"beam"}, "both": {"fork", "beam"}}


def first_line(text):
    return text.strip("\n").split("\n")[0]


def exact(a, b):
    return a.strip() == b.strip()


def only_closing(line):
    """Nothing but closing brackets: the editor does not offer it (from 2026-12-02)."""
    return all(c in ")]},;" or c.isspace() for c in line)


def line_logprob(candidate):
    c = candidate["confidence"]
    return c["mean_logprob"] * c["tokens"]


def offered(record, sources):
    """The lines the editor would offer from these sources, the first one first."""
    if not record["choices"]:
        return [""]
    lines = [first_line(record["choices"][0]["text"]).strip()]
    pool = [c for c in record["candidates"] if c.get("source", "fork") in sources]
    for c in sorted(pool, key=lambda c: -line_logprob(c)):
        line = first_line(c["text"]).strip()
        if len(lines) < 3 and not only_closing(line) and line not in lines:
            lines.append(line)
    return lines


def load(label, paths):
    records = {}
    for path in paths:
        for line in open(path):
            r = json.loads(line)
            # Ids restart with each draw (seed): the target tells draws apart.
            t = r["target"]
            records[(r["id"], t["file"], t["line"])] = r
    return label, records


def main():
    labelled = [arg.split("=", 1) for arg in sys.argv[1:] if "=" in arg]
    pooled = [arg for arg in sys.argv[1:] if "=" not in arg]
    runs = [load(label, paths.split(",")) for label, paths in labelled]
    if pooled:
        runs.insert(0, load("", pooled))
    ids = sorted(set.intersection(*(set(records) for _, records in runs)))
    n = len(ids)
    hits = {}
    for label, records in runs:
        present = {c.get("source", "fork") for i in ids for c in records[i]["candidates"]}
        for name, sources in POOLS.items():
            if not sources <= present:
                continue
            key = f"{label} {name}".strip()
            hits[key] = []
            for i in ids:
                lines = offered(records[i], sources)
                target = records[i]["target"]["text"]
                hits[key].append((exact(lines[0], target), any(exact(l, target) for l in lines)))
    first = next(iter(hits.values()))
    em1 = sum(h[0] for h in first)
    print(f"{n} triggers, EM@1 {100 * em1 / n:.1f}%\n")
    best = max(hits, key=lambda k: sum(h[1] for h in hits[k]))
    print(f"| alternatives from | EM@3 % | EM@3 / EM@1 | against {best} (95% CI) |\n|---|---:|---:|---|")
    rng = random.Random(0)
    for name in hits:
        em3 = sum(h[1] for h in hits[name])
        diff = [int(a[1]) - int(b[1]) for a, b in zip(hits[name], hits[best])]
        boots = sorted(sum(diff[rng.randrange(n)] for _ in range(n)) for _ in range(2000))
        against = "" if name == best else f"{sum(diff):+d} [{boots[50]:+d}, {boots[1949]:+d}]"
        print(f"| {name} | {100 * em3 / n:.1f} | {em3 / max(em1, 1):.2f} | {against} |")


if __name__ == "__main__":
    main()
