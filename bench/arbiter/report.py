"""Summary table and plot of scripts/gpu-arbiter.sh's results.txt.

    python3 bench/arbiter/report.py RESULTS SUMMARY_MD [PLOT_PNG]

Each workload line of RESULTS is `case=.. cfg=.. client=.. weight=.. priority=.. key=value...`
(see bench/arbiter/workload.cu, torch_loop.py and infer_loop.py). `alone` runs are the
baselines; `plain` is driver time-slicing without the shim; `arb*` runs under libslicer.so and
`slicer arbiter`. (f) and (g) (infer_loop.py's real models) get a row per check in the table and
a table of their own per model and configuration below it.
"""
import collections
import re
import statistics
import sys


def parse(path):
    rows = []
    for line in open(path):
        if not line.startswith("case="):
            continue
        row = {}
        for tok in line.split():
            if "=" in tok:
                k, v = tok.split("=", 1)
                row[k] = v
        rows.append(row)
    return rows


def num(row, key):
    try:
        return float(row.get(key, "nan"))
    except ValueError:
        return float("nan")


def main():
    rows = parse(sys.argv[1])
    out = []
    plot = {}

    def pick(case, cfg, client=None):
        return [r for r in rows if r.get("case") == case and r.get("cfg") == cfg
                and (client is None or r.get("client") == client)]

    def pick_case(case):
        return [r for r in rows if r.get("case") == case]

    def one(case, cfg, client):
        r = pick(case, cfg, client)
        return r[0] if r else {}

    alone = one("alone", "plain", "sat")
    r1 = num(alone, "kernels")
    out.append("| case | target | plain time-slicing | gpu-slicer arbiter | met |")
    out.append("|---|---|---|---|---|")

    # one client alone under the arbiter (its checkpoints) vs alone without the shim
    lone = sorted({r["cfg"] for r in pick_case("alone") if r.get("cfg", "").startswith("arbmq")},
                  key=lambda c: -float(c[5:]))
    if lone and r1:
        cells = "; ".join(f"maxQueued {c[5:]} ms: {num(one('alone', c, 'sat'), 'kernels') / r1:.1%}"
                          for c in lone)
        out.append(f"| one saturating client alone under the arbiter (priority policy): "
                   f"throughput vs without the shim | - | 100% | {cells} | - |")

    # (a) 3:1; cfg arb: handover drain, arbov: overlap
    if pick("a", "plain") or pick("a", "arb") or pick("a", "arbov"):
        res = {}
        for cfg in ("plain", "arb", "arbov"):
            a, b = num(one("a", cfg, "A"), "kernels"), num(one("a", cfg, "B"), "kernels")
            if a == a and b == b:
                res[cfg] = (a / b if b else float("nan"), (a + b) / r1 if r1 else float("nan"))
        arbs = [k for k in ("arb", "arbov") if k in res]
        label = {"arb": "drain: ", "arbov": "overlap: "}
        cells = "; ".join(f"{label[k] if len(arbs) > 1 else ''}{res[k][0]:.3f}:1 "
                          f"({res[k][1]:.1%}; {res[k][0] / 3 - 1:+.1%})" for k in arbs)
        ok = ", ".join(f"{label[k]}{'yes' if abs(res[k][0] / 3 - 1) <= 0.03 else 'NO'}"
                       for k in arbs)
        out.append(f"| (a) 2 saturating, weights 3:1: GPU-time ratio (aggregate vs alone) | "
                   f"3:1 ±3% | {res['plain'][0]:.3f}:1 ({res['plain'][1]:.1%}) | {cells} | {ok} |")
        plot["a"] = {"plain": res["plain"], "arb": res[arbs[0]]}  # the default (drain)

    # (b) aggregate; arbiter runs: "arb" (run 1) or "arbq<quantum ms>". `exact` (kernels finished
    # inside the window, counted on the GPU) when the workload reports it; `kernels` counts whole
    # batches and loses each client's last, cut batch (up to 8 kernels a client).
    def agg(case, cfg, n, key="exact"):
        base = num(alone, key)
        ks = [num(r, key) for r in pick(case, cfg)]
        if not ks or any(k != k for k in ks) or not base:
            return agg(case, cfg, n, "kernels") if key == "exact" else None
        tot = sum(ks)
        if not tot:
            return None
        batches = sum(num(r, "kernels") for r in pick(case, cfg)) / r1 if r1 else float("nan")
        return (tot / base, min(ks) / tot * n, max(ks) / tot * n, batches)

    for n in (4, 8):
        case = f"b{n}"
        plain = agg(case, "plain", n)
        # arbq<ms>: handover drain; arbovq<ms>: overlap
        def bkey(c):
            if c.startswith("arb:"):  # arb:SPEC (scripts/gpu-arbiter.sh SLICER_B_RUNS)
                return (0 if c == "arb:default" else 1, 0, False, c)
            m = re.match(r"arb(ov)?q(\d+)(?:mq(\d+))?(spin)?$", c)
            return ((int(m.group(2)), int(m.group(3) or 0), bool(m.group(1)), m.group(4) or "")
                    if m else (0, 0, False, c))

        cfgs = sorted({r.get("cfg") for r in pick_case(case) if r.get("cfg", "").startswith("arb")},
                      key=bkey)
        arbs = [(cfg, agg(case, cfg, n)) for cfg in cfgs]
        arbs = [(cfg, v) for cfg, v in arbs if v]
        if not plain or not arbs:
            continue

        def blabel(cfg):
            if cfg.startswith("arb:"):
                spec = cfg[4:]
                return ("defaults: " if spec == "default"
                        else spec.replace("=", " ").replace(",", ", ") + ": ")
            m = re.match(r"arb(ov)?q(\d+)(?:mq(\d+))?(spin)?$", cfg)
            if not m:
                return ""
            mq = f", maxQueued {m.group(3)} ms" if m.group(3) else ""
            spin = ", spinning" if m.group(4) else ""
            return f"{'overlap' if m.group(1) else 'drain'} {m.group(2)} ms{mq}{spin}: "

        cells = "; ".join(f"{blabel(cfg)}{v[0]:.1%} [batches {v[3]:.1%}] ({v[1]:.2f}..{v[2]:.2f})"
                          for cfg, v in arbs)
        ok = ", ".join(f"{blabel(cfg)[:-2] or 'arbiter'} {'yes' if v[0] >= 0.99 else 'NO'}"
                       for cfg, v in arbs)
        out.append(f"| (b) {n} equal saturating: aggregate vs one alone (min..max share x{n}) | "
                   f"≥ 99% of one alone | {plain[0]:.1%} [batches {plain[3]:.1%}] "
                   f"({plain[1]:.2f}..{plain[2]:.2f}) | "
                   f"{cells} | {ok} |")
        best = max(arbs, key=lambda cv: cv[1][0])
        plot[case] = {"plain": plain, "arb": best[1]}

    # (c) bursty high + saturating low
    ha = one("c", "alone", "high")
    if ha:
        h_rate, burst_ms = num(ha, "rate"), num(ha, "burst_ms_p50")
        res = {}
        mqs = sorted({r["cfg"] for r in pick_case("c") if r.get("cfg", "").startswith("arbmq")},
                     key=lambda c: -float(c[5:]))
        for cfg in ["plain", "arb"] + mqs:
            h, lo = one("c", cfg, "high"), one("c", cfg, "low")
            if not h or not lo:
                continue
            secs = num(h, "seconds")
            high_busy = num(h, "bursts") * burst_ms / 1000  # GPU time high needed (alone sizes)
            idle = secs - high_busy
            low_share = num(lo, "kernels") / (r1 / num(alone, "seconds") * idle) if idle > 0 else 0
            res[cfg] = (num(h, "rate") / h_rate, low_share, num(h, "burst_ms_p99"))
        arbs = [k for k in ["arb"] + mqs if k in res]
        label = {k: f"maxQueued {k[5:]} ms: " for k in mqs}
        label["arb"] = ""
        cells = "; ".join(f"{label[k]}{res[k][0]:.1%}, {res[k][1]:.1%} ({res[k][2]:.2f} ms)"
                          for k in arbs)
        ok = ", ".join(f"{label[k] or 'arbiter: '}{'yes' if res[k][0] >= 0.95 and res[k][1] >= 0.90 else 'NO'}"
                       for k in arbs)
        out.append(f"| (c) bursty high beside saturating low: high's throughput vs alone, low's "
                   f"share of the time high leaves idle (high burst p99; alone {burst_ms:.2f} ms) | "
                   f"≥ 95%, ≥ 90% | {res['plain'][0]:.1%}, {res['plain'][1]:.1%} "
                   f"({res['plain'][2]:.2f} ms) | {cells} | {ok} |")
        plot["c"] = {"plain": res["plain"], "arb": res[arbs[-1]]}

    # (d) latency
    la = one("d", "alone", "lat")
    if la:
        mqs = sorted({r["cfg"] for r in pick_case("d") if r.get("cfg", "").startswith("arbmq")},
                     key=lambda c: -float(c[5:]))
        # Several rounds (SLICER_D_ROUNDS): medians of the rounds' p50 and p99, and their range.
        def lat(cfg):
            rs = pick("d", cfg, "lat")
            p50s, p99s = [num(r, "p50_ms") for r in rs], [num(r, "p99_ms") for r in rs]
            return (statistics.median(p50s), statistics.median(p99s), min(p99s), max(p99s),
                    len(rs))

        res = {cfg: lat(cfg) for cfg in ["alone", "plain", "arb"] + mqs if one("d", cfg, "lat")}
        arbs = [k for k in ["arb"] + mqs if k in res]
        label = {k: f"maxQueued {k[5:]} ms: " for k in mqs}
        label["arb"] = ""
        def cell(v):
            rng = f" (p99 {v[2]:.2f}..{v[3]:.2f} in {v[4]} rounds)" if v[4] > 1 else ""
            return f"{v[0]:.2f} / {v[1]:.2f} ms{rng}"

        cells = "; ".join(f"{label[k]}{cell(res[k])}" for k in arbs)
        ok = ", ".join(f"{label[k] or 'arbiter: '}{'yes' if res[k][1] <= res['plain'][1] else 'NO'}"
                       for k in arbs)
        out.append(f"| (d) latency-critical requests (4 small kernels) beside a saturating "
                   f"neighbour: p50 / p99, median of rounds (alone {res['alone'][0]:.2f} / "
                   f"{res['alone'][1]:.2f} ms) | p99 ≤ plain | {cell(res['plain'])} | {cells} | "
                   f"{ok} |")
        plot["d"] = {"alone": res["alone"][:2], "plain": res["plain"][:2], "arb": res[arbs[-1]][:2]}

    # (e) torch
    ia, ta = one("e", "alone", "infer"), one("e", "alone", "train")
    if ia and ta:
        res = {}
        for cfg in ("plain", "arb1", "arb3"):
            i, t = one("e", cfg, "infer"), one("e", cfg, "train")
            if i and t:
                res[cfg] = (num(i, "rate") / num(ia, "rate"), num(t, "rate") / num(ta, "rate"))
        # Other arbiter configs (SLICER_E_RUNS): arb<W>:SPEC, one row each.
        for spec in sorted({r["cfg"].split(":", 1)[1] for r in pick_case("e")
                            if r.get("cfg", "").startswith("arb") and ":" in r["cfg"]}):
            cells = []
            for w in ("1", "3"):
                i, t = one("e", f"arb{w}:{spec}", "infer"), one("e", f"arb{w}:{spec}", "train")
                if i and t:
                    fi, ft = num(i, "rate") / num(ia, "rate"), num(t, "rate") / num(ta, "rate")
                    cells.append(f"{w}:1 infer {fi:.1%}, train {ft:.1%} (sum {fi + ft:.1%})")
            out.append(f"| (e) as above, arbiter with {spec.replace('=', ' ')} | by weight | - | "
                       f"{'; '.join(cells)} | see text |")
        cells = {k: f"infer {v[0]:.1%}, train {v[1]:.1%} (sum {v[0] + v[1]:.1%})"
                 for k, v in res.items()}
        out.append(f"| (e) PyTorch inference + training, throughput of each vs alone "
                   f"(alone: infer {num(ia, 'rate'):.1f}/s, train {num(ta, 'rate'):.1f}/s) | "
                   f"by weight | {cells.get('plain', '-')} | 1:1 {cells.get('arb1', '-')}; "
                   f"3:1 {cells.get('arb3', '-')} | see text |")
        plot["e"] = res

    # overhead
    ov = collections.defaultdict(list)
    by_round = collections.defaultdict(dict)
    for r in pick("overhead", "base") + pick("overhead", "shim") + pick("overhead", "gated"):
        ov[r["cfg"]].append(num(r, "median_us"))
        by_round[r.get("round")][r["cfg"]] = num(r, "median_us")
    if ov.get("base") and ov.get("gated"):
        med = {k: statistics.median(v) for k, v in ov.items()}
        best = {k: min(v) for k, v in ov.items()}
        ratio = med["gated"] / med["base"]
        per_round = [v["gated"] / v["base"] for v in by_round.values() if "gated" in v and "base" in v]
        spread = [v["base"] for v in by_round.values() if "base" in v]
        out.append(f"| overhead, launch-bound loop, µs per launch: median of {len(per_round)} rounds "
                   f"(best); base varied {min(spread):.2f}..{max(spread):.2f} between rounds | < 1% | "
                   f"no shim {med['base']:.3f} ({best['base']:.3f}) | shim, no arbiter "
                   f"{med.get('shim', 0):.3f} ({best.get('shim', 0):.3f}, "
                   f"{med.get('shim', 0) / med['base'] - 1:+.1%}); lone gated client "
                   f"{med['gated']:.3f} ({best['gated']:.3f}, {ratio - 1:+.1%}; median of per-round "
                   f"ratios {statistics.median(per_round) - 1:+.1%}) | "
                   f"not decided here: each process runs in a fast or a slow mode (the in-process "
                   f"row decides) |")
        plot["overhead"] = med
        # What the hook adds, counted on the fake driver (bench/shim/hook_cost.sh), over a real
        # launch's time in this run (its best round: the smallest divisor), the overhead without the
        # real driver's round-to-round noise.
        hc = pick("hookcost", "summary")
        if hc:
            h = hc[-1]
            real_ns = best["base"] * 1000
            base_runs = pick("hookcost", "base")
            n = base_runs[0].get("n", "?") if base_runs else "?"
            out.append(f"| overhead counted on the CPU: ns the hook adds per launch (fake driver, median of "
                       f"{h['rounds']} rounds of {n} launches; fake launch {num(h, 'base_ns'):.0f} ns), "
                       f"over this run's fastest real launch ({real_ns:.0f} ns) | < 1% | - | shim, no arbiter "
                       f"+{num(h, 'shim_added_ns'):.1f} ns ({num(h, 'shim_added_ns') / real_ns:.2%}); "
                       f"lone gated client +{num(h, 'gated_added_ns'):.1f} ns "
                       f"({num(h, 'gated_added_ns') / real_ns:.2%}) | "
                       f"{'yes' if num(h, 'gated_added_ns') / real_ns < 0.01 else 'NO'} |")

    # The same cost inside one process (bench/shim/launch_ab.cc): driver and shim alternate.
    ab = {cfg: [num(r, "added") for r in pick("launchab", cfg) if r.get("added")]
          for cfg in ("shim", "gated", "gated-prev")}
    if ab["gated"]:
        cells = []
        for cfg, label in (("shim", "shim, no arbiter"), ("gated", "lone gated client"),
                           ("gated-prev", "the same with SLICER_AB_PREV_SHIM")):
            v = ab[cfg]
            if v:
                cells.append(f"{label} {statistics.median(v):+.2%} ({min(v):+.2%}..{max(v):+.2%})")
        drv = [num(r, "driver_ns") for r in pick("launchab", "gated")]
        g = statistics.median(ab["gated"])
        out.append(f"| overhead in one process: driver and shim launches alternate (median of paired "
                   f"batches; median and range over {len(ab['gated'])} processes; driver "
                   f"{min(drv) / 1000:.2f}..{max(drv) / 1000:.2f} µs a launch) | < 1% | - | "
                   f"{'; '.join(cells)} | {'yes' if g < 0.01 else 'NO'} |")

    out += torch_tables(pick, pick_case)

    open(sys.argv[2], "w").write("\n".join(out) + "\n")
    print("\n".join(out))
    if len(sys.argv) > 3:
        draw(plot, sys.argv[3])


