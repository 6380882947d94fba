"""Hypothesis files: validation, ``extends`` merging and one-line errors."""

from __future__ import annotations

import datetime as dt
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest

from llmsize.exceptions import HypothesisError
from llmsize.inputs.hypothesis import (
    DISTRIBUTIONS,
    BetaPrior,
    ConstantPrior,
    Hypothesis,
    NormalPrior,
    Priors,
    load_hypothesis,
    validate,
)

from ..conftest import DEFAULT_HYPOTHESIS, HYPOTHESIS_FIXTURES, MODELS_DIR


def test_default_validates(default_hypothesis):
    hyp = default_hypothesis
    assert isinstance(hyp, Hypothesis)
    assert hyp.name == "default"
    # Every prior of the model is set, each exactly as written in the file.
    raw = tomllib.loads(DEFAULT_HYPOTHESIS.read_text(encoding="utf-8"))
    assert set(Priors.model_fields) == set(raw["priors"]) == set(hyp.priors.model_dump())
    for name, spec in raw["priors"].items():
        dumped = getattr(hyp.priors, name).model_dump(exclude_none=True)
        assert dumped == spec, name
    assert isinstance(hyp.priors.log10_params_total_b, NormalPrior)
    assert hyp.precision.bits == tuple(raw["precision"]["bits"])
    assert hyp.hardware.newer_midpoint == raw["hardware"]["newer_midpoint"]
    assert isinstance(hyp.hardware.newer_midpoint, dt.date)
    assert hyp.scaling_law.alpha == raw["scaling_law"]["alpha"]
    assert hyp.sampler.chains == raw["sampler"]["chains"]


@pytest.mark.parametrize("path", sorted(MODELS_DIR.glob("*.toml")), ids=lambda p: p.name)
def test_every_model_file_validates(path):
    hyp = load_hypothesis(path)
    assert isinstance(hyp, Hypothesis)
    assert hyp.name


def test_digest_is_stable_and_sensitive(default_hypothesis):
    again = load_hypothesis(DEFAULT_HYPOTHESIS)
    assert again.digest() == default_hypothesis.digest()
    raw = default_hypothesis.to_dict()
    raw["priors"]["mbu"]["alpha"] = 7.0
    assert validate(raw).digest() != default_hypothesis.digest()


# --- extends --------------------------------------------------------------------


def test_extends_overrides_one_prior(hypothesis_dir, default_hypothesis):
    hyp = load_hypothesis(hypothesis_dir / "good_override_size.toml")
    assert hyp.name == "good_override_size"
    assert hyp.description == "Smaller models a priori"
    assert hyp.priors.log10_params_total_b == NormalPrior(distribution="Normal", mu=1.0, sigma=0.5)
    # Everything else is the parent's.
    child, parent = hyp.priors.model_dump(), default_hypothesis.priors.model_dump()
    for key in parent:
        if key != "log10_params_total_b":
            assert child[key] == parent[key], key
    for section in ("precision", "hardware", "scaling_law", "constants", "sampler"):
        assert getattr(hyp, section) == getattr(default_hypothesis, section), section


def test_extends_merges_one_parameter(hypothesis_dir, default_hypothesis):
    hyp = load_hypothesis(hypothesis_dir / "good_partial_param.toml")
    # A table without 'distribution' merges into the parent's prior key by key.
    parent_beta = default_hypothesis.priors.mbu.beta
    assert hyp.priors.mbu == BetaPrior(distribution="Beta", alpha=8.0, beta=parent_beta)
    assert hyp.sampler.draws == 200
    assert hyp.sampler.tune == default_hypothesis.sampler.tune
    assert hyp.sampler.seed == default_hypothesis.sampler.seed
    # Without a name of its own, a child is named after its file, not its parent.
    assert hyp.name == "good_partial_param"


def test_extends_replaces_distribution(hypothesis_dir):
    hyp = load_hypothesis(hypothesis_dir / "good_dense_only.toml")
    # A prior given with its own distribution replaces the parent's whole: no
    # 'alpha'/'beta' of the parent's Beta leak into the Constant.
    assert hyp.priors.active_fraction == ConstantPrior(distribution="Constant", value=1.0)


