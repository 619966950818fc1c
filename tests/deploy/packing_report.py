"""Writes the Karpenter packing table (Markdown) and plot (PNG) from the test's CSV.

usage: packing_report.py CSV OUT_PREFIX DATE MACHINE COMMAND
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")  # headless: CI and dev boxes have no display
import matplotlib.pyplot as plt  # noqa: E402


def main():
    src, prefix, date, machine, command = sys.argv[1:6]
    rows = list(csv.DictReader(open(src)))
    n = [int(r["n"]) for r in rows]
    cost = {k: [float(r[f"{k}_cost"]) for r in rows] for k in ("without", "with")}
    nodes = {k: [int(r[f"{k}_nodes"]) for r in rows] for k in ("without", "with")}
    wide = rows[0]["wide_cost"] != ""
    if wide:
        cost["wide"] = [float(r["wide_cost"]) for r in rows]

    fig, (ax_nodes, ax_cost) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax_nodes.step(n, nodes["without"], where="mid", label="no NodeOverlay")
    ax_nodes.step(n, nodes["with"], where="mid", label="NodeOverlay (4 shares/GPU)")
    ax_nodes.set(xlabel="pending pods (1 share each)", ylabel="nodes planned",
                 title="Nodes Karpenter plans")
    ax_cost.plot(n, cost["without"], marker=".", label="no NodeOverlay")
    ax_cost.plot(n, cost["with"], marker=".", label="NodeOverlay, 1-GPU sizes (chart default)")
    if wide:
        ax_cost.plot(n, cost["wide"], marker=".", linestyle="--",
                     label="NodeOverlay, pool allowing 1/4/8-GPU sizes")
    ax_cost.set(xlabel="pending pods (1 share each)", ylabel="$/hour (us-east-1 on-demand)",
                title="Hourly cost of the plan")
    for ax in (ax_nodes, ax_cost):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Karpenter 1.14.1 scheduler, g4dn instance types ({date})", fontsize=10)
    fig.tight_layout()
    fig.savefig(prefix + ".png", dpi=110)

    out = [
        f"# Karpenter packing of gpu-slicer shares ({date})",
        "",
        f"- Command: `{command}` (runs `tests/deploy/run.sh` with `PACKING_RESULTS_CSV`; the",
        "  numbers come from `go test ./karpenter` in tests/deploy)",
        f"- Machine: {machine} (the result does not depend on it: it is a scheduling plan)",
        "- Karpenter: sigs.k8s.io/karpenter v1.14.1. Its NodeOverlay controller, overlay",
        "  cloud-provider decorator, Provisioner and scheduler decide; the API is controller-runtime's",
        "  in-memory client and the cloud provider is Karpenter's fake one serving g4dn types",
        "  (us-east-1 on-demand Linux prices: xlarge $0.526, 2xlarge $0.752, 4xlarge $1.204,",
        "  8xlarge $2.176, 12xlarge $3.912 (4 GPUs), 16xlarge $4.352, metal $7.824 (8 GPUs); published\n  rates as known to the author, not re-checked against a live price list from this machine).",
        "- Pods: N pending pods, each `nvidia.com/gpu: 1`, 500m CPU, 1Gi, tolerating the GPU taint;",
        "  the chart's DaemonSet requests are reserved on each node.",
        "- Manifests: deploy/karpenter (NodePool `gpu-sliced`, NodeOverlay 1 GPU -> 4 shares).",
        "  The last column renders the same chart with `karpenter.nodePool.gpuCounts={1,4,8}`.",
        "- Cost of a plan: each planned node at its cheapest compatible offering.",
        "",
        "| N | nodes, no overlay | $/h | nodes, overlay | $/h | pool with 1/4/8-GPU sizes | $/h |",
        "|---:|---|---:|---|---:|---|---:|",
    ]
    for r in rows:
        out.append("| {n} | {without_types} | {without_cost} | {with_types} | {with_cost} | {w} | {wc} |".format(
            w=r["wide_types"] or "-", wc=r["wide_cost"] or "-", **r))
    saving = 100 * (1 - cost["with"][-1] / cost["without"][-1])
    out += [
        "",
        f"At N = {n[-1]}: {nodes['without'][-1]} nodes (${cost['without'][-1]:.3f}/h) without the overlay, "
        f"{nodes['with'][-1]} with it (${cost['with'][-1]:.3f}/h), {saving:.0f}% less.",
        "",
        "The last column is why the chart's pool allows single-GPU sizes only: Karpenter fills one",
        "node as far as it can before comparing prices, so from 5 pending shares it picks a",
        "4-GPU g4dn.12xlarge ($3.912/h) over two g4dn.xlarge ($1.052/h).",
        "",
        f"![plot](karpenter-packing-{date}.png)",
        "",
    ]
    open(prefix + ".md", "w").write("\n".join(out))


if __name__ == "__main__":
    main()