def ms(x):
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def yes(ok):
    return "yes" if ok else "NO"


def procs(rs):
    """infer_loop.py processes of one run: aggregate rate, p50/p99 over the processes, failures.
    None when none of them reported a rate."""
    ok = [r for r in rs if "error" not in r and num(r, "rate") == num(r, "rate")]
    if not ok:
        return None
    p50s, p99s = [num(r, "p50_ms") for r in ok], [num(r, "p99_ms") for r in ok]
    late = [num(r, "late_ms") for r in ok if r.get("late_ms")]
    return {
        "rate": sum(num(r, "rate") for r in ok), "n": len(ok), "failed": len(rs) - len(ok),
        "p50": statistics.median(p50s), "p99max": max(p99s), "p99med": statistics.median(p99s),
        "late": max(late) if late else float("nan"),
    }


def failure(rs):
    """The first failed process's error (infer_loop.py's error=...), shortened."""
    for r in rs:
        if "error" in r or not r.get("rate"):
            return r.get("error", "no result line")[:80].replace("|", "/")
    return ""


def warn(v):
    """What makes a run's figures doubtful: failed processes, or a start more than 100 ms late
    (the start barrier missed; its window is shorter than the others')."""
    w = []
    if v["failed"]:
        w.append(f"{v['failed']} failed")
    if v["late"] > 100:
        w.append(f"started {v['late']:.0f} ms late")
    return f" ({', '.join(w)})" if w else ""