def test_extends_chain(hypothesis_dir):
    hyp = load_hypothesis(hypothesis_dir / "good_chain_child.toml")
    assert hyp.name == "good_chain_child"
    assert hyp.priors.log10_params_total_b.mu == 1.0  # from the middle file
    assert hyp.priors.mbu == BetaPrior(distribution="Beta", alpha=7.0, beta=3.0)
    assert hyp.priors.mfu_prefill == BetaPrior(distribution="Beta", alpha=5.0, beta=5.0)


@pytest.mark.parametrize(
    "path", sorted(HYPOTHESIS_FIXTURES.glob("good_*.toml")), ids=lambda p: p.name
)
def test_good_fixtures_validate(path, hypothesis_dir):
    assert isinstance(load_hypothesis(hypothesis_dir / path.name), Hypothesis)


def test_extends_relative_to_the_child(tmp_path):
    # 'extends' is resolved from the child's folder, not the working directory.
    sub = tmp_path / "deep" / "er"
    sub.mkdir(parents=True)
    shutil.copy(DEFAULT_HYPOTHESIS, tmp_path / "default.toml")
    (sub / "child.toml").write_text(
        'extends = "../../default.toml"\n[constants]\nkv_bytes_coef = 50000\n', encoding="utf-8"
    )
    hyp = load_hypothesis(sub / "child.toml")
    assert hyp.constants.kv_bytes_coef == 50000
    assert hyp.constants.ttft_input_tokens == 550


# --- errors ----------------------------------------------------------------------

#: file -> (key path that must appear or None, "did you mean" hint or None, message fragment)
WRONG = {
    "wrong_unknown_distribution.toml": (
        "priors.mbu.distribution",
        "did you mean 'Normal'?",
        "unknown distribution 'Normall'",
    ),
    "wrong_unknown_prior.toml": (
        "priors.price_sigmaa",
        "did you mean 'price_sigma'?",
        "unknown prior",
    ),
    "wrong_unknown_parameter.toml": (
        "priors.log10_params_total_b.sigmaa",
        "did you mean 'sigma'?",
        "unknown parameter 'sigmaa' for Normal",
    ),
    "wrong_unknown_parameter_extra.toml": (
        "priors.log10_params_total_b.sigm",
        "did you mean 'sigma'?",
        "unknown parameter 'sigm' for Normal",
    ),
    "wrong_negative_sigma.toml": ("priors.speed_sigma.sigma", None, "greater than 0"),
    "wrong_unknown_top_level_key.toml": ("sampller", "did you mean 'sampler'?", "unknown key"),
    "wrong_unknown_section_key.toml": ("sampler.draw", "did you mean 'draws'?", "unknown key"),
    # A syntax error has no key path; it names the line instead.
    "wrong_toml_syntax.toml": (None, None, "line 3"),
    "wrong_extends_missing.toml": ("extends", None, "no_such_parent.toml"),
    "wrong_extends_cycle_a.toml": ("extends", None, "cycle"),
    "wrong_extends_cycle_b.toml": ("extends", None, "cycle"),
}


def test_every_wrong_fixture_has_an_expectation():
    on_disk = {p.name for p in HYPOTHESIS_FIXTURES.glob("wrong_*.toml")}
    assert on_disk == set(WRONG)


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_fixture_raises_one_line(name, hypothesis_dir):
    key_path, hint, fragment = WRONG[name]
    with pytest.raises(HypothesisError) as info:
        load_hypothesis(hypothesis_dir / name)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.strip() == msg
    assert msg
    assert fragment in msg
    # The file named is the one at fault (for a cycle, either member of it).
    files = (
        {name}
        if "cycle" not in name
        else {"wrong_extends_cycle_a.toml", "wrong_extends_cycle_b.toml"}
    )
    assert any(f in msg for f in files), msg
    if key_path is not None:
        assert f"'{key_path}'" in msg, msg
        assert info.value.field == key_path
    if hint is not None:
        assert hint in msg, msg


def test_missing_extends_names_the_missing_file(hypothesis_dir):
    # What src/ does meet today for a missing parent: one line naming it.
    with pytest.raises(HypothesisError) as info:
        load_hypothesis(hypothesis_dir / "wrong_extends_missing.toml")
    msg = str(info.value)
    assert "\n" not in msg
    assert "no_such_parent.toml" in msg
    assert "does not exist" in msg
    assert info.value.field == "extends"


