"""The compiled-model cache (``llmsize.inference.compiled``): its key, its entries, and that a
model loaded from it samples exactly like the one compiled in place.

One small PyMC model is compiled a handful of times (about a second each once
PyTensor's kernels are built); loading an entry takes a few hundredths of a
second. The end-to-end check, that ``infer`` gives the same ``summary.csv`` with
an empty cache and with a reused one, refits the tiny dataset warm (a few
seconds) against the shared cold fit of ``conftest.tiny_infer_subprocess``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time

import numpy as np
import nutpie
import pymc as pm
import pytest

from llmsize.inference import compiled as cache

from ..conftest import SEED, TINY_CHAINS, TINY_DRAWS, TINY_TUNE

Y = (0.3, -0.5, 1.2, 0.8, 0.1)


def small_model(*, y=Y, sigma=1.0, extra=False):
    """Observations in ``pm.Data``, transformed priors, a deterministic."""
    with pm.Model(coords={"obs": np.arange(len(y))}) as model:
        obs = pm.Data("y", np.asarray(y, dtype=float), dims="obs")
        mu = pm.Normal("mu", 0.0, sigma)
        s = pm.HalfNormal("s", 1.0)
        frac = pm.Beta("frac", 2.0, 3.0, shape=2)
        pm.Deterministic("mu_plus", mu + frac.sum())
        if extra:
            pm.Normal("z", 0.0, 1.0)
        pm.Normal("lik", mu, s, observed=obs, dims="obs")
    return model


def draws(compiled, **kwargs):
    trace = nutpie.sample(
        compiled, draws=30, tune=30, chains=1, seed=SEED, progress_bar=False, **kwargs
    )
    post = trace["posterior"].to_dataset()
    return {name: post[name].values for name in post.data_vars}


def assert_same_draws(a, b):
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.fixture(scope="module")
def cold(tmp_path_factory):
    """One cold compile of ``small_model`` into a fresh cache, and its draws."""
    root = tmp_path_factory.mktemp("cache")
    compiled = cache.compile_model(small_model(), cache_dir=root)
    return root, compiled, draws(compiled)


def entry_of(root, compiled):
    return root / "compiled" / compiled.cache_key


# --- the key --------------------------------------------------------------------------


def test_key_ignores_observed_values():
    assert cache.model_key(small_model()) == cache.model_key(small_model(y=[9.0, 8, 7, 6, 5]))


@pytest.mark.parametrize(
    "other",
    [
        {"sigma": 2.0},  # a prior's constant
        {"extra": True},  # one more variable
        {"y": Y[:4]},  # another number of observations
    ],
    ids=["constant", "variable", "data-shape"],
)
def test_key_changes_with_structure(other):
    assert cache.model_key(small_model()) != cache.model_key(small_model(**other))


def with_prior_data(loc, *, y=Y):
    """A prior whose parameter is a data container, as llmsize's priors are."""
    with pm.Model(coords={"obs": np.arange(len(y))}) as model:
        obs = pm.Data("y", np.asarray(y, dtype=float), dims="obs")
        centre = pm.Data("prior.mu.mu", np.asarray(loc, dtype=float))
        mu = pm.Normal("mu", centre, 1.0)
        frac = pm.Beta("frac", pm.Data("prior.frac.alpha", 2.0 + loc), 3.0)
        pm.Normal("lik", mu + frac, 1.0, observed=obs, dims="obs")
    return model


def test_key_ignores_the_value_of_prior_data():
    """A prior's parameter in a data container is a value, not structure."""
    assert cache.model_key(with_prior_data(0.0)) == cache.model_key(with_prior_data(5.0))


def test_prior_swap_reuses_the_compile_and_starts_at_the_new_support_point(tmp_path):
    """A warm load under other prior values compiles nothing, starts where PyMC
    would start that model, and samples exactly as a cold compile of it does."""
    first = cache.compile_model(with_prior_data(0.0), cache_dir=tmp_path / "a")
    assert not first.from_cache
    swapped = cache.compile_model(with_prior_data(5.0), cache_dir=tmp_path / "a")
    assert swapped.from_cache
    assert swapped.cache_key == first.cache_key
    cold = cache.compile_model(with_prior_data(5.0), cache_dir=tmp_path / "b")
    assert not cold.from_cache
    for seed in (0, 7):
        start = swapped.initial_point_func(seed)
        np.testing.assert_array_equal(start, cold.initial_point_func(seed))
        assert not np.array_equal(start, first.initial_point_func(seed))
    assert_same_draws(draws(swapped), draws(cold))
    # The prior's centre moved from 0 to 5 against five unit-noise observations:
    # mu's posterior mean moves by about 5/6 (less what frac's prior takes).
    assert draws(swapped)["mu"].mean() > draws(first)["mu"].mean() + 0.4


