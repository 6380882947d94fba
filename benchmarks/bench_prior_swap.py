"""Benchmark a prior swap: how long ``llmsize infer`` takes under a changed prior
once the default has run, against a cold run.

Prior parameters are data of the compiled model (``llmsize.inference.model.prior_data``),
so a hypothesis that changes only prior values reuses the compiled model
(``llmsize.inference.compiled``). In one run of this script, with the same draws, tuning
steps, chains and seed, each a fresh ``python -m llmsize infer`` subprocess:

1. **cold**: the base hypothesis with empty PyTensor, Numba and llmsize caches
   (``bench_infer.cache_env``);
2. **warm**: the same command again, with the caches the cold run filled;
3. **swap by --set**: the base hypothesis with ``--set log10_overtrain.mu=1.0``;
4. **swap by file**: another hypothesis file that changes only priors
   (default ``models/chatgpt_20b.toml``: a ``[model_priors]`` table).

The warm run and the two swaps are repeated (``--repeat``, 3 by default, taking
turns). The table gives the median wall time of each kind, its ratio to the
cold run, every repeat's time, and whether the runs loaded the compiled model
from the cache (their logs say so). Ratios within one run are the measure: the
machine is shared and its speed varies (one swap of a series took 27 s where
the others took 18 s).

Usage::

    python benchmarks/bench_prior_swap.py [--data data] [--hypothesis models/default.toml]
        [--swap-file models/chatgpt_20b.toml] [--draws N --tune N --chains N] [--repeat 3]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_infer import cache_env, environment, run_llmsize  # noqa: E402

#: What a run's log says when the compiled model came from the cache.
LOADED = "compiled model loaded from"


def run(label: str, args: list[str], *, env: dict[str, str], log_path: Path) -> dict:
    """One ``python -m llmsize infer`` subprocess: wall time and whether it compiled."""
    # 3: a diagnostic failed at short settings
    # Wall time only: the memory watcher's reads of /proc would slow the runs.
    proc = run_llmsize(
        label, ["infer", *args], env=env, log_path=log_path, ok=(0, 3), watch_memory=False
    )
    text = log_path.read_text(errors="replace")
    return {
        "label": label,
        "wall_s": proc.wall_s,
        "from_cache": LOADED in text,
        "exit": proc.returncode,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--hypothesis", type=Path, default=Path("models/default.toml"))
    parser.add_argument("--swap-file", type=Path, default=Path("models/chatgpt_20b.toml"))
    parser.add_argument("--set", dest="swap_set", default="log10_overtrain.mu=1.0")
    parser.add_argument("--draws", type=int, default=None)
    parser.add_argument("--tune", type=int, default=None)
    parser.add_argument("--chains", type=int, default=None)
    parser.add_argument(
        "--repeat", type=int, default=3, help="warm runs and swaps of each kind [3]; the median"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    settings = []
    for flag in ("draws", "tune", "chains"):
        value = getattr(args, flag)
        if value is not None:
            settings += [f"--{flag}", str(value)]
    with tempfile.TemporaryDirectory(prefix="llmsize-swap-") as tmp:
        root = Path(tmp)
        env = cache_env(root / "caches")

        def infer(label, hypothesis, *extra):
            out = ["--out", str(root / label.replace(" ", "-"))]
            common = ["--data", str(args.data), "--hypothesis", str(hypothesis), *out, *settings]
            return run(label, [*common, *extra], env=env, log_path=root / f"{label}.log")

        runs = [infer("cold", args.hypothesis)]
        # The warm runs and swaps take turns, so that a slow spell of the shared
        # machine falls on all three alike.
        for _ in range(args.repeat):
            runs += [
                infer("warm", args.hypothesis),
                infer("swap by --set", args.hypothesis, "--set", args.swap_set),
                infer("swap by file", args.swap_file),
            ]
    cold = runs[0]["wall_s"]
    lines = [
        f"{'run':<16} {'wall s':>8} {'/ cold':>7}  {'runs (s)':<24} compiled model",
    ]
    for label in ("cold", "warm", "swap by --set", "swap by file"):
        mine = [r for r in runs if r["label"] == label]
        walls = [r["wall_s"] for r in mine]
        median = statistics.median(walls)
        cached = {r["from_cache"] for r in mine}
        lines.append(
            f"{label:<16} {median:8.1f} {median / cold:7.2f}  "
            f"{' '.join(f'{w:.1f}' for w in walls):<24} "
            + (
                "loaded from cache"
                if cached == {True}
                else "compiled"
                if cached == {False}
                else "mixed"
            )
        )
    print("\n".join(lines))  # noqa: T201
    if args.json is not None:
        args.json.write_text(
            json.dumps({"environment": environment(), "settings": settings, "runs": runs}, indent=2)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
