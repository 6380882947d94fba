"""Benchmark ``llmsize compare``: wall time, peak memory, and its reference row
against the reference's own report.

Runs ``python -m llmsize compare FILE... --out OUT`` once in a fresh subprocess
(by default every file in ``models/``, each fitted with its own ``[sampler]``
table, as the README's command does) and reports:

- wall time, and the time per hypothesis;
- peak resident memory of the comparison (``os.wait4`` on that child: the
  largest resident set it reached; ``compare`` runs in one process);
- whether its ``default`` row (the headline model's total size at its last
  price date: median and 90% interval, ``comparison.csv``) equals the default
  report's (``reports/default/summary.csv``), as it must when both are fitted
  with the same data, hypothesis and sampler settings;
- how many hypotheses got a usable Bayes factor, and how many fits a flag.

By default the compile caches are the user's own (a warm run: the compiled
models of earlier runs are reused); ``--cold`` starts from empty PyTensor, Numba
and llmsize caches (``bench_infer.cache_env``). Pass ``--out reports/compare`` to
keep what it wrote.

Usage::

    python benchmarks/bench_compare.py [--out DIR] [--cold] [--draws N --tune N --chains N]
        [--data DIR] [--report reports/default] [--json out.json] [FILE ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_infer import cache_env, environment, run_llmsize  # noqa: E402

#: The targets of issue 15 on 2 cores.
TARGET_SECONDS = 600
TARGET_PEAK_MIB = 2048


def reference_row(out: Path, report: Path, reference: str = "default") -> dict:
    """The reference's headline size in the comparison and in its own report."""
    import pandas as pd

    cmp = pd.read_csv(out / "comparison.csv")
    rows = cmp[cmp["hypothesis"] == reference]
    last = rows.sort_values("date").iloc[-1]
    own = pd.read_csv(report / "summary.csv")
    mine = own[(own["model"] == last["model"]) & (own["quantity"] == "params_total_b")].iloc[0]
    got = (float(last["median_b"]), float(last["q05_b"]), float(last["q95_b"]))
    want = (float(mine["q50"]), float(mine["q05"]), float(mine["q95"]))
    # comparison.csv keeps 4 significant figures.
    same = all(abs(a - b) <= 5e-4 * abs(b) for a, b in zip(got, want, strict=True))
    return {"model": last["model"], "compare": got, "report": want, "equal": same}


def evidence_counts(out: Path) -> dict:
    """Hypotheses with a usable Bayes factor, with a usable LOO, and fits flagged."""
    import pandas as pd

    ev = pd.read_csv(out / "evidence.csv")
    usable = ev.get("log_bf_bridged_reliable", False) | ev.get("log_bf_reweighted_reliable", False)
    flagged = (ev["max_r_hat"] > 1.01) | (ev["min_ess_bulk"] < 400) | (ev["divergences"] > 0)
    return {
        "hypotheses": len(ev),
        "usable_bayes_factor": int(usable.sum()),
        "loo_without_bad_k": int((ev["n_pareto_k_bad"] == 0).sum()),
        "fits_flagged": int(flagged.sum()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--data", type=Path, default=None, help="data folder [the bundled data]")
    parser.add_argument("--out", type=Path, default=None, help="keep the output here")
    parser.add_argument("--report", type=Path, default=Path("reports/default"))
    parser.add_argument("--cold", action="store_true", help="empty compile caches")
    parser.add_argument("--draws", type=int, default=None)
    parser.add_argument("--tune", type=int, default=None)
    parser.add_argument("--chains", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    files = args.files or sorted(Path("models").glob("*.toml"))
    settings = [] if args.data is None else ["--data", str(args.data)]
    for flag in ("draws", "tune", "chains"):
        value = getattr(args, flag)
        if value is not None:
            settings += [f"--{flag}", str(value)]
    with tempfile.TemporaryDirectory(prefix="llmsize-bench-compare-") as tmp:
        root = Path(tmp)
        out = args.out if args.out is not None else root / "out"
        env = cache_env(root / "caches") if args.cold else {}
        log = root / "compare.log"
        args_ = ["compare", *map(str, files), "--out", str(out), *settings]
        try:
            run = run_llmsize("compare", args_, env=env, log_path=log)
        except RuntimeError as err:
            raise SystemExit(f"llmsize {err}") from None
        wall, peak = run.wall_s, run.peak_rss_mib
        ref = reference_row(out, args.report) if not settings else None  # same fit only
        counts = evidence_counts(out)
    result = {
        "environment": environment(),
        "files": [str(f) for f in files],
        "settings": settings or "each hypothesis' [sampler]",
        "cold": args.cold,
        "wall_s": wall,
        "seconds_per_hypothesis": wall / len(files),
        "peak_rss_mib": peak,
        "within_targets": {"time": wall <= TARGET_SECONDS, "memory": peak <= TARGET_PEAK_MIB},
        "reference_row": ref,
        **counts,
    }
    lines = [
        f"hypotheses          {len(files)}",
        f"wall s              {wall:.0f} ({wall / len(files):.0f} per hypothesis; "
        f"target {TARGET_SECONDS})",
        f"peak RSS MiB        {peak:.0f} (target {TARGET_PEAK_MIB})",
        f"usable Bayes factor {counts['usable_bayes_factor']} of {counts['hypotheses']}",
        f"fits flagged        {counts['fits_flagged']}",
    ]
    if ref is not None:
        lines.append(
            f"reference row       {ref['model']}: compare {ref['compare']}, "
            f"report {ref['report']}: {'equal' if ref['equal'] else 'DIFFERENT'}"
        )
    print("\n".join(lines))  # noqa: T201
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
