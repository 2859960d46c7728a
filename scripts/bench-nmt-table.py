#!/usr/bin/env python3
"""Markdown table from the JSON lines of scripts/bench-nmt.sh (seq2seq_bench.py and
benches/nmt.rs print the same record). Lines with the same model, batch, engine and
compute type (several rounds) are pooled: their per-repetition tok/s are averaged.
Beam pairs are tabled apart: per pair, beam search's tok/s over greedy's, and the median
of those ratios. The script now records them as one line per engine with `vs_greedy`
(greedy and beam search interleaved in one process, a pair per repetition); lines
labelled `...:pairP:beamsK` (one process per run, from earlier results files) are read
too.

Usage: bench-nmt-table.py RESULTS.jsonl [--label-prefix PREFIX]
"""
import argparse
import json
import re
import statistics
import sys

SHAPES = {"marian": "opus-mt-ur-en (Marian)", "nllb": "NLLB-200-distilled-600M"}
ORDER = ["transformers fp32", "CT2 fp32", "CT2 int8", "tarjuma f32", "tarjuma int8",
         "tarjuma q8_0"]


def engine_name(r):
    e, ct = r.get("engine"), str(r.get("compute_type", ""))
    if e == "hf":
        return "transformers fp32"
    if e == "ct2":
        return "CT2 " + ("fp32" if ct in ("float32", "default") else ct)
    if e == "tarjuma":
        return "tarjuma " + ("f32" if ct == "float32" else ct)
    return f"{e} {ct}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--label-prefix", default="")
    a = ap.parse_args()

    groups = {}  # (kind, batch) -> engine -> {"reps": [...], "busy": [...], "n": set()}
    pairs = {}  # (kind, engine) -> pair -> (greedy tok/s, beams, beam tok/s, busy)
    split = {}  # (kind, engine) -> pair -> beams -> record (earlier files)
    cpus_seen, kernels_seen = [], set()
    with open(a.results) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            r = json.loads(line)
            if not str(r.get("label", "")).startswith(a.label_prefix):
                continue
            if "cpu" in r:
                cpus_seen.append(r["cpu"])
            if "kernel" in r:
                kernels_seen.add((engine_name(r), r["kernel"]))
            key = (r.get("kind", "?"), engine_name(r))
            if r.get("vs_greedy"):
                busy = max([0.0] + [float(x) for x in r.get("foreign_busy_cores", [])])
                for p, (g, b) in enumerate(zip(r["greedy_tok_s_reps"], r["tok_s_reps"]), 1):
                    pairs.setdefault(key, {})[p] = (g, int(r["beams"]), b, busy)
                continue
            pair = re.search(r":pair(\d+):beams(\d+)$", str(r.get("label", "")))
            if pair:
                by = split.setdefault(key, {}).setdefault(int(pair[1]), {})
                by[int(pair[2])] = r
                continue
            g = groups.setdefault((r.get("kind", "?"), int(r["batch"])), {})
            e = g.setdefault(engine_name(r), {"reps": [], "busy": [], "n": set(), "lens": set()})
            e["reps"] += [float(x) for x in r.get("tok_s_reps", [r["tok_s_mean"]])]
            e["busy"] += [float(x) for x in r.get("foreign_busy_cores", [])]
            e["n"].add(r.get("n"))
            e["lens"].update(r.get("output_lengths", []))
    for key, by_pair in split.items():
        for p, by in by_pair.items():
            beams = sorted(k for k in by if k > 1)
            if 1 not in by or not beams:
                continue
            g, b = by[1], by[beams[-1]]
            busy = max([0.0] + [float(x) for r in (g, b) for x in r.get("foreign_busy_cores", [])])
            pairs.setdefault(key, {})[p] = (g["tok_s_mean"], beams[-1], b["tok_s_mean"], busy)
    if not groups and not pairs:
        print(f"no results in {a.results} (label prefix {a.label_prefix!r})", file=sys.stderr)
        return 1

    def mean(e):
        return statistics.mean(e["reps"])

    def ratio(e, ref):
        return f"{mean(e) / mean(ref):.2f}" if ref else "–"

    cpus = {json.dumps(c, sort_keys=True) for c in cpus_seen}
    for c in sorted(cpus):
        c = json.loads(c)
        print(f"CPU: {c.get('model', '?')} ({c.get('vendor', '?')}; {' '.join(c.get('isa', []))})")
    for e, k in sorted(kernels_seen):
        print(f"kernel: {e}: {k}")
    print()
    print("| model shape | batch | engine/compute type | tok/s mean ± sd | ratio vs CT2 fp32 "
          "| ratio vs CT2 int8 | foreign_busy_cores max |")
    print("|---|---|---|---|---|---|---|")
    kinds = sorted({k for k, _ in groups},
                   key=lambda k: (list(SHAPES).index(k) if k in SHAPES else len(SHAPES), k))
    summary = []
    notes = []
    for kind in kinds:
        for batch in sorted((b for k, b in groups if k == kind), reverse=True):
            g = groups[(kind, batch)]
            fp32, int8 = g.get("CT2 fp32"), g.get("CT2 int8")
            names = [n for n in ORDER if n in g] + sorted(n for n in g if n not in ORDER)
            for name in names:
                e = g[name]
                sd = statistics.stdev(e["reps"]) if len(e["reps"]) > 1 else 0.0
                busy = f"{max(e['busy']):.3f}" if e["busy"] else "–"
                print(f"| {SHAPES.get(kind, kind)} | {batch} | {name} | {mean(e):.1f} ± {sd:.1f} "
                      f"| {ratio(e, fp32)} | {ratio(e, int8)} | {busy} |")
                if len(e["n"]) > 1 or len(e["lens"]) > 1:
                    notes.append(f"note: {kind} b{batch} {name}: n {sorted(e['n'])}, "
                                 f"output lengths {sorted(e['lens'])}")
            t32 = g.get("tarjuma f32")
            r1 = f"{mean(t32) / mean(fp32):.2f}" if t32 and fp32 else "n/a"
            line = f"- {SHAPES.get(kind, kind)}, batch {batch}: tarjuma f32 / CT2 fp32 = {r1}"
            for q in ("int8", "q8_0"):
                tq = g.get(f"tarjuma {q}")
                if tq and int8:
                    line += f"; tarjuma {q} / CT2 int8 = {mean(tq) / mean(int8):.2f}"
            summary.append(line)
    print()
    print("\n".join(summary))
    for n in notes:
        print(n)
    for line in beam_table(pairs):
        print(line)
    return 0


def beam_table(pairs):
    """Beam search against greedy, pair by pair (same engine, batch 1, back to back)."""
    out = []
    for kind, engine in sorted(
            pairs, key=lambda k: (list(SHAPES).index(k[0]) if k[0] in SHAPES else 9, k)):
        rows, ratios = [], []
        for p, (greedy, k, beam, busy) in sorted(pairs[(kind, engine)].items()):
            ratio = beam / greedy
            ratios.append(ratio)
            rows.append(f"| {SHAPES.get(kind, kind)} | {engine} | {p} | {greedy:.1f} "
                        f"| {k} | {beam:.1f} | {ratio:.2f} | {busy:.3f} |")
        if not rows:
            continue
        if not out:
            out += ["", "Beam search at batch 1 against greedy (each pair back to back):",
                    "", "| model shape | engine | pair | greedy tok/s | beams | beam tok/s "
                    "| beam / greedy | foreign_busy_cores max |", "|---|---|---|---|---|---|---|---|"]
        out += rows
        out.append(f"| {SHAPES.get(kind, kind)} | {engine} | median | | | | "
                   f"**{statistics.median(ratios):.2f}** (min {min(ratios):.2f}) | |")
    return out


if __name__ == "__main__":
    sys.exit(main())