def test_key_is_the_same_for_a_rebuilt_model():
    assert cache.model_key(small_model()) == cache.model_key(small_model())


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "here"))
    assert cache.default_cache_dir() == tmp_path / "here"
    monkeypatch.setenv(cache.ENV_VAR, "off")
    assert cache.default_cache_dir() is None
    monkeypatch.delenv(cache.ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.default_cache_dir() == tmp_path / "xdg" / "llmsize"


# --- entries --------------------------------------------------------------------------


def test_cold_compile_writes_a_complete_entry(cold):
    root, compiled, _ = cold
    assert not compiled.from_cache
    entry = entry_of(root, compiled)
    meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
    assert meta["key"] == compiled.cache_key
    assert meta["format"] == cache.CACHE_FORMAT
    # Numba's index of each callback (the compiled code is beside it).
    assert len(list(entry.glob("*.nbi"))) == 2
    # Nothing half-written is left beside it.
    assert [p.name for p in entry.parent.iterdir()] == [entry.name]


def test_cold_compile_takes_the_expand_callback_from_its_child(cold):
    """The child forked for the expand callback wrote it into the entry, and the
    parent loaded it from there instead of compiling it again."""
    _, compiled, _ = cold
    logp_cf, expand_cf = compiled._keep
    assert logp_cf.cache_hits == 0  # compiled here
    assert expand_cf.cache_hits == 1  # loaded: the child compiled it


def test_a_child_that_fails_or_hangs_is_reaped(tmp_path):
    flag = tmp_path / "done"
    pid = cache._fork(lambda: flag.write_text("yes", encoding="utf-8"))
    assert pid is not None
    assert cache._reap(pid)
    assert flag.read_text(encoding="utf-8") == "yes"
    assert not cache._reap(cache._fork(lambda: 1 / 0))
    start = time.monotonic()
    assert not cache._reap(cache._fork(lambda: time.sleep(60)), wait_s=0.5)
    assert time.monotonic() - start < 30


def test_warm_load_samples_exactly_like_the_cold_compile(cold):
    root, compiled, cold_draws = cold
    warm = cache.compile_model(small_model(), cache_dir=root)
    assert warm.from_cache
    assert warm.logp_func is None  # nothing was compiled
    assert_same_draws(draws(warm), cold_draws)


def test_cached_model_equals_nutpies_own_compile(cold):
    """Same initial points, same kernels: nutpie's compile (without fastmath)
    gives the same draws as the cached model."""
    _, _, cold_draws = cold
    with cache.exact_math():
        reference = nutpie.compile_pymc_model(small_model())
    assert_same_draws(draws(reference), cold_draws)


def test_warm_load_uses_the_new_observations(cold):
    root, compiled, _ = cold
    other = [3.0, 2.5, 4.0, 3.5, 3.0]
    warm = cache.compile_model(small_model(y=other), cache_dir=root)
    assert warm.from_cache
    # As if the first model's data were swapped: with_data and a fresh load agree.
    assert_same_draws(draws(warm), draws(compiled.with_data(y=other)))
    assert draws(warm)["mu"].mean() > 1.5


def test_initial_point_is_pymcs(cold):
    from pymc.initial_point import make_initial_point_fn

    _, compiled, _ = cold
    model = small_model()
    pymc_fn = make_initial_point_fn(
        model=model, jitter_rvs=set(model.free_RVs), return_transformed=True
    )
    names, slices, _ = compiled.shape_info
    for seed in (1, 99):
        expected = pymc_fn(seed)
        got = compiled.initial_point_func(seed)
        for name, sl in zip(names, slices, strict=False):
            if name in expected:
                np.testing.assert_array_equal(got[sl], np.ravel(expected[name]))


def _corrupt_meta(entry):
    (entry / "meta.json").write_text("{not json", encoding="utf-8")


def _stale_meta(entry):
    meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
    meta["format"] = -1
    (entry / "meta.json").write_text(json.dumps(meta), encoding="utf-8")


def _truncate_code(entry):
    for path in entry.glob("*logp*.nbc"):
        path.write_bytes(path.read_bytes()[:100])


def _garbage_index(entry):
    for path in entry.glob("*.nbi"):
        path.write_bytes(b"\x00garbage")


def _no_meta(entry):
    (entry / "meta.json").unlink()


@pytest.mark.parametrize(
    "damage", [_corrupt_meta, _stale_meta, _truncate_code, _garbage_index, _no_meta]
)
def test_damaged_entry_is_not_used(tmp_path, cold, damage):
    root, compiled, _ = cold
    entry = tmp_path / compiled.cache_key
    shutil.copytree(entry_of(root, compiled), entry)
    model = small_model()
    outputs = cache.key_outputs(model)
    assert cache._load(model, outputs, entry, compiled.cache_key) is not None
    damage(entry)
    assert cache._load(model, outputs, entry, compiled.cache_key) is None


def test_damaged_entry_is_compiled_again(tmp_path, caplog, cold):
    root, compiled, cold_draws = cold
    entry = tmp_path / "compiled" / compiled.cache_key
    shutil.copytree(entry_of(root, compiled), entry)
    _truncate_code(entry)
    with caplog.at_level(logging.INFO, logger="llmsize.inference.compiled"):
        again = cache.compile_model(small_model(), cache_dir=tmp_path)
    assert not again.from_cache
    assert "is unusable" in caplog.text
    assert "compiled model cached in" in caplog.text
    assert_same_draws(draws(again), cold_draws)
    # The entry was rewritten whole and is used next time.
    assert cache.compile_model(small_model(), cache_dir=tmp_path).from_cache


def test_unwritable_cache_only_costs_the_compile(tmp_path, caplog, cold):
    _, _, cold_draws = cold
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="llmsize.inference.compiled"):
        compiled = cache.compile_model(small_model(), cache_dir=blocker)
    assert not compiled.from_cache
    assert "cannot write the compiled-model cache" in caplog.text
    assert_same_draws(draws(compiled), cold_draws)


