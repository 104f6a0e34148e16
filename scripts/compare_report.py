"""Issue 4's results table and loss curves from the runs `scripts/compare` trained.

Reads OUT/<variant>/eval.json (from `mxq eval --json`) and OUT/<variant>/{stage1,prior}/steps.jsonl
and writes OUT/results.json, OUT/results.md and OUT/{stage1,prior}_loss.png (matplotlib:
plotting is the one thing here no Rust crate in the workspace does).
"""

import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NAMES = {
    "mxq": "MXQ (shared codebook, joint encoder, masking)",
    "no-masking": "MXQ without input masking",
    "no-joint": "MXQ without the joint encoder",
    "separate": "separate quantizers (image VQ-VAE + text VQ-VAE)",
}


def steps(path):
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r["step"] for r in rows], [r["metrics"]["loss"] for r in rows]


def se(pct, n):
    """Binomial standard error of a percentage over n pairs, in points."""
    p = pct / 100
    return 100 * (p * (1 - p) / max(n, 1)) ** 0.5


def write_atomic(path, text, mode="w"):
    with open(path + ".tmp", mode) as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def main():
    out, steps1, steps2, train, count, log, variants = sys.argv[1], *map(int, sys.argv[2:7]), sys.argv[7:]
    rows = []
    for v in variants:
        with open(os.path.join(out, v, "eval.json")) as f:
            e = json.load(f)
        g, r = e["generated"], e["stage1_reconstruction"]
        rows.append(
            {
                "variant": v,
                "name": NAMES.get(v, v),
                "consistency_pct": g["consistency_pct"],
                "validity_pct": g["validity_pct"],
                "unit_accuracy_pct": g["unit_accuracy_pct"],
                "layout_colour_consistency_pct": g["layout_colour_consistency_pct"],
                "fidelity_pct": g["fidelity_pct"],
                "frechet_distance": g["frechet_distance"],
                "distinct_captions_per_pair": g["distinct_captions_per_pair"],
                "recon_psnr_db": r["psnr_db"],
                "recon_token_accuracy_pct": r["token_accuracy_pct"],
                "codebook_perplexity": r["perplexity"],
                "live_codes": r["live_codes"],
                "real_test": e["real_test"],
            }
        )
    budget = {"stage1_steps": steps1, "prior_steps": steps2, "batch": 32, "train_pairs": train, "judged_pairs": count}
    write_atomic(os.path.join(out, "results.json"), json.dumps({"budget": budget, "rows": rows}, indent=2) + "\n")

    real = rows[0]["real_test"]
    lines = [
        f"Same data ({train:,} Caption MNIST train pairs), same budget ({steps1} stage-1 steps, "
        f"{steps2} prior steps, batch 32, seed 0), {count:,} pairs generated per row (temperature 1, "
        f"no top-k/top-p) and judged against {count:,} real test pairs; reconstruction on the same test pairs. "
        "± is one binomial standard error over the pairs judged.",
        "",
        "| model | consistency % | validity % | unit acc. % | layout+colour % | fidelity % | Fréchet ↓ "
        "| distinct | recon. PSNR dB | token acc. % | codebook perplexity (live) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for x in rows:
        lines.append(
            f"| {x['name']} | **{x['consistency_pct']:.1f}** ± {se(x['consistency_pct'], count):.1f} "
            f"| {x['validity_pct']:.1f} | {x['unit_accuracy_pct']:.1f} "
            f"| {x['layout_colour_consistency_pct']:.1f} ± {se(x['layout_colour_consistency_pct'], count):.1f} | {x['fidelity_pct']:.1f} | {x['frechet_distance']:.2f} "
            f"| {x['distinct_captions_per_pair']:.2f} | {x['recon_psnr_db']:.2f} | {x['recon_token_accuracy_pct']:.1f} "
            f"| {x['codebook_perplexity']:.0f} ({x['live_codes']}) |"
        )
    lines.append(
        f"| real test pairs (ceiling) | {real['consistency_pct']:.1f} | {real['validity_pct']:.1f} "
        f"| {real['unit_accuracy_pct']:.1f} | {real['layout_colour_consistency_pct']:.1f} | {real['fidelity_pct']:.1f} "
        f"| {real['frechet_distance']:.2f} | {real['distinct_captions_per_pair']:.2f} | | | |"
    )
    write_atomic(os.path.join(out, "results.md"), "\n".join(lines) + "\n")

    for stage, title in [("stage1", "stage 1: total loss"), ("prior", "prior: next-code cross-entropy")]:
        fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
        for v in variants:
            x, y = steps(os.path.join(out, v, stage, "steps.jsonl"))
            ax.plot(x, y, label=NAMES.get(v, v))
        ax.set_xlabel("step (batch 32)")
        ax.set_ylabel(f"loss (mean over {log} steps)")
        ax.set_title(title)
        if stage == "stage1":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = os.path.join(out, f"{stage}_loss.png")
        fig.savefig(path + ".tmp.png")
        os.replace(path + ".tmp.png", path)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
