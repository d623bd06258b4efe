"""The contract every chapter passes (``docs/architecture.md``, "The cache rule" and "How to add").

A chapter's compute half (``rs_repro.chapters.<stem>.compute``) states its rules, a pure ``plan(values)`` and
its unit functions; its page half (``page``) turns the tables into the page and the typed record. For every
chapter: the rules refuse an empty grid and name the parameter; ``plan`` reads no data, loads no model and
gives the same units on every call; the code of every unit (its key) reaches no page, no plot, no prose, no
report module and no claim, so editing those recomputes nothing, while editing an attack recomputes exactly
the units that run its code; the record decodes with its schema.
"""

from __future__ import annotations

import importlib
import json

import nbformat
import pytest
from conftest import plan_units

from rs_repro import data, models
from rs_repro.chapters import common
from rs_repro.pipeline import cache, engine, parameters, paths
from rs_repro.report import measurements

STEMS = [stem for stem in parameters.chapters() if parameters.compute_module(stem)]
#: Grids a chapter accepts empty, by design: Fig. 4 chooses its noise levels from its sweep when given none;
#: an empty grid of the adaptive chapter leaves one of its optional parts out (the repeats, the input-hash
#: seeding, the hidden noise), and an empty repeat_ns runs the repeats at the smallest n.
EMPTY_ALLOWED = {("fig4_certification", "sigmas"),
                 *(("adaptive_attacks", name) for name in ("repeat_attacks", "scaled_attacks", "hash_attacks",
                                                           "hash_repeats", "hidden_laws", "repeat_ns"))}
#: Package parts the code of no unit may read: presentation, not computation.
PRESENTATION = ("rs_repro.report", "rs_repro.claims")


def _compute(stem: str):
    return importlib.import_module(f"rs_repro.chapters.{stem}.compute")


def _smoke(stem: str) -> dict:
    return parameters.resolve_device(parameters.profile_values(stem, "smoke"))


def test_every_chapter_but_the_claims_has_two_halves():
    assert set(STEMS) == set(parameters.chapters()) - {"claims"}
    for stem in STEMS:
        assert (paths.PACKAGE / "chapters" / stem / "page.py").is_file()
    assert not (paths.PACKAGE / "experiments").exists()


@pytest.mark.parametrize("stem", STEMS)
def test_the_rules_refuse_an_empty_grid_and_name_it(stem):
    values = _smoke(stem)
    grids = [name for name, p in parameters.parameters(stem).items()
             if p.annotation.startswith("list[") and (stem, name) not in EMPTY_ALLOWED]
    assert grids, f"{stem} has no grid parameter"
    for name in grids:
        with pytest.raises(ValueError, match=f"{name}="):
            _compute(stem).check_parameters({**values, name: []})


def _refuse(*args, **kwargs):
    raise AssertionError("plan(values) must not read data or load a model")


@pytest.mark.parametrize("stem", STEMS)
def test_plan_is_pure_and_deterministic(stem, monkeypatch):
    values = _smoke(stem)
    for module, name in ((data, "load_dataset"), (models, "load_model"), (models, "trained_model")):
        monkeypatch.setattr(module, name, _refuse)
    plans = [_compute(stem).plan(values) for _ in range(2)]
    assert plans[0] and all(isinstance(stage, engine.Stage) for stage in plans[0])
    assert [s.name for s in plans[0]] == [s.name for s in plans[1]]
    first = [[(u.id, u.function, dict(u.arguments), u.code) for u in plan[0].units({})] for plan in plans]
    assert first[0] and first[0] == first[1]


@pytest.mark.parametrize("stem", STEMS)
def test_the_compute_half_reads_no_page_no_report_no_other_chapter(stem):
    module = parameters.compute_module(stem)
    read = set(cache.closure([module]))
    assert not {m for m in read if m.startswith(PRESENTATION) or m.endswith(".page")}
    assert not {m for m in read if m.startswith("rs_repro.chapters.") and m.endswith(".compute")} - {module}


@pytest.fixture(scope="module")
def smoke_units(smoke_tables):
    """Every unit of every chapter's smoke plan, by (chapter, unit id)."""
    return {(stem, u.id): u for stem, (values, tables) in smoke_tables.items() for u in plan_units(stem, values, tables)}


def _attack(unit: engine.Unit) -> str | None:
    """The decision-based attack a unit runs (Fig. 5's ``attack``, the adaptive chapter's ``attacker``), if any."""
    return unit.arguments.get("attack") or (unit.arguments.get("attacker") or {}).get("attack")


def test_every_unit_reads_no_presentation_and_an_attack_is_read_by_its_units_only(smoke_units):
    hsja_readers = set()
    for (stem, uid), unit in smoke_units.items():
        read = set(cache.closure(unit.code))
        assert not {m for m in read if m.startswith(PRESENTATION) or m.endswith(".page")}, (stem, uid)
        if "rs_repro.attacks.hsja" in read:
            hsja_readers.add((stem, uid))
    # editing attacks/hsja.py recomputes the HSJA units (PopSkipJump runs HSJA's steps, the normal vectors'
    # estimates are HSJA's) and nothing else
    expected = {(stem, uid) for (stem, uid), unit in smoke_units.items()
                if _attack(unit) in ("HSJA", "PopSkipJump") or (stem == "normal_vectors" and uid.startswith("image-"))}
    assert expected and hsja_readers == expected
    # an attack is imported by name (rs_repro.chapters.common.attack_function): its units name its module
    for (stem, uid), unit in smoke_units.items():
        if _attack(unit):
            assert common.attack_module(_attack(unit)) in unit.code, (stem, uid)


def test_a_page_reports_what_its_compute_step_did(smoke_book, smoke_tables):
    _, pages, _ = smoke_book
    for stem, (_, tables) in smoke_tables.items():
        provenance = nbformat.read(pages[stem], as_version=4).metadata["rs_repro"]
        # a fresh build: the compute step computed every unit of the plan, the page only read them
        assert provenance["cache"] == {"hits": 0, "misses": len(tables), "damaged": 0}, stem
        assert provenance["wall_s"] > 0


@pytest.mark.parametrize("stem", sorted(set(STEMS) & set(measurements.SCHEMA)))
def test_the_record_decodes_with_its_schema(stem, smoke_book):
    root, _, _ = smoke_book
    payload = json.loads((root / "build" / "results" / stem / "measurements" / "smoke.json").read_text())
    assert type(measurements.decode(stem, payload)) is measurements.SCHEMA[stem]
