# ruff: noqa  (research script, kept as it was measured)
"""Markdown tables from the lab.py JSON lines: config -> sparsity, accuracy, nnz per layer, firing rates, dead layers."""
import json, sys, statistics as st
SHORT = ["stem", "sew1.a", "sew1.b", "c32", "sew2.a", "sew2.b", "fc"]

def rows(files):
    for f in files:
        for line in open(f):
            yield json.loads(line)

def table(files):
    print("| run | sparsity % | nnz | test acc % | train acc % | nnz per layer (stem, sew1.a, sew1.b, c32, sew2.a, sew2.b, fc) | firing rate per neuron layer | dead layers | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows(files):
        nn_ = " ".join(str(round((1 - v) * r["layer_numel"][k])) for k, v in r["layer_sparsity"].items())
        rates = " ".join(f"{v:.2f}" for v in r["rates"].values())
        print(f"| {r['tag']} | {100*r['sparsity']:.2f} | {r['nnz']} | {100*r['test_acc']:.1f} | {100*r['train_acc']:.1f} | {nn_} | {rates} | {len(r['dead_layers'])} | {r['seconds']:.0f} |")

def seeds(files):
    groups = {}
    for r in rows(files):
        key = r["tag"].rsplit("_s", 1)[0]
        groups.setdefault(key, []).append(r)
    print("| config (seeds 0-2) | sparsity % | test acc % mean ± sd | per seed | fc nnz | stem nnz |")
    print("|---|---|---|---|---|---|")
    for k, rs in groups.items():
        accs = [100 * r["test_acc"] for r in rs]
        sd = st.stdev(accs) if len(accs) > 1 else 0.0
        fc = [round((1 - r["layer_sparsity"]["body.fc"]) * r["layer_numel"]["body.fc"]) for r in rs]
        stem = [round((1 - r["layer_sparsity"]["body.features.0.conv"]) * 144) for r in rs]
        print(f"| {k} | {100*st.mean(r['sparsity'] for r in rs):.2f} | {st.mean(accs):.1f} ± {sd:.1f} | {', '.join(f'{a:.1f}' for a in accs)} | {fc} | {stem} |")

if __name__ == "__main__":
    if sys.argv[1] == "--seeds":
        seeds(sys.argv[2:])
    else:
        table(sys.argv[1:])
