"""The site bundle's operating point: the threshold fitted on out-of-fold scores is matched to the final network
by the share of local X-rays flagged, and the default rule is the site target (sensitivity 0.90) unless
``--parent-rule`` or ``--target-sensitivity`` says otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from pneumo.cli import build_parser
from pneumo.commands.adapt import _config
from pneumo.training.adaptation.config import DEFAULT_SITE_SENSITIVITY, AdaptConfig
from pneumo.training.adaptation.crossfit import matched_threshold


def test_matched_threshold_flags_the_same_xrays_on_a_shifted_network() -> None:
    rng = np.random.default_rng(0)
    reference = rng.uniform(0, 1, 200)
    # The final network scores every X-ray higher, in the same order: at the reference threshold it flags more.
    final = np.sqrt(reference)
    threshold = 0.4
    assert (final >= threshold).sum() > (reference >= threshold).sum()
    matched = matched_threshold(reference, threshold, final)
    np.testing.assert_array_equal(final >= matched, reference >= threshold)
    assert matched == pytest.approx(np.sqrt(reference[reference >= threshold].min()))


def test_matched_threshold_keeps_the_share_when_the_order_changes() -> None:
    rng = np.random.default_rng(1)
    reference, final = rng.uniform(0, 1, 101), rng.uniform(0.2, 1, 101)
    matched = matched_threshold(reference, 0.7, final)
    assert (final >= matched).sum() == (reference >= 0.7).sum()


def test_matched_threshold_edge_cases_are_explicit() -> None:
    scores = np.array([0.2, 0.3, 0.9])
    assert matched_threshold(np.array([0.1, 0.2, 0.3]), 0.5, scores) == 0.5  # flags nothing: unchanged
    assert matched_threshold(np.array([0.6, 0.7, 0.8]), 0.5, scores) == 0.2  # flags all: the lowest score
    with pytest.raises(ValueError, match="scored twice"):
        matched_threshold(np.array([0.1, 0.2]), 0.5, scores)


def _parsed(*extra: str) -> AdaptConfig:
    args = build_parser().parse_args(["adapt", "--model", "default", "--manifest", "local.csv", "--out", "site",
                                      "--no-finetune", *extra])
    return _config(args)


def test_default_rule_is_the_site_target_and_the_parent_rule_is_a_choice() -> None:
    assert DEFAULT_SITE_SENSITIVITY == 0.90
    assert _parsed().target_sensitivity == DEFAULT_SITE_SENSITIVITY
    assert _parsed("--target-sensitivity", "0.95").target_sensitivity == 0.95
    assert _parsed("--parent-rule").target_sensitivity is None  # adapt then reads the parent's stored rule
    with pytest.raises(SystemExit):
        _parsed("--parent-rule", "--target-sensitivity", "0.95")


def _finetuning(*extra: str) -> AdaptConfig:
    args = build_parser().parse_args(["adapt", "--model", "default", "--manifest", "local.csv", "--out", "site",
                                      *extra])
    return _config(args)


def test_issue_command_fine_tunes_without_replay_unless_the_parents_images_are_given() -> None:
    # The command a site runs as documented (no --replay-data) must be accepted, not refused for lack of them.
    assert _finetuning().finetune.replay_share == 0.0
    assert _finetuning("--replay-data", "kermany").finetune.replay_share == 0.25
    assert _finetuning("--replay-data", "kermany", "--replay-share", "0.5").finetune.replay_share == 0.5
    with pytest.raises(ValueError, match="--replay-data ROOT"):
        _finetuning("--replay-share", "0.25")  # asked for replay, gave no images
