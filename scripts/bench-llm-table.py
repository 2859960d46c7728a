#!/usr/bin/env python3
"""Tables of scripts/bench-llm.sh: tarjuma beside llama.cpp per model and test, as ratios.

usage: bench-llm-table.py RESULTS.jsonl
"""
import json
import sys
from collections import defaultdict


def main(path):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    by_model = defaultdict(lambda: {"tarjuma": defaultdict(list), "llama.cpp": defaultdict(list)})
    meta = {}
    for r in rows:
        name = r["name"]
        if r["engine"] == "tarjuma-prompt-alone":
            meta.setdefault(name, {})["alone"] = r
            continue
        if r["engine"] == "tarjuma":
            meta.setdefault(name, {})["tarjuma"] = r
            for t in r["tests"]:
                by_model[name]["tarjuma"][t["test"]].append(t["avg_ts"])
        else:
            test = f"pp{r['n_prompt']}" if r["n_prompt"] else f"tg{r['n_gen']}"
            by_model[name]["llama.cpp"][test].append(r["avg_ts"])
            meta.setdefault(name, {})["llama"] = r
    for name, e in by_model.items():
        t = meta[name].get("tarjuma", {})
        l = meta[name].get("llama", {})
        cpu = t.get("cpu", {})
        print(f"\n### {name} — {cpu.get('model', '?')} ({cpu.get('vendor', '?')}; {' '.join(cpu.get('isa', []))}), {t.get('threads', '?')} threads\n")
        print(f"tarjuma kernels: {', '.join(t.get('kernels', []))}; llama.cpp {l.get('build_commit', '?')} on `{l.get('cpu_info', '?')}`, backend {l.get('backends', '?')}\n")
        print("| test | llama.cpp tok/s | tarjuma tok/s | tarjuma / llama.cpp |")
        print("|---|---|---|---|")
        mean = lambda v: sum(v) / len(v)
        single = None
        for test in sorted(e["tarjuma"], key=lambda s: (s[:2], len(s), s)):
            ours = mean(e["tarjuma"][test])
            if test.startswith("tg") and "x" not in test:
                single = ours
            theirs = e["llama.cpp"].get(test)
            if theirs:
                print(f"| {test} | {mean(theirs):.1f} | {ours:.1f} | **{ours / mean(theirs):.2f}** |")
            else:
                extra = f" ({ours / single:.1f}× one sequence)" if single and "x" in test else ""
                print(f"| {test} | — | {ours:.1f}{extra} | — |")
        gib = t.get("file_bytes", 0)
        if gib:
            print(f"\nload {t['load_s']:.2f} s; peak RSS of the whole run (every test, 8 "
                  f"sequences' caches included) {t['peak_rss_bytes'] / 2**20:.0f} MiB = "
                  f"{t['peak_rss_bytes'] / gib:.2f}× the {gib / 2**20:.0f} MiB file")
        a = meta[name].get("alone")
        if a and a.get("file_bytes"):
            p = max((x["n_prompt"] for x in a["tests"]), default=0)
            print(f"peak RSS of a {p}-token prompt alone: {a['peak_rss_bytes'] / 2**20:.0f} MiB = "
                  f"**{a['peak_rss_bytes'] / a['file_bytes']:.2f}×** the file; load {a['load_s']:.2f} s")


if __name__ == "__main__":
    main(sys.argv[1])