def test_unknown_parameter_is_reported_with_a_hint_when_nothing_is_missing(hypothesis_dir):
    # The unknown parameter alone (all required ones present) gets the full message.
    with pytest.raises(HypothesisError) as info:
        load_hypothesis(hypothesis_dir / "wrong_unknown_parameter_extra.toml")
    assert "it takes mu, sigma" in str(info.value)


def test_missing_file():
    with pytest.raises(HypothesisError, match="no such hypothesis file") as info:
        load_hypothesis(Path("/nonexistent/dir/hyp.toml"))
    assert "hyp.toml" in str(info.value)


def test_no_hint_for_unrelated_word(hypothesis_dir, tmp_path):
    path = hypothesis_dir / "far.toml"
    path.write_text(
        'extends = "default.toml"\n[priors]\nmbu = { distribution = "Zzyzx", a = 1 }\n',
        encoding="utf-8",
    )
    with pytest.raises(HypothesisError) as info:
        load_hypothesis(path)
    msg = str(info.value)
    assert "did you mean" not in msg
    for known in DISTRIBUTIONS:
        assert known in msg


@pytest.mark.parametrize(
    ("stem", "section", "body", "key_path"),
    [
        (
            "bits_weights_length",
            "precision",
            "bits = [16, 8]\nweights = [0.5, 0.3, 0.2]",
            "precision",
        ),
        ("bits_value", "precision", "bits = [16, 2]\nweights = [0.5, 0.5]", "precision"),
        ("newer_max", "hardware", "newer_max = 1.5", "hardware.newer_max"),
        ("target_accept", "sampler", "target_accept = 1.0", "sampler.target_accept"),
        ("adaptation", "sampler", 'adaptation = "dense"', "sampler.adaptation"),
        ("kv_bytes_coef", "constants", "kv_bytes_coef = 0", "constants.kv_bytes_coef"),
    ],
)
def test_section_constraints(hypothesis_dir, stem, section, body, key_path):
    path = hypothesis_dir / f"bad_{stem}.toml"
    path.write_text(f'extends = "default.toml"\n[{section}]\n{body}\n', encoding="utf-8")
    with pytest.raises(HypothesisError) as info:
        load_hypothesis(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert path.name in msg
    assert f"'{key_path}'" in msg


def test_validate_reports_missing_prior(default_hypothesis):
    raw = default_hypothesis.to_dict()
    del raw["priors"]["mbu"]
    with pytest.raises(HypothesisError, match="required but missing") as info:
        validate(raw, source="x.toml")
    assert info.value.field == "priors.mbu"


# --- overrides from the command line (--set) -------------------------------------


def test_set_overrides_one_prior_parameter():
    hyp = load_hypothesis(DEFAULT_HYPOTHESIS, ["log10_overtrain.mu=1.0"])
    base = load_hypothesis(DEFAULT_HYPOTHESIS)
    assert hyp.priors.log10_overtrain.mu == 1.0
    assert hyp.priors.log10_overtrain.sigma == base.priors.log10_overtrain.sigma
    assert hyp.priors.mbu == base.priors.mbu


def test_set_replaces_a_distribution_and_reaches_other_sections():
    hyp = load_hypothesis(
        DEFAULT_HYPOTHESIS,
        [
            "active_fraction.distribution=Constant",
            "active_fraction.value=1.0",
            "sampler.draws=10",
            "priors.mbu.alpha=7",
        ],
    )
    assert hyp.priors.active_fraction.distribution == "Constant"
    assert hyp.priors.active_fraction.value == 1.0
    assert hyp.sampler.draws == 10
    assert hyp.priors.mbu.alpha == 7


@pytest.mark.parametrize(
    ("override", "field", "fragment"),
    [
        ("mbu.alpha=-1", "priors.mbu.alpha", "greater than 0"),
        ("mbu.distribution=Normall", "priors.mbu.distribution", "did you mean 'Normal'?"),
        ("sampler.draw=4", "sampler.draw", "did you mean 'draws'?"),
        ("mbuu.alpha=3", "mbuu", "did you mean 'mbu'?"),
        ("mbu", "mbu", "KEY=VALUE"),
        ("mbu.alpha=inf", "priors.mbu.alpha", "finite number"),
        ("log10_overtrain.mu=nan", "priors.log10_overtrain.mu", "finite number"),
        ("precision.weights=[nan, 1.0, 1.0]", "precision.weights.0", "finite number"),
        # The name is the report folder: reports/.. would be the working directory.
        ('name=".."', "name", "should match pattern"),
        ('name="."', "name", "should match pattern"),
        ('name=".hidden"', "name", "should match pattern"),
        ('name="a/b"', "name", "should match pattern"),
    ],
)
def test_broken_override_gets_the_same_one_line_error(override, field, fragment):
    with pytest.raises(HypothesisError) as info:
        load_hypothesis(DEFAULT_HYPOTHESIS, [override])
    msg = str(info.value)
    assert "\n" not in msg
    assert f"'{field}'" in msg, msg
    assert fragment in msg, msg


# --- per-model priors -------------------------------------------------------------------


def test_model_priors_last_matching_pattern_wins(default_hypothesis):
    raw = default_hypothesis.to_dict()
    normal = {"distribution": "Normal", "sigma": 0.1}
    raw["model_priors"] = {
        "gpt-*": {"log10_params_total_b": {**normal, "mu": 2.0}},
        "gpt-3.5-turbo*": {"log10_params_total_b": {**normal, "mu": 1.3}},
    }
    hyp = validate(raw)
    assert hyp.prior_for("log10_params_total_b", "gpt-3.5-turbo-0613").mu == 1.3
    assert hyp.prior_for("log10_params_total_b", "gpt-4o-mini").mu == 2.0
    assert hyp.prior_for("log10_params_total_b", "llama") == hyp.priors.log10_params_total_b
    assert hyp.prior_for("active_fraction", "gpt-4o-mini") == hyp.priors.active_fraction


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        (
            {"log10_params_total_b": {"distribution": "LogNormal", "mu": 1.0, "sigma": 0.1}},
            "use Normal like priors.log10_params_total_b",
        ),
        (
            {"log10_params_totl_b": {"distribution": "Normal", "mu": 1.0, "sigma": 0.1}},
            "did you mean 'log10_params_total_b'?",
        ),
        ({"mbu": {"distribution": "Beta", "alpha": 1.0, "beta": 1.0}}, "unknown key 'mbu'"),
    ],
)
def test_broken_model_prior_is_one_line(default_hypothesis, entry, fragment):
    raw = default_hypothesis.to_dict()
    raw["model_priors"] = {"gpt-3.5*": entry}
    with pytest.raises(HypothesisError) as info:
        validate(raw, source="x.toml")
    assert "\n" not in str(info.value)
    assert fragment in str(info.value)


