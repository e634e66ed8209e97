"""The command line behind ``python -m verification`` and ``make verify``."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

from .catalogue import LAYERS
from .oracles import format_bytes
from .report import layer_table, table
from .runner import check_layer
from .seedscale import SEED_SHAPE, seed_scale_case

DEFAULT_EXAMPLES = 100


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m verification",
        description="Prove the NumPy reference backwards against JAX: forward, jax.vjp, jax.jacobian, "
                    "shapes/dtypes and unchanged inputs, on hypothesis-drawn examples in float64 and float32.")
    parser.add_argument("--layer", action="append", metavar="NAME", choices=sorted(LAYERS),
                        help="check only this layer (repeatable); default: the whole catalogue")
    parser.add_argument("--max-examples", type=int, default=DEFAULT_EXAMPLES,
                        help=f"hypothesis examples per layer and dtype (default {DEFAULT_EXAMPLES})")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed (default 0); runs are reproducible")
    parser.add_argument("--dtype", action="append", choices=("float64", "float32"),
                        help="check only this dtype (repeatable); default: float64 and float32")
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write the report as JSON to PATH")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="layers checked in parallel processes (default: 2, or 1 on a 1-core machine)")
    parser.add_argument("--no-seed-scale", action="store_true",
                        help="skip the seed-scale linear case (N=64, D=M=4096, float32)")
    return parser.parse_args(argv)


def _check(name, max_examples, seed, dtypes):
    return check_layer(LAYERS[name], max_examples=max_examples, seed=seed, dtypes=dtypes)


def run_catalogue(names, *, max_examples, seed, dtypes, jobs, out=sys.stderr):
    """Check each layer, in ``jobs`` processes, printing a line per finished layer."""
    reports, started = {}, time.perf_counter()

    def done(name, report):
        reports[name] = report
        status = "pass" if report.passed else "FAIL"
        print(f"[{len(reports):>2}/{len(names)}] {report.name:<24} {status}  {report.seconds:5.1f} s  "
              f"(elapsed {time.perf_counter() - started:5.1f} s)", file=out, flush=True)

    if jobs <= 1 or len(names) <= 1:
        for name in names:
            done(name, _check(name, max_examples, seed, dtypes))
    else:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(_check, name, max_examples, seed, dtypes): name for name in names}
            for future in as_completed(futures):
                done(futures[future], future.result())
    return [reports[name] for name in names]


def main(argv=None) -> int:
    args = parse_args(argv)
    names = args.layer or list(LAYERS)
    dtypes = tuple(args.dtype or ("float64", "float32"))
    started = time.perf_counter()
    print(f"Checking {len(names)} layer(s) x {len(dtypes)} dtype(s), {args.max_examples} examples each, "
          f"seed {args.seed}, {args.jobs} job(s)", file=sys.stderr, flush=True)
    reports = run_catalogue(names, max_examples=args.max_examples, seed=args.seed, dtypes=dtypes, jobs=args.jobs)
    print(layer_table(reports))

    seed_report, costs = None, []
    if not args.no_seed_scale:
        n, d, m = SEED_SHAPE
        print(f"\nSeed-scale case: linear, N={n}, D=M={d}, float32, against jax.vjp ...", file=sys.stderr, flush=True)
        case_started = time.perf_counter()
        seed_report, costs = seed_scale_case(seed=args.seed)
        seed_report.seconds = time.perf_counter() - case_started
        print(layer_table([seed_report]))
        print("\nWhat the explicit Jacobians would cost there:")
        print(table(("Jacobian", "shape", "entries", "float32", "float64"),
                    [(c["jacobian"], " x ".join(map(str, c["shape"])), f"{c['entries']:,}",
                      format_bytes(c["float32_bytes"]), format_bytes(c["float64_bytes"])) for c in costs]))

    all_reports = reports + ([seed_report] if seed_report else [])
    passed = all(r.passed for r in all_reports)
    seconds = time.perf_counter() - started
    failed = [r.name for r in all_reports if not r.passed]
    print(f"\n{'PASSED' if passed else 'FAILED'}: {len(all_reports) - len(failed)} of {len(all_reports)} "
          f"layer reports passed in {seconds:.1f} s" + (f"; failing: {', '.join(failed)}" if failed else ""))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "passed": passed, "seconds": round(seconds, 2),
            "settings": {"max_examples": args.max_examples, "seed": args.seed, "dtypes": list(dtypes),
                         "jobs": args.jobs},
            "layers": [r.to_dict() for r in reports],
            "seed_scale": None if seed_report is None else {**seed_report.to_dict(), "jacobian_costs": costs},
        }, indent=2))
        print(f"JSON report: {args.json}", file=sys.stderr)
    return 0 if passed else 1