def torch_tables(pick, pick_case):
    """(f) and (g): rows for the main table, then a table per part. Empty without their lines."""
    rows, extra = [], []

    # (f) SLICER_F_PROCS processes of one model; cfgs alone (1 process), plain, arb (fair, the
    # default gating), arblease (gating: always).
    def model_of(r):
        return r.get("model") or r.get("client", "").rsplit("-", 1)[0]

    fs = pick_case("f")
    models = list(dict.fromkeys(model_of(r) for r in fs))
    detail = []
    for m in models:
        res = {}
        for cfg in ("alone", "plain", "shim", "arb", "arblease"):
            rs = [r for r in pick("f", cfg) if model_of(r) == m]
            v = procs(rs)
            if v:
                res[cfg] = v
            elif rs:
                detail.append(f"| {m} | {cfg} (all {len(rs)} failed: {failure(rs)}) | 0 |"
                              + " - |" * 7)
        pl = res.get("plain")
        for cfg, v in res.items():
            vs_plain = (f"x{v['rate'] / pl['rate']:.3f}" if pl else "-")
            p99_vs = (f"x{v['p99max'] / pl['p99max']:.3f}" if pl else "-")
            vs_alone = (f"x{v['rate'] / res['alone']['rate']:.3f}" if "alone" in res else "-")
            detail.append(f"| {m} | {cfg}{warn(v)} | {v['n']} | {v['rate']:.1f} | {vs_plain} | "
                          f"{vs_alone} | {ms(v['p50'])} | {ms(v['p99max'])} | {ms(v['p99med'])} | "
                          f"{p99_vs} |")
        if not pl:
            continue

        def cell(v):
            return (f"{v['rate']:.1f} req/s (x{v['rate'] / pl['rate']:.3f}), p99 {ms(v['p99max'])} / "
                    f"{ms(v['p99med'])} ms (x{v['p99max'] / pl['p99max']:.3f}){warn(v)}")

        al = res.get("alone")
        alone = (f"; alone {al['rate']:.1f} req/s, p99 {ms(al['p99max'])} ms" if al else "")
        cells = [f"fair: {cell(res['arb'])}"] if "arb" in res else []
        if "shim" in res:
            cells.append(f"shim without arbiter (reference): {cell(res['shim'])}")
        if "arblease" in res:
            cells.append(f"gating always (reference): {cell(res['arblease'])}")
        ok = "-"
        if "arb" in res:
            a = res["arb"]
            ok_rate, ok_p99 = a["rate"] >= 0.97 * pl["rate"], a["p99max"] <= 1.1 * pl["p99max"]
            ok = (f"{yes(ok_rate and ok_p99 and not a['failed'])} (rate {yes(ok_rate)}, "
                  f"p99 {yes(ok_p99)})")
        rows.append(f"| (f) {m}, {pl['n']} processes: aggregate req/s, p99 max / median of the "
                    f"processes (x plain){alone} | rate ≥ 0.97 x plain ({0.97 * pl['rate']:.1f}), "
                    f"p99 ≤ 1.1 x plain ({ms(1.1 * pl['p99max'])} ms) | "
                    f"{pl['rate']:.1f} req/s, p99 {ms(pl['p99max'])} / {ms(pl['p99med'])} ms"
                    f"{warn(pl)} | {'; '.join(cells) or '-'} | {ok} |")
    if detail:
        extra += ["", "(f) per model and configuration (x: ratio to plain time-slicing; p99 max: "
                  "the worst process's)", "",
                  "| model | cfg | processes | req/s (sum) | vs plain | vs alone | p50 median ms | "
                  "p99 max ms | p99 median ms | p99 max vs plain |",
                  "|---|---|---|---|---|---|---|---|---|---|"] + detail

    # (g) resnet50 inference (client infer) beside the trainer; cfgs alone (each by itself),
    # plain, arb (fair, equal weights), arbhigh (priority: infer high, trainer low), arblease.
    gi = {}
    gt = {}
    for cfg in ("alone", "plain", "arb", "arbhigh", "arblease"):
        i = procs(pick("g", cfg, "infer"))
        t = [r for r in pick("g", cfg, "trainer") if "error" not in r and r.get("rate")]
        if i:
            gi[cfg] = i
        if t:
            gt[cfg] = num(t[0], "rate")
        elif pick("g", cfg, "trainer"):
            gt[cfg] = float("nan")  # failed
    detail = []
    ia, ta = gi.get("alone"), gt.get("alone")
    ip, tp = gi.get("plain"), gt.get("plain")
    for cfg in ("alone", "plain", "arb", "arbhigh", "arblease"):
        i, t = gi.get(cfg), gt.get(cfg)
        bad = [r for r in pick("g", cfg) if "error" in r or not r.get("rate")]
        note = (f" ({', '.join(r.get('client', '?') for r in bad)} failed: {failure(bad)})"
                if bad else "")
        if not i and t is None:
            if bad:
                detail.append(f"| {cfg}{note} |" + " - |" * 9)
            continue

        def ratio(a, b):
            return f"x{a / b:.3f}" if a is not None and b else "-"

        ic = (f"{i['rate']:.1f} | {ratio(i['rate'], ip and ip['rate'])} | "
              f"{ratio(i['rate'], ia and ia['rate'])} | {ms(i['p50'])} | {ms(i['p99max'])} | "
              f"{ratio(i['p99max'], ip and ip['p99max'])}" if i else "- | - | - | - | - | -")
        tc = (f"{t:.2f} | {ratio(t, tp)} | {ratio(t, ta)}" if t is not None else "- | - | -")
        tc = "- | - | -" if t != t else tc  # failed
        detail.append(f"| {cfg}{warn(i) if i else ''}{note} | {ic} | {tc} |")
    if detail:
        extra += ["", "(g) resnet50 inference (batch 8) beside a saturating bf16 trainer "
                  "(alone: each by itself)", "",
                  "| cfg | inference req/s | vs plain | vs alone | p50 ms | p99 ms | p99 vs plain | "
                  "trainer it/s | vs plain | vs alone |",
                  "|---|---|---|---|---|---|---|---|---|---|"] + detail
    if ip and tp:
        def gcell(cfg):
            i, t = gi[cfg], gt.get(cfg, float("nan"))
            tc = f"{t:.2f} it/s (x{t / tp:.3f})" if t == t else "failed or missing"
            return (f"inference {i['rate']:.1f} req/s (x{i['rate'] / ip['rate']:.3f}), p99 "
                    f"{ms(i['p99max'])} ms (x{i['p99max'] / ip['p99max']:.3f}); trainer {tc}"
                    f"{warn(i)}")

        plain = (f"inference {ip['rate']:.1f} req/s, p99 {ms(ip['p99max'])} ms; trainer "
                 f"{tp:.2f} it/s{warn(ip)}")
        alone = (f" (alone: inference {ia['rate']:.1f} req/s, p99 {ms(ia['p99max'])} ms; trainer "
                 f"{ta:.2f} it/s)" if ia and ta else "")
        if "arb" in gi:
            i, t = gi["arb"], gt.get("arb", float("nan"))
            oks = (i["rate"] >= ip["rate"], i["p99max"] <= ip["p99max"], t >= 0.95 * tp)
            cells = gcell("arb")
            if "arblease" in gi:
                cells += f"; gating always (reference): {gcell('arblease')}"
            rows.append(f"| (g) resnet50 inference beside a bf16 trainer, arbiter fair, equal weights"
                        f"{alone} | inference rate ≥ plain ({ip['rate']:.1f}), p99 ≤ plain "
                        f"({ms(ip['p99max'])} ms), trainer ≥ 0.95 x plain ({0.95 * tp:.2f} it/s) | "
                        f"{plain} | {cells} | {yes(all(oks) and not i['failed'])} (rate "
                        f"{yes(oks[0])}, p99 {yes(oks[1])}, trainer {yes(oks[2])}) |")
        if "arbhigh" in gi and ia:
            i = gi["arbhigh"]
            target = 1.5 * ia["p99max"] + 2
            rows.append(f"| (g) as above, arbiter priority: inference high, trainer low; inference p99 "
                        f"(alone {ms(ia['p99max'])} ms) | p99 ≤ 1.5 x alone + 2 ms ({ms(target)} ms) | "
                        f"{plain} | {gcell('arbhigh')} | "
                        f"{yes(i['p99max'] <= target and not i['failed'])} |")
    return rows + extra


