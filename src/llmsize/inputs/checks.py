"""Every input of a fit loaded and checked, before anything is compiled or sampled.

What ``llmsize validate`` runs, and the first step of ``infer``
(:func:`llmsize.pipeline.check_inputs`, which adds the output folder). It
imports no sampler, so ``validate`` stays quick.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llmsize.inputs.data import Dataset, check_unknown_models, load_dataset
from llmsize.inputs.hypothesis import Hypothesis, check_sampler_options, load_hypothesis
from llmsize.physics.design import Design, build_design


@dataclass(frozen=True)
class RunRequest:
    """What a fit is asked for: its data, its hypothesis with ``--set`` overrides, and
    the sampler settings given (``None``: the hypothesis' ``[sampler]``).
    """

    data_dir: Path
    hypothesis_path: Path
    draws: int | None = None
    tune: int | None = None
    chains: int | None = None
    seed: int | None = None
    overrides: list[str] | None = None
    #: threads the chains sample on (``None``: one per chain, at most two)
    cores: int | None = None


def load_inputs(request: RunRequest) -> tuple[Hypothesis, Dataset, Design]:
    """The hypothesis, data and design of a fit, every one checked.

    The sampler settings given (seed, chains, draws and tuning steps in range:
    :data:`llmsize.inputs.hypothesis.SAMPLER_LIMITS`; ``None``: the hypothesis' own), the
    hypothesis (schema, and what the model needs of each prior), the data (every
    file, and at least one model of unknown size) and the design built from both.
    Raises :class:`~llmsize.exceptions.LlmsizeError` on the first problem.
    """
    r = request
    check_sampler_options(draws=r.draws, tune=r.tune, chains=r.chains, seed=r.seed)
    hyp = load_hypothesis(r.hypothesis_path, r.overrides)
    data = load_dataset(r.data_dir)
    check_unknown_models(data)
    return hyp, data, build_design(data, hyp)