def test_claim_files_restrict_their_prior_to_gpt35():
    hyp = load_hypothesis(MODELS_DIR / "chatgpt_20b.toml")
    assert hyp.prior_for("log10_params_total_b", "gpt-3.5-turbo-0301").mu == pytest.approx(1.301)
    assert hyp.prior_for("log10_params_total_b", "gpt-4o-mini").mu == pytest.approx(1.5)


@pytest.mark.parametrize(
    "spec",
    [
        {"distribution": "Normal", "mu": 0.5, "sigma": 1.5},
        {"distribution": "HalfNormal", "sigma": 0.5},
        {"distribution": "LogNormal", "mu": -1.2, "sigma": 0.8},
        {"distribution": "Beta", "alpha": 5.0, "beta": 2.0},
        {"distribution": "TruncatedNormal", "mu": 1.0, "sigma": 1.5, "lower": -1.0},
        {"distribution": "TruncatedNormal", "mu": 0.0, "sigma": 1.0, "lower": -0.5, "upper": 2.0},
    ],
    ids=lambda s: s["distribution"] + ("" if "upper" not in s else "-both"),
)
def test_prior_log_density_is_pymcs(spec):
    """The log prior written for prior sensitivity (sampling.log_prior) uses each
    prior's ``logpdf``; it must be the density the PyMC model samples."""
    import pymc as pm
    from pydantic import TypeAdapter

    from llmsize.inputs.hypothesis import Prior

    prior = TypeAdapter(Prior).validate_python(spec)
    x = np.array([0.05, 0.3, 0.9, 1.7])
    params = {k: v for k, v in spec.items() if k != "distribution"}
    expected = pm.logp(getattr(pm, spec["distribution"]).dist(**params), x).eval()
    # PyMC's normalising constants differ from SciPy's by about 1e-8 (a constant,
    # which power-scaling ignores).
    np.testing.assert_allclose(prior.logpdf(x), expected, rtol=0, atol=1e-7)
