"""Each shipped bundle carries its own card, rendered from its bundle.json: the committed cards are what the
bundles they sit in render to (so they cannot describe another bundle or go stale unnoticed), no two are the
same, and docs/MODEL_CARD.md (the shared recipe) is not a copy of either."""

from __future__ import annotations

from pathlib import Path

import pytest

from pneumo.bundle import read_document, shipped_models
from pneumo.evaluation.model_card import CARD_FILE, render_model_card, write_model_card

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["default", "default-3class"])
def test_a_shipped_card_is_its_own_bundle_rendered(name):
    directory = shipped_models()[name]
    document = read_document(directory)
    card = (directory / CARD_FILE).read_text(encoding="utf-8")
    assert card == render_model_card(name, document), (
        f"{directory / CARD_FILE} is stale: run scripts/ship_models.sh's card step for {name}")
    assert document["files"]["model.safetensors"] in card
    assert f"{document['meta']['threshold']:.4f}" in card
    assert "not a diagnosis" in card


def test_no_two_cards_are_copies():
    cards = [(directory / CARD_FILE).read_text(encoding="utf-8") for directory in shipped_models().values()]
    cards.append((ROOT / "docs" / "MODEL_CARD.md").read_text(encoding="utf-8"))
    assert len(set(cards)) == len(cards)


def test_a_bundle_without_calibration_or_gate_says_so(tiny_bundle):
    card = write_model_card(tiny_bundle, "tiny").read_text(encoding="utf-8")
    assert card.startswith("# Model card: `tiny`")
    assert "Not calibrated on validation data" in card
    assert "None: every image is scored" in card
    assert "simple_cnn" in card and "NORMAL / PNEUMONIA" in card
