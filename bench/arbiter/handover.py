"""Where the GPU's time goes when clients take turns: scripts/gpu-arbiter.sh's traces.

    python3 bench/arbiter/handover.py START_NS SECONDS TAG DIR

DIR holds, per client NAME of one run, NAME.gpu (workload.cu's WORKLOAD_TRACE: `k start end`
per kernel, CLOCK_MONOTONIC ns) and, under the arbiter, NAME.lease (the client's SLICER_ARB_TRACE:
`t event dev`). Prints one `handover: tag=TAG key=value...` line:

- busy: the share of the window [START, START+SECONDS] that some client's kernel ran;
- switches: kernels followed by another client's; gap_*: the idle time between the two
  (p50/p90/mean in us; total in ms); same_gap_ms: idle time between one client's own kernels;
- first_kernel_us / other_kernel_us: mean duration of a client's first kernel after a switch and
  of the others (a context switch that slows the first kernel shows here);
- under the arbiter, the median of each step of a switch from A to B (us): A's last kernel end ->
  A drained (cuCtxSynchronize returned) -> A's RELEASE sent -> B's GRANT received -> B's launch
  let through (go) -> B's first kernel start.
"""
import bisect
import os
import statistics
import sys


def read_gpu(path):
    out = []
    for line in open(path):
        k, s, e = line.split()
        s, e = int(s), int(e)
        if int(k) > 0 and e > s:  # kernel 0 is the warm-up
            out.append((s, e))
    return out


def read_lease(path):
    ev = {}
    for line in open(path):
        t, name, _dev = line.split()
        ev.setdefault(name, []).append(int(t))
    for v in ev.values():
        v.sort()
    return ev


def first_after(times, t, limit_ns=200_000_000):
    if not times:
        return None
    i = bisect.bisect_left(times, t)
    if i < len(times) and times[i] - t <= limit_ns:
        return times[i]
    return None


def pct(v, p):
    if not v:
        return float("nan")
    v = sorted(v)
    return v[min(len(v) - 1, int(p * (len(v) - 1) + 0.5))]


def main():
    start, seconds, tag, d = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
    end = start + int(seconds * 1e9)
    kernels, leases = [], {}
    for f in sorted(os.listdir(d)):
        name, ext = os.path.splitext(f)
        if ext == ".gpu":
            kernels += [(s, e, name) for s, e in read_gpu(os.path.join(d, f))]
        elif ext == ".lease":
            leases[name] = read_lease(os.path.join(d, f))
    kernels = [k for k in kernels if k[1] > start and k[0] < end]
    kernels.sort()
    if not kernels:
        print(f"handover: tag={tag} kernels=0")
        return
    busy = 0
    cover_end = start
    for s, e, _ in kernels:
        s, e = max(s, cover_end), min(e, end)
        if e > s:
            busy += e - s
            cover_end = e
    gaps, same_gap, first_dur, other_dur = [], 0, [], []
    steps = {k: [] for k in ("drain", "release", "grant", "go", "start")}
    _, last_e, last_c = kernels[0]
    for s, e, c in kernels[1:]:
        gap = max(0, s - last_e)
        if c != last_c:
            gaps.append(gap)
            first_dur.append(e - s)
            a, b = leases.get(last_c), leases.get(c)
            if a and b:
                drained = first_after(a.get("drained", []), last_e - 50_000)
                release = drained and first_after(a.get("release", []), drained)
                grant = release and first_after(b.get("grant", []), release)
                go = grant and first_after(b.get("go", []), grant)
                if go and s >= go:
                    steps["drain"].append(drained - last_e)
                    steps["release"].append(release - drained)
                    steps["grant"].append(grant - release)
                    steps["go"].append(go - grant)
                    steps["start"].append(s - go)
        else:
            same_gap += gap
            other_dur.append(e - s)
        if e >= last_e:
            last_e, last_c = e, c
    us = lambda ns: ns / 1e3
    fields = [
        f"tag={tag}",
        f"clients={len({k[2] for k in kernels})}",
        f"kernels={len(kernels)}",
        f"busy={busy / (end - start):.4f}",
        f"switches={len(gaps)}",
        f"gap_p50_us={us(pct(gaps, 0.5)):.1f}",
        f"gap_p90_us={us(pct(gaps, 0.9)):.1f}",
        f"gap_mean_us={us(statistics.mean(gaps)) if gaps else float('nan'):.1f}",
        f"gap_total_ms={sum(gaps) / 1e6:.1f}",
        f"same_gap_ms={same_gap / 1e6:.1f}",
        f"first_kernel_us={us(statistics.mean(first_dur)) if first_dur else float('nan'):.1f}",
        f"other_kernel_us={us(statistics.mean(other_dur)) if other_dur else float('nan'):.1f}",
    ]
    if steps["go"]:
        fields.append(f"traced={len(steps['go'])}")
        fields += [f"{k}_us={us(statistics.median(v)):.1f}" for k, v in steps.items()]
    print("handover: " + " ".join(fields))


if __name__ == "__main__":
    main()
