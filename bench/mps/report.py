"""Summary of scripts/gpu-mps.sh's results.txt: a Markdown table per part and, where matplotlib
is there, a plot of each model's total throughput against plain time-slicing.

    python3 report.py RESULTS_TXT SUMMARY_MD [PLOT_PNG]
"""
import re
import statistics
import sys
from collections import defaultdict

KV = re.compile(r'(\w+)=("[^"]*"|\S+)')
ORDER = ["alone", "plain", "mpsfree", "mpseq", "slicer", "observed"]


def parse(path):
    clients, notes = [], []
    for line in open(path):
        line = line.rstrip("\n")
        if line.startswith("case="):
            clients.append({k: v.strip('"') for k, v in KV.findall(line)})
        elif line:
            notes.append(line)
    return clients, notes


def num(d, k):
    try:
        return float(d[k])
    except (KeyError, ValueError):
        return None


def models_table(rows, out):
    by = defaultdict(list)
    for r in rows:
        if r["case"] == "models":
            by[(r["model"] if "model" in r else r["client"].rsplit("-", 1)[0], r["cfg"])].append(r)
    if not by:
        return {}
    out.append("## 4 processes of a model (req/s total; p99 the worst process's)\n")
    out.append("| model | cfg | procs ok | req/s total | x plain | x alone | p50 ms (median) | p99 ms (worst) | errors |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    totals = {}
    for (m, cfg) in sorted(by, key=lambda k: (k[0], ORDER.index(k[1]) if k[1] in ORDER else 9)):
        rs = by[(m, cfg)]
        ok = [r for r in rs if "error" not in r and num(r, "rate") is not None]
        total = sum(num(r, "rate") for r in ok)
        totals[(m, cfg)] = total
    for (m, cfg) in sorted(by, key=lambda k: (k[0], ORDER.index(k[1]) if k[1] in ORDER else 9)):
        rs = by[(m, cfg)]
        ok = [r for r in rs if "error" not in r and num(r, "rate") is not None]
        errs = [r.get("error", "no result line")[:60] for r in rs if r not in ok]
        total = totals[(m, cfg)]
        plain = totals.get((m, "plain"))
        alone = totals.get((m, "alone"))
        p50 = statistics.median(num(r, "p50_ms") for r in ok) if ok else float("nan")
        p99 = max((num(r, "p99_ms") for r in ok), default=float("nan"))
        xp = f"{total / plain:.2f}" if plain else "-"
        xa = f"{total / alone:.2f}" if alone else "-"
        out.append(f"| {m} | {cfg} | {len(ok)}/{len(rs)} | {total:.0f} | {xp} | {xa} | {p50:.2f} | {p99:.2f} | {'; '.join(errs)} |")
    out.append("")
    return totals


def sat_table(rows, out):
    by = defaultdict(dict)
    for r in rows:
        if r["case"] == "sat":
            by[r["cfg"]][r["client"]] = r
    if not by:
        return
    alone = num(by.get("alone", {}).get("trainer", {}), "rate")
    out.append("## 2 saturating trainers (iterations/s)\n")
    out.append("| cfg | threads A/B | A | B | A:B | A+B over one alone |")
    out.append("|---|---|---|---|---|---|")
    for cfg in ("alone", "plain", "mpseq", "slicer"):
        if cfg not in by:
            continue
        c = by[cfg]
        if cfg == "alone":
            out.append(f"| alone | - | {alone:.1f} | - | - | 1.00 |" if alone else "| alone | - | error | - | - | - |")
            continue
        a, b = num(c.get("A", {}), "rate"), num(c.get("B", {}), "rate")
        th = f"{c.get('A', {}).get('threads', '') or '-'}/{c.get('B', {}).get('threads', '') or '-'}"
        if a is None or b is None:
            errs = [c.get(x, {}).get("error", "no result") for x in ("A", "B")]
            out.append(f"| {cfg} | {th} | {a} | {b} | - | - | {'; '.join(map(str, errs))[:80]}")
            continue
        ratio = f"{a / b:.2f}" if b else "-"
        tot = f"{(a + b) / alone:.2f}" if alone else "-"
        out.append(f"| {cfg} | {th} | {a:.1f} | {b:.1f} | {ratio} | {tot} |")
    out.append("")


def crash_table(rows, notes, out):
    cr = [r for r in rows if r["case"] == "crash"]
    if not cr:
        return
    out.append("## A faulting client among 3 inference clients\n")
    out.append("| cfg | client | result |")
    out.append("|---|---|---|")
    for r in cr:
        if "error" in r and r["client"] != "faulter":
            res = f"error {r['error'][:90]}"
        elif r["client"] == "faulter":
            res = " ".join(f"{k}={r[k]}" for k in ("before", "error") if k in r) or "no line"
        else:
            res = f"{num(r, 'rate') or 0:.0f} req/s, p99 {num(r, 'p99_ms') or 0:.2f} ms"
        out.append(f"| {r['cfg']} | {r['client']} | {res} |")
    out.append("")


def plot(totals, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    models = sorted({m for m, _ in totals})
    cfgs = ["plain", "mpsfree", "mpseq", "slicer", "observed"]
    fig, ax = plt.subplots(figsize=(8, 4))
    w = 0.16
    for i, cfg in enumerate(cfgs):
        ys = [totals.get((m, cfg), 0) / totals[(m, "plain")] if totals.get((m, "plain")) else 0 for m in models]
        ax.bar([j + (i - 2) * w for j in range(len(models))], ys, w, label=cfg)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(range(len(models)), models)
    ax.set_ylabel("4 processes' total, x plain time-slicing")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def main():
    rows, notes = parse(sys.argv[1])
    out = ["# gpu-mps results\n"]
    env = [n for n in notes if n.startswith("env:")]
    out += ["```", *env, "```", ""]
    totals = models_table(rows, out)
    sat_table(rows, out)
    crash_table(rows, notes, out)
    other = [n for n in notes if n.startswith(("life:", "mem:", "crash:", "metrics:", "bound:", "kill:"))]
    if other:
        out += ["## Checks\n", "```", *other, "```", ""]
    life = [r for r in rows if r["case"] in ("life", "bound", "kill")]
    if life:
        out += ["## Clients of the lifecycle and bound parts\n", "```"]
        out += [" ".join(f"{k}={v}" for k, v in r.items()) for r in life]
        out += ["```", ""]
    open(sys.argv[2], "w").write("\n".join(out) + "\n")
    if len(sys.argv) > 3 and totals:
        plot(totals, sys.argv[3])


if __name__ == "__main__":
    main()
