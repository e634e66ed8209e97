"""python -m demo: train fc_net, conv_net and gpt with the reference backward; write
reports/demo.json and docs/demo/*.png."""
from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np

from . import runs

RUNS = {"fc_net": runs.fc_net, "conv_net": runs.conv_net, "gpt": runs.gpt}


def _plot(name, log, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if log.accuracies else 1
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.4), squeeze=False)
    losses = np.array(log.losses)
    window = max(1, len(losses) // 50)
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    axes[0, 0].plot(log.steps, losses, color="0.8", lw=0.8, label="batch")
    axes[0, 0].plot(log.steps[window - 1:], smooth, color="C0", label=f"mean of {window}")
    axes[0, 0].set(xlabel="step", ylabel="training loss (nats)", title=f"{name}: loss", yscale="log")
    axes[0, 0].legend()
    if log.accuracies:
        axes[0, 1].plot(log.epochs, log.accuracies, marker="o", ms=3, color="C1")
        axes[0, 1].set(xlabel="epoch", ylabel="held-out accuracy", title=f"{name}: test accuracy",
                       ylim=(max(0.0, min(log.accuracies) - 0.02), 1.0))
        axes[0, 1].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument("--only", action="append", choices=sorted(RUNS), help="run only this model (repeatable)")
    parser.add_argument("--check-every", type=int, default=None,
                        help="check the whole gradient against JAX every K steps (0: never; default per model)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default="reports/demo.json")
    parser.add_argument("--plots", default="docs/demo")
    args = parser.parse_args(argv)

    pathlib.Path(args.plots).mkdir(parents=True, exist_ok=True)
    report = {}
    for name in args.only or list(RUNS):
        options = {"seed": args.seed}
        if args.check_every is not None:
            options["check_every"] = args.check_every
        log, figures = RUNS[name](**options)
        figures["seconds"] = round(log.seconds, 1)
        figures["gradient_checks"] = len(log.checks)
        figures["worst_gradient_units"] = max(log.checks) if log.checks else None
        figures["worst_relative_error"] = max(log.relative) if log.relative else None
        report[name] = figures
        _plot(name, log, pathlib.Path(args.plots) / f"{name}.png")
    pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(pathlib.Path(args.json).read_text()) if args.only and pathlib.Path(args.json).exists() else {}
    pathlib.Path(args.json).write_text(json.dumps({**previous, **report}, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    goals = [report[k]["test_accuracy"] >= goal for k, goal in (("fc_net", 0.97), ("conv_net", 0.98)) if k in report]
    if "gpt" in report:
        goals += [report["gpt"]["final_loss"] < 0.5, report["gpt"]["regenerated"]]
    goals += [f["worst_gradient_units"] < 1 for f in report.values() if f["worst_gradient_units"] is not None]
    return 0 if all(goals) else 1


if __name__ == "__main__":
    raise SystemExit(main())
