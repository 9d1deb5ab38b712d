"""GET /api/v1/model serves the card that sits in the bundle it runs."""

from __future__ import annotations

from pneumo.evaluation.model_card import write_model_card


def test_the_bundle_s_own_card_is_served(make_client, tiny_bundle):
    card = write_model_card(tiny_bundle, "tiny")
    body = make_client().get("/api/v1/model").json()
    assert body["model_card"] == card.read_text(encoding="utf-8")
    assert body["model_card"].startswith("# Model card: `tiny`")