def test_changed_nutpie_internals_fall_back_to_nutpies_public_compile(
    tmp_path, caplog, cold, monkeypatch
):
    """A nutpie whose private compile functions changed (the cache uses them) still
    samples: through ``nutpie.compile_pymc_model``, the same draws, nothing cached."""
    _, _, cold_draws = cold

    def changed(*args, **kwargs):
        raise AttributeError("module 'nutpie.compile_pymc' has no attribute '_make_functions'")

    monkeypatch.setattr(cache, "_compile_fresh", changed)
    with caplog.at_level(logging.WARNING, logger="llmsize.inference.compiled"):
        compiled = cache.compile_model(small_model(), cache_dir=tmp_path)
    assert "compiling with nutpie" in caplog.text
    assert not hasattr(compiled, "from_cache")  # nutpie's own compiled model
    assert not list((tmp_path / "compiled").iterdir())  # no entry, no staging left
    assert_same_draws(draws(compiled), cold_draws)


def test_prune_keeps_the_most_recently_used(tmp_path):
    import os

    folder = tmp_path / "compiled"
    for i, name in enumerate(("old", "mid", "new")):
        (folder / name).mkdir(parents=True)
        (folder / name / "meta.json").write_text("{}", encoding="utf-8")
        os.utime(folder / name / "meta.json", (1000.0 + i, 1000.0 + i))
    (folder / ".dead.partial").mkdir()
    os.utime(folder / ".dead.partial", (0.0, 0.0))
    (folder / ".live.partial").mkdir()
    cache.prune(tmp_path, keep=2)
    assert sorted(p.name for p in folder.iterdir()) == [".live.partial", "mid", "new"]


def test_fast_argument_typing_gives_numbas_types():
    from numba import typeof
    from numba.core.typing.typeof import typeof_impl

    before = (typeof_impl.dispatch(np.ndarray), typeof_impl.dispatch(tuple))
    readonly = np.zeros(3)
    readonly.flags.writeable = False
    values = [
        np.float64(1.0),
        np.zeros(()),
        np.zeros((2, 3)),
        np.zeros((2, 3))[:, 1],
        np.zeros((3, 2), order="F"),
        readonly,
        np.arange(4),
        (np.zeros(()), np.ones(2), 3),
        (np.zeros(()), (np.ones(2), 1.5)),
    ]
    expected = [typeof(v) for v in values]
    with cache.fast_argument_typing():
        assert [typeof(v) for v in values] == expected
        assert [typeof(v) for v in values] == expected  # from the memo
    assert (typeof_impl.dispatch(np.ndarray), typeof_impl.dispatch(tuple)) == before


# --- the main job, cold and warm -------------------------------------------------------


def test_warm_infer_gives_the_cold_summary(
    tiny_infer_subprocess, tiny_subprocess_cache, tiny_design, default_hypothesis, tmp_path,
    monkeypatch, caplog,
):  # fmt: skip
    """``tiny_infer_subprocess`` compiled into an empty cache; fitting the same
    data, hypothesis and seed again with that cache loads the compiled model and
    gives the same summary.csv, byte for byte."""
    from llmsize.inference.sampling import SampleSettings, fit
    from llmsize.outputs import io
    from llmsize.outputs.summary import summary_table

    proc, out = tiny_infer_subprocess
    assert proc.returncode == 0, proc.stderr
    # A copy: the cache is shared with other tests (and workers), and a load may touch it.
    shutil.copytree(tiny_subprocess_cache, tmp_path / "cache")
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "cache"))
    settings = SampleSettings.from_hypothesis(
        default_hypothesis.sampler, draws=TINY_DRAWS, tune=TINY_TUNE, chains=TINY_CHAINS,
        seed=SEED,
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="llmsize.inference.compiled"):
        tree = fit(tiny_design, default_hypothesis, settings)
    assert "compiled model loaded from" in caplog.text
    io.write_summary(summary_table(tree, tiny_design), tmp_path / "summary.csv")
    assert (tmp_path / "summary.csv").read_bytes() == (out / "summary.csv").read_bytes()
