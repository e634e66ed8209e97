"""``python -m benchmarks`` (``make bench``): the sections, their tables, the goals, the JSON."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

from verification.report import table

from . import jacobian, layers, peers, verify_speed
from .common import Options, describe_machine, machine, verdict

SECTIONS = ("layers", "checks", "verify", "jacobian", "peers")
QUICK_SKIPS = {"verify": "the default make verify takes about a minute"}
PLOT = Path("docs/bench/jacobian_cost.png")
QUICK_PLOT = Path("reports/jacobian_cost.png")


def parse(argv):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Speed and scale of the reference backwards and of the verifier. Sections: layers (NumPy "
                    "backward vs jax.jit(vjp), GFLOP/s vs the GEMM peak), checks (examples per second of each "
                    "check), verify (wall time of a default make verify), jacobian (the explicit chain rule's "
                    "cost: jax.jacobian vs streamed vs vjp vs reference, and the plot), peers (vs torch "
                    "gradcheck and jax check_grads). Progress goes to stderr, tables to stdout.")
    parser.add_argument("--quick", action="store_true",
                        help="a short run: fewer pairs and sizes, one layer for the checks, no make verify timing, "
                             "no 224^3 streamed run; the plot goes to reports/ (the README's stays)")
    parser.add_argument("--json", metavar="PATH", type=Path, default=Path("reports/bench.json"),
                        help="write the results as JSON (default reports/bench.json)")
    parser.add_argument("--only", action="append", choices=SECTIONS, metavar="SECTION",
                        help=f"run only this section (repeatable): {', '.join(SECTIONS)}")
    parser.add_argument("--no-verify-timing", action="store_true",
                        help="skip the verify section (it runs the whole make verify, about a minute)")
    parser.add_argument("--plot", metavar="PATH", type=Path,
                        help=f"where the Jacobian-cost plot goes (default {PLOT}; {QUICK_PLOT} with --quick)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()

    def say(line: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {line}", file=sys.stderr, flush=True)

    options = Options(quick=args.quick, say=say)
    plot = args.plot or (QUICK_PLOT if args.quick else PLOT)
    runners = {"layers": layers.run, "checks": verify_speed.run_checks, "verify": verify_speed.run_verify,
               "jacobian": lambda o: jacobian.run(o, plot), "peers": peers.run}
    chosen = [s for s in SECTIONS if not args.only or s in args.only]
    info = machine()
    print(f"Machine: {describe_machine(info)}")
    say(f"sections: {', '.join(chosen)}{' (quick)' if args.quick else ''}")

    results, skipped = [], {}
    for name in chosen:
        if name == "verify" and args.no_verify_timing:
            skipped[name] = "--no-verify-timing"
        elif args.quick and name in QUICK_SKIPS and not args.only:
            skipped[name] = f"--quick ({QUICK_SKIPS[name]}; run it with --only {name})"
        if name in skipped:
            say(f"{name}: skipped, {skipped[name]}")
            continue
        say(f"{name} ...")
        section = runners[name](options)
        results.append(section)
        print(f"\n## {section.title}\n\n{section.text}", flush=True)

    goals = [g for s in results for g in s.goals]
    print("\n## Goals\n")
    print(table(("goal", "target", "measured", ""), [(g.what, g.goal, g.measured, verdict(g.met)) for g in goals]))
    info["load_average_end"] = list(os.getloadavg())
    seconds = time.perf_counter() - started
    print(f"\nLoad average at the start {info['load_average'][0]:.1f}, at the end {info['load_average_end'][0]:.1f} "
          f"({info['cores']} cores: above {info['cores']}, other work shared the machine and lone times stretch); "
          f"{seconds:.0f} s in all")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "machine": info, "quick": args.quick, "seconds": seconds, "skipped": skipped,
            "goals": [asdict(g) for g in goals], "sections": {s.name: s.to_dict() for s in results},
        }, indent=2, default=float))
        say(f"JSON: {args.json}")
    return 0
