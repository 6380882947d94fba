"""Hold-outs: families with their same-size siblings, lab ladders, classes, the split.

Everything here is built from the small fixtures without sampling.
``tests/fixtures/calibration`` is the tiny data plus LabM, a lab with its own API:
it prices labm-7b (its earliest, 2023-09-01), labm-moe (141B/39B) and labm-22b,
which resellers price too; labm-12b is priced at a reseller only and labm-22b-base
has a quality row only. labm-7b has the size of small-7b (LabS).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pytest

from llmsize.exceptions import DataError
from llmsize.inputs.data import load_dataset
from llmsize.physics.design import build_design
from llmsize.studies.calibration import holdouts as ho


def _by_name(holdouts):
    return {h.name: h for h in holdouts}


# --------------------------------------------------------------------------- families


def test_families_group_priced_known_models(tiny_data, tiny_design):
    assert ho.families(tiny_data, tiny_design) == {
        "small": ["small-7b"],
        "mid": ["mid-70b"],
        "moe": ["moe-47b"],
        "big": ["big-175b"],
    }


def test_bundled_families_include_gpt3(bundled_data, bundled_design):
    fams = ho.families(bundled_data, bundled_design)
    assert fams["gpt-3-175b"] == ["davinci"]
    # CodeLlama-70B starts from Llama 2 70B's weights, so it leaves with it.
    assert set(fams["llama-2-70b"]) == {"Llama-2-70B-chat", "CodeLlama-70B-Instruct"}


def test_same_size_siblings_are_one_holdout(cal_data, cal_design):
    hs = _by_name(ho.family_holdouts(cal_data, cal_design))
    # labm-7b (LabM) and small-7b (LabS) are both 7B dense: one hold-out, named by
    # its families in sort order; every other family stays alone.
    assert set(hs) == {"big", "labm-12b", "labm-22b", "labm-7b+small", "labm-moe", "mid", "moe"}
    merged = hs["labm-7b+small"]
    assert merged.kind == "family"
    assert merged.families == ("labm-7b", "small")
    assert set(merged.held_out) == {"small-7b", "labm-7b"}
    # A family's unpriced base checkpoint leaves with it.
    assert set(hs["labm-22b"].held_out) == {"labm-22b", "labm-22b-base"}
    # Same total but another active size is another size (moe-47b: 46.7B/12.9B).
    assert hs["moe"].held_out == ("moe-47b",)


def test_merged_holdout_refits_without_any_sibling(cal_data, default_hypothesis):
    h = _by_name(ho.family_holdouts(cal_data, build_design(cal_data, default_hypothesis)))
    design = ho.holdout_design(cal_data, default_hypothesis, h["labm-7b+small"], "full")
    assert {"small-7b", "labm-7b"} <= set(design.unknown)
    assert not np.isfinite(design.known_total[design.models.index("labm-7b")])
    # Family hold-outs keep every price.
    assert len(design.epochs) == len(cal_data.prices)


def test_bundled_70b_siblings_merged(bundled_data, bundled_design):
    hs = ho.family_holdouts(bundled_data, bundled_design)
    group = next(h for h in hs if "llama-2-70b" in h.families)
    assert {"llama-2-70b", "llama-3-70b", "llama-3.1-70b", "llama-3.3-70b"} <= set(group.families)
    assert {"Llama-2-70B-chat", "CodeLlama-70B-Instruct", "Llama-3.3-70B-Instruct"} <= set(
        group.held_out
    )
    # Every known model is held out by exactly one family hold-out.
    held = [m for h in hs for m in h.held_out]
    assert len(held) == len(set(held))


def test_holdout_makes_the_family_unknown(tiny_data, default_hypothesis):
    design = ho.holdout_design(tiny_data, default_hypothesis, "mid", "full")
    assert "mid-70b" in design.unknown
    assert set(design.unknown) == {"closed-x", "closed-y", "mid-70b"}
    # Its MMLU now depends on its latent compute.
    assert np.isnan(design.mmlu_known_log10_compute[design.mmlu_model >= 0]).all()
    assert np.all(design.price_mask == 1.0)


def test_no_speed_and_no_price_variants(tiny_data, default_hypothesis):
    d = ho.holdout_design(tiny_data, default_hypothesis, "mid", "no_speed")
    assert len(d.speed_epoch) == 0
    assert len(d.ttft_epoch) == 0
    d = ho.holdout_design(tiny_data, default_hypothesis, "mid", "no_price")
    masked = d.epochs.loc[d.price_mask == 0.0, "model"]
    assert set(masked) == {"mid-70b"}
    assert (d.price_mask[d.epochs["model"] != "mid-70b"] == 1.0).all()
    with pytest.raises(ValueError, match="unknown variant"):
        ho.holdout_design(tiny_data, default_hypothesis, "mid", "no_such")


def test_unpriced_base_checkpoint_leaves_with_its_family(bundled_data, default_hypothesis):
    # Llama-2-70B (base) has an MMLU row but no price: held out, it cannot be placed.
    held = ho.holdout_dataset(bundled_data, "llama-2-70b", "full")
    assert "Llama-2-70B" not in set(held.quality["model"])
    assert "Llama-2-70B-chat" not in set(held.known_models["model"])
    build_design(held, default_hypothesis)  # still a valid design


# --------------------------------------------------------------------------- ladders


def test_lab_ladder_keeps_one_anchor_and_only_first_party_prices(
    cal_data, cal_design, default_hypothesis
):
    ladders = ho.ladder_holdouts(cal_data, cal_design)
    # Vendor prices one known size (big-175b, the davinci situation) and LabS has no
    # API of its own: neither makes a ladder.
    assert [h.name for h in ladders] == ["ladder-LabM"]
    h = ladders[0]
    assert (h.kind, h.lab, h.anchor) == ("ladder", "LabM", "labm-7b")
    assert set(h.held_out) == {"labm-22b", "labm-22b-base", "labm-moe", "labm-12b"}
    assert set(h.first_party_only) == set(h.held_out)
    assert set(h.families) == {"labm-12b", "labm-22b", "labm-moe"}

    data = ho.holdout_dataset(cal_data, h, "full")
    known = set(data.known_models["model"])
    assert "labm-7b" in known  # the anchor
    assert {"small-7b", "mid-70b", "moe-47b"} <= known  # other labs keep their sizes
    assert not known & set(h.held_out)
    where = {m: set(data.prices.loc[data.prices["model"] == m, "provider"]) for m in h.held_out}
    assert where == {
        "labm-22b": {"LabM"},  # its HostA price is gone
        "labm-moe": {"LabM"},  # its HostB price is gone
        "labm-12b": set(),  # priced only at a reseller: out of the fit
        "labm-22b-base": set(),
    }
    # The anchor keeps its reseller price; nobody else loses one.
    assert set(data.prices.loc[data.prices["model"] == "labm-7b", "provider"]) == {"LabM", "HostA"}
    assert len(data.prices) == len(cal_data.prices) - 3
    assert "labm-22b-base" not in set(data.quality["model"])

    design = ho.holdout_design(cal_data, default_hypothesis, h, "full")
    assert set(design.unknown) == {"closed-x", "closed-y", "labm-22b", "labm-moe"}
    assert np.isfinite(design.known_total[design.models.index("labm-7b")])
    assert "labm-12b" not in design.models
    # The ladder's epochs in the full design are the ones the refit keeps.
    kept = ho.holdout_epochs(cal_data, cal_design, h)
    assert len(kept) == design.n_epochs
    assert set(kept.loc[kept["model"].isin(h.held_out), "provider"]) == {"LabM"}


def test_ladder_no_price_masks_the_ladder(cal_data, cal_design, default_hypothesis):
    h = ho.ladder_holdouts(cal_data, cal_design)[0]
    d = ho.holdout_design(cal_data, default_hypothesis, h, "no_price")
    masked = set(d.epochs.loc[d.price_mask == 0.0, "model"])
    assert masked == {"labm-22b", "labm-moe"}


def _rewrite(path, old, new):
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_ladder_anchor_is_the_earliest_first_party_price(cal_copy, default_hypothesis):
    prices = cal_copy / "prices.csv"
    # labm-moe's own price moved before labm-7b's: it becomes the anchor.
    _rewrite(prices, "labm-moe,LabM,2024-04-01", "labm-moe,LabM,2023-01-01")
    data = load_dataset(cal_copy)
    h = ho.ladder_holdouts(data, build_design(data, default_hypothesis))[0]
    assert h.anchor == "labm-moe"
    assert set(h.held_out) == {"labm-7b", "labm-22b", "labm-22b-base", "labm-12b"}
    # A tie on the date goes to the first name in sort order ("labm-22b" < "labm-7b").
    _rewrite(prices, "labm-moe,LabM,2023-01-01", "labm-moe,LabM,2024-04-01")
    _rewrite(prices, "labm-22b,LabM,2024-06-01", "labm-22b,LabM,2023-09-01")
    data = load_dataset(cal_copy)
    h = ho.ladder_holdouts(data, build_design(data, default_hypothesis))[0]
    assert h.anchor == "labm-22b"


def test_ladder_keeps_every_model_of_the_anchor_size(cal_copy, default_hypothesis):
    # labm-22b made 7B: the lab's own prices now span two sizes (7B twice, 141B/39B);
    # both 7B models stay known, with all their prices.
    _rewrite(cal_copy / "known_models.csv", "labm-22b,labm-22b,22,22", "labm-22b,labm-22b,7,7")
    data = load_dataset(cal_copy)
    h = ho.ladder_holdouts(data, build_design(data, default_hypothesis))[0]
    assert h.anchor == "labm-7b"
    assert set(h.held_out) == {"labm-22b-base", "labm-moe", "labm-12b"}


def test_no_ladder_without_two_first_party_sizes(cal_copy, default_hypothesis):
    # Every LabM model made 7B: one size only, so no ladder.
    km = cal_copy / "known_models.csv"
    _rewrite(km, "labm-22b,labm-22b,22,22", "labm-22b,labm-22b,7,7")
    _rewrite(km, "labm-moe,labm-moe,141,39,,moe", "labm-moe,labm-moe,7,7,,dense")
    data = load_dataset(cal_copy)
    assert ho.ladder_holdouts(data, build_design(data, default_hypothesis)) == []
    # Without labs.csv there are no labs at all.
    (cal_copy / "labs.csv").unlink()
    data = load_dataset(cal_copy)
    assert ho.ladder_holdouts(data, build_design(data, default_hypothesis)) == []


# --------------------------------------------------------------------------- classes


def test_classes_of_held_out_models(cal_data, cal_design):
    hs = _by_name(ho.build_holdouts(cal_data, cal_design))
    ladder = hs["ladder-LabM"]
    ep = ho.holdout_epochs(cal_data, cal_design, ladder)
    # In the ladder its prices are all at LabM: first-party; first priced 2024-04-01.
    assert ho.classify(cal_data, ep, "labm-moe") == {
        "lab": "LabM",
        "architecture": "moe",
        "regime": "first-party",
        "era": "2024",
        "first_price": "2024-04-01",
    }
    # In its family hold-out it also has a reseller price: reseller.
    ep = ho.holdout_epochs(cal_data, cal_design, hs["labm-moe"])
    assert ho.classify(cal_data, ep, "labm-moe")["regime"] == "reseller"
    # labm-7b: first at LabM in 2023, then HostA: mixed is reseller, era 2023.
    ep = ho.holdout_epochs(cal_data, cal_design, hs["labm-7b+small"])
    c = ho.classify(cal_data, ep, "labm-7b")
    assert (c["architecture"], c["regime"], c["era"]) == ("dense", "reseller", "2023")
    # big-175b: only at Vendor, its lab; priced 2022.
    c = ho.classify(cal_data, ep, "big-175b")
    assert (c["lab"], c["regime"], c["era"]) == ("Vendor", "first-party", "2022 and before")
    # small-7b: LabS has no API; reseller.
    assert ho.classify(cal_data, ep, "small-7b")["regime"] == "reseller"


def test_architecture_falls_back_on_sizes(cal_data):
    km = cal_data.known_models.drop(columns=["architecture"])
    data = dataclasses.replace(cal_data, known_models=km)
    assert ho.architecture_of(data, "labm-moe") == "moe"
    assert ho.architecture_of(data, "labm-22b") == "dense"


@pytest.mark.parametrize(
    ("year", "era"),
    [
        (2020, "2022 and before"),
        (2021, "2022 and before"),
        (2022, "2022 and before"),
        (2023, "2023"),
        (2024, "2024"),
        (2025, "2025 and after"),
        (2026, "2025 and after"),
    ],
)
def test_eras(year, era):
    assert ho.era_of(year) == era
    assert ho.era_of(dt.date(year, 6, 1).year) in ho.ERAS


# --------------------------------------------------------------------------- the split


def test_split_of_is_a_fixed_hash():
    # Pinned: the parity of the first byte of sha256(name). These must never change,
    # or results once used to choose priors would later be counted as scores.
    expected = {
        "small": "score",  # 0x81
        "mid": "choose",  # 0x90
        "moe": "score",  # 0x4b
        "big": "choose",  # 0x2a
        "labm-7b": "score",  # 0xe5
        "llama-2-70b": "score",  # 0x93
        "gpt-3-175b": "choose",  # 0x12
    }
    assert {n: ho.split_of(n) for n in expected} == expected


def _fam(name, *families):
    return ho.Holdout(kind="family", name=name, families=families or (name,), held_out=(name,))


def _ladder(lab):
    return ho.Holdout(
        kind="ladder", name=f"ladder-{lab}", families=(), held_out=(lab,), lab=lab, anchor="x"
    )


def test_split_does_not_depend_on_other_holdouts():
    alone = ho.assign_splits([_fam("mid")])
    crowd = ho.assign_splits([_fam("a"), _fam("mid"), _fam("e"), _fam("small")])
    assert alone[0].split == crowd[1].split == "choose"
    assert [h.split for h in crowd] == ["choose", "choose", "score", "score"]
    # Deterministic: the same hold-outs give the same splits, run after run.
    assert ho.assign_splits(crowd) == crowd


def test_merged_holdout_is_choose_if_any_family_is():
    # small (score) + labm-7b (score): score; small (score) + mid (choose): choose.
    assert ho.assign_splits([_fam("labm-7b+small", "labm-7b", "small")])[0].split == "score"
    assert ho.assign_splits([_fam("mid+small", "mid", "small")])[0].split == "choose"


def test_ladders_are_scored_until_there_are_enough():
    few = ho.assign_splits([_ladder("A"), _ladder("B"), _ladder("C"), _fam("mid")])
    assert [h.split for h in few] == ["score", "score", "score", "choose"]
    many = ho.assign_splits([_ladder(x) for x in "ABCD"])
    assert [h.split for h in many] == [ho.split_of(f"ladder-{x}") for x in "ABCD"]


def test_build_holdouts_on_the_fixture(cal_data, cal_design):
    hs = ho.build_holdouts(cal_data, cal_design)
    splits = {h.name: h.split for h in hs}
    assert splits == {
        "big": "choose",
        "labm-12b": "score",
        "labm-22b": "choose",
        "labm-7b+small": "score",
        "labm-moe": "choose",
        "mid": "choose",
        "moe": "score",
        "ladder-LabM": "score",
    }
    assert ho.build_holdouts(cal_data, cal_design) == hs
    assert [h.name for h in ho.build_holdouts(cal_data, cal_design, ["ladder"])] == ["ladder-LabM"]
    assert all(h.kind == "family" for h in ho.build_holdouts(cal_data, cal_design, ["family"]))
    with pytest.raises(ValueError, match="unknown hold-out kind"):
        ho.build_holdouts(cal_data, cal_design, ["nope"])


# --------------------------------------------------------------------------- identity


def test_digest_follows_the_definition_not_the_split():
    h = _ladder("A")
    assert dataclasses.replace(h, split="score").digest() == h.digest()
    assert dataclasses.replace(h, anchor="y").digest() != h.digest()
    assert dataclasses.replace(h, held_out=("A", "B")).digest() != h.digest()
    assert dataclasses.replace(h, first_party_only=("A",)).digest() != h.digest()
    # Order of the lists does not matter.
    two = dataclasses.replace(h, held_out=("A", "B"))
    assert dataclasses.replace(h, held_out=("B", "A")).digest() == two.digest()


def test_json_round_trip_and_family_names(cal_data, cal_design):
    for h in ho.build_holdouts(cal_data, cal_design):
        assert ho.Holdout.from_json(h.to_json()) == h
        assert ho.as_holdout(cal_data, h.to_json()) == h
    h = ho.as_holdout(cal_data, "labm-22b")
    assert (h.kind, h.held_out) == ("family", ("labm-22b", "labm-22b-base"))


def test_select_holdouts_by_name_or_family(cal_data, cal_design):
    hs = ho.build_holdouts(cal_data, cal_design)
    assert [h.name for h in ho.select_holdouts(hs, ["small"])] == ["labm-7b+small"]
    picked = ho.select_holdouts(hs, ["labm-moe"])  # its family hold-out and its ladder
    assert [h.name for h in picked] == ["labm-moe", "ladder-LabM"]
    assert [h.name for h in ho.select_holdouts(hs, ["ladder-LabM"])] == ["ladder-LabM"]
    with pytest.raises(DataError, match="no such hold-out or family with prices: nope"):
        ho.select_holdouts(hs, ["mid", "nope"])


def test_families_that_shaped_a_prior_are_always_chosen():
    # Whatever their hash says, families named as shaping a prior go to "choose".
    scored = [f for f in ("a", "e", "mid", "small") if ho.split_of(f) == "score"]
    assert scored, "the fixture names need at least one hash-scored family"
    out = ho.assign_splits([_fam(f) for f in scored], prior_families=[scored[0]])
    assert out[0].split == "choose"
    assert all(h.split == "score" for h in out[1:])
