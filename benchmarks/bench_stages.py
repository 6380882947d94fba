"""Time each stage of one ``llmsize infer`` run, in this process.

Where does a warm run spend its time? This runs the main job once (by default
on the bundled data and the default hypothesis, into a temporary folder) with
a timer around every stage that ``llmsize.pipeline.run_inference`` calls:
sampling (compiled model loaded from the cache when warm), prior and posterior
predictive draws, log prior, summary, the price-cut decomposition, writing
``posterior.nc`` (in a thread, beside the figures), the figures and the pages.
R-hat and ESS of every parameter and prior sensitivity run in one worker
process, and the prior-posterior and predictive figures are drawn in another
(``llmsize.pipeline.report_workers``); here only the draws and panels handed to
them are timed, and any wait for their results is in the total. Run it
twice, or after ``bench_infer.py``, to see a warm run.

Usage::

    python benchmarks/bench_stages.py [--data data] [--hypothesis models/default.toml]
        [--draws N] [--tune N] [--chains N] [--set NAME=VALUE ...]

Times are wall seconds of whole calls; a stage that runs in a thread overlaps
the ones after it, so the stages add up to more than the total.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

_START = time.perf_counter()

#: (module, function) pairs timed; each is replaced where the pipeline looks it up.
STAGES = [
    ("llmsize.inference.sampling", "sample_posterior"),
    ("llmsize.inference.sampling", "sample_prior"),
    ("llmsize.inference.sampling", "sample_posterior_predictive"),
    ("llmsize.inference.sampling", "log_prior"),
    ("llmsize.pipeline", "summary_table"),
    ("llmsize.pipeline", "parameter_draws"),
    ("llmsize.pipeline", "sensitivity_groups"),
    ("llmsize.pipeline", "diagnostics"),
    ("llmsize.pipeline", "decompose_cuts"),
    ("llmsize.outputs.io", "write_posterior"),
    ("llmsize.outputs.plots", "plot_size_by_date"),
    ("llmsize.outputs.plots", "plot_cuts"),
    ("llmsize.outputs.plots", "prior_posterior_panels"),
    ("llmsize.outputs.plots", "ppc_panels"),
    ("llmsize.outputs.plots", "save"),
    ("llmsize.pipeline", "render_family"),
    ("llmsize.pipeline", "render_readme"),
    ("llmsize.pipeline", "write_pages"),
]


def instrument(totals: dict[str, float], counts: dict[str, int]) -> None:
    """Wrap every stage in ``STAGES`` so that its calls add to ``totals``."""
    import importlib

    for module_name, name in STAGES:
        module = importlib.import_module(module_name)
        inner = getattr(module, name)

        def timed(*args, _inner=inner, _label=f"{module_name}.{name}", **kwargs):
            start = time.perf_counter()
            try:
                return _inner(*args, **kwargs)
            finally:
                totals[_label] += time.perf_counter() - start
                counts[_label] += 1

        setattr(module, name, timed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--hypothesis", type=Path, default=Path("models/default.toml"))
    parser.add_argument("--draws", type=int, default=None)
    parser.add_argument("--tune", type=int, default=None)
    parser.add_argument("--chains", type=int, default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=None)
    args = parser.parse_args(argv)

    import llmsize.pipeline as pipeline

    imported = time.perf_counter() - _START
    totals: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    instrument(totals, counts)
    with tempfile.TemporaryDirectory(prefix="llmsize-stages-") as tmp:
        start = time.perf_counter()
        pipeline.run_inference(
            data_dir=args.data,
            hypothesis_path=args.hypothesis,
            out_dir=Path(tmp) / "report",
            draws=args.draws,
            tune=args.tune,
            chains=args.chains,
            overrides=args.overrides,
        )
        run = time.perf_counter() - start
    lines = [
        f"{'stage':<46} {'calls':>5} {'wall s':>8}",
        f"{'imports (python start to llmsize.pipeline)':<46} {1:>5} {imported:8.2f}",
        *(f"{label:<46} {counts[label]:>5} {s:8.2f}" for label, s in totals.items()),
        f"{'run_inference, in all':<46} {1:>5} {run:8.2f}",
    ]
    print("\n".join(lines))  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
