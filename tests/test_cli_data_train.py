"""``pneumo data summary`` and ``pneumo train`` end to end, called the way a user calls them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from pneumo.bundle import read_meta
from pneumo.inference.loading import load_bundle
from pneumo.cli import build_parser, main
from pneumo.commands.train import build_config


@pytest.fixture
def messy_tree(kermany_tree: Path) -> dict[str, Path]:
    """The tiny tree plus one corrupt file and one training image copied into test (leakage)."""
    corrupt = kermany_tree / "train" / "PNEUMONIA" / "person77_bacteria_1.jpeg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 30)
    source = kermany_tree / "train" / "NORMAL" / "IM-0003-0001.jpeg"
    leaked = kermany_tree / "test" / "NORMAL" / "IM-0999-0001.jpeg"
    leaked.write_bytes(source.read_bytes())
    return {"root": kermany_tree, "corrupt": corrupt, "source": source, "leaked": leaked}


def test_data_summary_table(messy_tree: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "summary", str(messy_tree["root"])]) == 0
    out = capsys.readouterr().out
    lines = {tuple(line.split()[:2]): line for line in out.splitlines() if line.startswith(("train", "test"))}
    # columns: split class images patients bacterial viral size corrupt
    cells = {key: line.replace(" px", "").split()[2:] for key, line in lines.items()}
    assert cells[("train", "NORMAL")] == ["20", "10", "0", "0", "40-48", "0"]
    assert cells[("train", "PNEUMONIA")] == ["21", "11", "11", "10", "40-48", "1"]
    assert cells[("test", "NORMAL")] == ["7", "4", "0", "0", "40-48", "0"]
    assert cells[("test", "PNEUMONIA")] == ["6", "3", "4", "2", "40-48", "0"]
    assert "corrupt or unreadable files: 1" in out and str(messy_tree["corrupt"]) in out
    assert "exact-duplicate groups: 1 (2 files)" in out
    assert "cross-split leakage: 1 duplicate groups" in out
    assert str(messy_tree["leaked"]) in out and str(messy_tree["source"]) in out


def test_data_summary_json(messy_tree: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "summary", str(messy_tree["root"]), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    groups = {(g["split"], g["class"]): g for g in report["groups"]}
    assert groups[("train", "NORMAL")]["images"] == 20 and groups[("test", "PNEUMONIA")]["images"] == 6
    assert (groups[("train", "NORMAL")]["min_side"], groups[("train", "NORMAL")]["max_side"]) == (40, 48)
    assert [c["path"] for c in report["corrupt"]] == [str(messy_tree["corrupt"])]
    assert [sorted(g) for g in report["leaking_duplicates"]] == [sorted([str(messy_tree["source"]),
                                                                         str(messy_tree["leaked"])])]
    assert report["leaking_patients"] == {}  # the copy has a new name, so only the hash reveals it


def test_data_summary_manifest_and_errors(kermany_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    images = sorted((kermany_tree / "test" / "NORMAL").iterdir())[:2]
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\n" + "".join(f"{p},NORMAL\n" for p in images))
    assert main(["data", "summary", "--manifest", str(manifest)]) == 0
    assert "(none)   NORMAL" in capsys.readouterr().out
    assert main(["data", "summary", str(tmp_path / "missing")]) == 2
    assert "not a directory" in capsys.readouterr().err


def _train_args(root: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(root), "--arch", "simple_cnn", "--image-size", "32", "--batch-size", "8",
            "--workers", "0", "--max-steps-per-epoch", "2", "--cache-dir", str(tmp_path / "cache"), "--no-progress",
            *extra]


def test_train_cli_end_to_end_and_resume(kermany_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert main(_train_args(kermany_tree, tmp_path, "--epochs", "1", "--out", str(run), "--lr", "0.002")) == 0
    assert f"best model bundle: {run / 'best'}" in capsys.readouterr().out
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["arch"] == "simple_cnn" and config["preprocess"]["image_size"] == 32
    assert config["train"]["lr"] == 0.002 and config["data"]["root"] == str(kermany_tree)
    model, meta, _ = load_bundle(run)
    assert meta.preprocess.image_size == 32
    with torch.no_grad():
        assert model(torch.randn(1, 1, 32, 32)).shape == (1, 1)
    # The same --out again is refused rather than overwritten.
    with pytest.raises(SystemExit, match="already holds a run; use --resume"):
        main(_train_args(kermany_tree, tmp_path, "--epochs", "1", "--out", str(run)))
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 0
    with (run / "history.csv").open(newline="") as handle:
        assert [int(r["epoch"]) for r in csv.DictReader(handle)] == [1, 2]
    assert read_meta(run / "last")[1].training["epoch"] == 2


def test_train_cli_config_file_and_flags(kermany_tree: Path, tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("data:\n  classes: 3\n  val_fraction: 0.25\ntrain:\n  epochs: 7\n  lr: 0.01\n"
                      "augment:\n  horizontal_flip: true\n")
    args = build_parser().parse_args(_train_args(kermany_tree, tmp_path, "--config", str(config), "--epochs", "1",
                                                 "--out", str(tmp_path / "run"), "--freeze-backbone",
                                                 "--init-from", "default"))
    cfg = build_config(args)
    assert cfg.model.init_from == "default"
    assert cfg.data.classes == 3 and cfg.data.val_fraction == 0.25 and cfg.augment.horizontal_flip
    assert cfg.train.epochs == 1 and cfg.train.lr == 0.01  # flags override the file, the file the defaults
    assert cfg.model.freeze_backbone and cfg.model.arch == "simple_cnn" and cfg.train.progress is False
    config.write_text("train:\n  epoch: 3\n")
    with pytest.raises(ValueError, match=r"unknown TrainConfig keys \['epoch'\]"):
        build_config(build_parser().parse_args(["train", "--config", str(config)]))


def test_set_changes_one_value_of_a_config_file(tmp_path: Path) -> None:
    """An ablation is the shipped recipe with one value changed, not a second copy of the file."""
    recipe = Path(__file__).parents[1] / "configs" / "lungs.yaml"
    plain = build_config(build_parser().parse_args(["train", "--config", str(recipe)]))
    crop = "no" if plain.preprocess.thorax_crop else "yes"
    args = build_parser().parse_args(["train", "--config", str(recipe), "--set", "preprocess.clahe=true",
                                      "--set", f"preprocess.thorax_crop={crop}", "--set", "train.lr=0.001",
                                      "--lr", "0.003"])
    changed = build_config(args)
    assert changed.preprocess.clahe and not plain.preprocess.clahe
    assert changed.preprocess.thorax_crop != plain.preprocess.thorax_crop
    assert changed.train.lr == 0.003  # a flag wins over --set
    changed.preprocess.clahe, changed.preprocess.thorax_crop = False, plain.preprocess.thorax_crop
    changed.train.lr = plain.train.lr
    assert changed.to_dict() == plain.to_dict()  # nothing else moved
    for bad, message in (("preprocess.clahe", "SECTION.NAME=VALUE"), ("clahe=true", "SECTION.NAME=VALUE"),
                         ("prepro.clahe=true", "no config section 'prepro'"),
                         ("preprocess.clahee=true", r"unknown PreprocessConfig keys \['clahee'\]"),
                         ("preprocess.clahe=maybe", "not a boolean")):
        with pytest.raises(ValueError, match=message):
            build_config(build_parser().parse_args(["train", "--config", str(recipe), "--set", bad]))
    with pytest.raises(SystemExit, match="not --set"):  # a resumed run keeps its saved config
        main(["train", "--resume", str(tmp_path / "run"), "--set", "train.lr=0.1"])


def test_train_cli_errors(kermany_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit, match="--out RUN_DIR is required"):
        main(["train", "--data", str(kermany_tree)])
    with pytest.raises(SystemExit, match="give --data ROOT or --manifest"):
        main(["train", "--out", str(tmp_path / "r")])
    # Checked when the command runs (the registry needs torch, which `pneumo --help` must not): exit 2, the names.
    assert main(["train", "--arch", "alexnet", "--data", str(kermany_tree), "--out", str(tmp_path / "r")]) == 2
    assert "unknown --arch 'alexnet'; choose one of ['densenet121'" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    assert "cannot resume" in capsys.readouterr().err


def test_train_help_shows_defaults(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for flag in ("--data", "--arch", "--image-size", "--epochs", "--out", "--classes", "--config", "--pretrained",
                 "--resume", "--freeze-backbone", "--finetune-last"):
        assert flag in text