def draw(plot, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no matplotlib: no plot")
        return
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    colors = {"plain": "#999999", "arb": "#1f77b4"}

    def bars(ax, labels, plain, arb, title, target=None, fmt="{:.2f}"):
        x = range(len(labels))
        ax.bar([i - 0.2 for i in x], plain, 0.4, label="plain time-slicing", color=colors["plain"])
        ax.bar([i + 0.2 for i in x], arb, 0.4, label="gpu-slicer arbiter", color=colors["arb"])
        for i, (p, a) in enumerate(zip(plain, arb)):
            ax.text(i - 0.2, p, fmt.format(p), ha="center", va="bottom", fontsize=8)
            ax.text(i + 0.2, a, fmt.format(a), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(list(x))
        ax.set_xticklabels(labels)
        ax.set_title(title, fontsize=10)
        if target is not None:
            ax.axhline(target, color="red", linestyle="--", linewidth=1, label="target")
        ax.legend(fontsize=7)

    if "a" in plot:
        bars(axes[0][0], ["A:B ratio"], [plot["a"]["plain"][0]], [plot["a"]["arb"][0]],
             "(a) weights 3:1: GPU-time ratio", target=3)
    labels = [k for k in ("b4", "b8") if k in plot]
    if labels:
        bars(axes[0][1], [f"{k[1:]} clients" for k in labels],
             [plot[k]["plain"][0] * 100 for k in labels], [plot[k]["arb"][0] * 100 for k in labels],
             "(b) aggregate throughput, % of one alone", target=99, fmt="{:.1f}")
        lo = min([plot[k]["plain"][0] * 100 for k in labels] + [plot[k]["arb"][0] * 100 for k in labels])
        axes[0][1].set_ylim(min(80, lo - 5), 103)
    if "c" in plot:
        bars(axes[0][2], ["high vs alone", "low: share of idle"],
             [v * 100 for v in plot["c"]["plain"][:2]], [v * 100 for v in plot["c"]["arb"][:2]],
             "(c) bursty high + saturating low, %", fmt="{:.1f}")
    if "d" in plot:
        d = plot["d"]
        bars(axes[1][0], ["p50", "p99"], list(d["plain"]), list(d["arb"]),
             f"(d) request latency, ms (alone p99 {d['alone'][1]:.2f})")
    if "e" in plot:
        e = plot["e"]
        ax = axes[1][1]
        cfgs = [k for k in ("plain", "arb1", "arb3") if k in e]
        x = range(len(cfgs))
        ax.bar([i - 0.2 for i in x], [e[k][0] * 100 for k in cfgs], 0.4, label="inference")
        ax.bar([i + 0.2 for i in x], [e[k][1] * 100 for k in cfgs], 0.4, label="training")
        ax.set_xticks(list(x))
        ax.set_xticklabels({"plain": "plain", "arb1": "arbiter 1:1", "arb3": "arbiter 3:1"}[k]
                           for k in cfgs)
        ax.set_title("(e) PyTorch: throughput vs alone, %", fontsize=10)
        ax.legend(fontsize=7)
    if "overhead" in plot:
        o = plot["overhead"]
        ax = axes[1][2]
        ks = [k for k in ("base", "shim", "gated") if k in o]
        ax.bar(ks, [o[k] for k in ks], color=["#999999", "#aec7e8", "#1f77b4"][: len(ks)])
        for i, k in enumerate(ks):
            ax.text(i, o[k], f"{o[k]:.3f}", ha="center", va="bottom", fontsize=8)
        ax.set_title("launch-bound loop, µs per launch", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
