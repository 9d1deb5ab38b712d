"""The trainer on a tiny synthetic Kermany tree: learning happens, checkpoints are complete, reloadable
and resumable, and a crash leaves a loadable model behind."""

from __future__ import annotations

import copy
import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pneumo.bundle import read_meta
from pneumo.inference.loading import load_bundle
from pneumo.config import AugmentConfig, DataConfig, ModelConfig, PreprocessConfig, RunConfig, TrainConfig
from pneumo.data.augment import BatchPreprocess
from pneumo.data.cache import ImageCache
from pneumo.data.dataset import XrayDataset
from pneumo.data.records import scan_kermany
from pneumo.models import create_model
from pneumo.training import checkpoint, fit, recovery, trainer, validation
from pneumo.training.losses import ClassificationLoss
from pneumo.training.loop import train_one_epoch
from pneumo.training.state import STATE_FILE


def tiny_config(root: Path, cache: Path, **train) -> RunConfig:
    options = dict(epochs=2, max_steps_per_epoch=2, progress=False, lr=3e-3, seed=0)
    options.update(train)
    return RunConfig(
        data=DataConfig(root=str(root), val_fraction=0.25, batch_size=8, num_workers=0, cache_dir=str(cache)),
        preprocess=PreprocessConfig(image_size=32), model=ModelConfig(arch="simple_cnn"),
        train=TrainConfig(**options))


def history(run: Path) -> list[dict]:
    with (run / "history.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_loss_falls_on_a_fixed_batch(kermany_tree: Path, tmp_path: Path) -> None:
    cfg = PreprocessConfig(image_size=32)
    records = [r for r in scan_kermany(kermany_tree) if r.split == "train"][:16]
    dataset = XrayDataset(records, ImageCache([r.path for r in records], cfg, tmp_path / "c"))
    batch = {"image": torch.stack([dataset[i]["image"] for i in range(16)]),
             "target": torch.tensor(dataset.targets)}
    torch.manual_seed(0)
    model = create_model("simple_cnn")
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = ClassificationLoss(2)
    prep = BatchPreprocess(cfg)
    losses = [train_one_epoch(model, [batch] * 5, prep, loss_fn, optimizer, torch.device("cpu")) for _ in range(3)]
    assert losses[2] < 0.5 * losses[0], losses


def test_fit_writes_reloadable_best_and_last(kermany_tree: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    probe = torch.randn(3, 1, 32, 32)
    outputs: dict[str, torch.Tensor] = {}
    save = checkpoint.save_bundle

    def recording_save(directory, model, meta, extra_files=None):
        with torch.no_grad():  # the model as it is written: eval mode, right after validation
            outputs[Path(directory).name] = model(probe).clone()
        return save(directory, model, meta, extra_files)

    monkeypatch.setattr(checkpoint, "save_bundle", recording_save)
    run = tmp_path / "run"
    cfg = tiny_config(kermany_tree, tmp_path / "cache")
    best = fit(cfg, run)
    assert best == run / "best"
    for name in ("best", "last"):
        model, meta, _ = load_bundle(run / name)
        with torch.no_grad():
            torch.testing.assert_close(model(probe), outputs[name], rtol=0, atol=0)
        assert meta.arch == "simple_cnn" and meta.classes == 2 and meta.class_names == ["NORMAL", "PNEUMONIA"]
        assert meta.preprocess == cfg.preprocess and meta.training["config"] == cfg.to_dict()
        assert meta.metrics["split"] == "val" and meta.data_fingerprint
    assert (run / "last" / STATE_FILE).is_file()
    rows = history(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(float(r["train_loss"]) > 0 and math.isfinite(float(r["val_loss"])) for r in rows)
    assert (run / "best" / "history.csv").read_text() == (run / "history.csv").read_text()
    assert RunConfig.from_dict(json.loads((run / "config.json").read_text())) == cfg
    log = (run / "train.log").read_text()
    assert "epoch 1/2" in log and "epoch 2/2" in log
    _, last_meta = read_meta(run / "last")
    assert last_meta.training["epoch"] == 2


def test_resume_continues_epochs_and_optimizer_state(kermany_tree: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    cfg = tiny_config(kermany_tree, tmp_path / "cache", epochs=1)
    fit(cfg, run)
    saved = torch.load(run / "last" / STATE_FILE, weights_only=True)
    assert saved["progress"]["epoch"] == 1
    restored = {}
    load_state = recovery.load_state

    def capturing_load_state(path, optimizer, scheduler):
        progress = load_state(path, optimizer, scheduler)
        restored["optimizer"] = copy.deepcopy(optimizer.state_dict())
        restored["progress"] = copy.deepcopy(progress)
        return progress

    monkeypatch.setattr(recovery, "load_state", capturing_load_state)
    cfg.train.epochs = 3
    fit(cfg, run, resume=True)
    assert restored["progress"].epoch == 1
    state, want = restored["optimizer"]["state"], saved["optimizer"]["state"]
    assert state.keys() == want.keys() and len(state) > 0
    for index in want:
        for name in ("step", "exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(state[index][name], want[index][name], rtol=0, atol=0)
    assert [int(r["epoch"]) for r in history(run)] == [1, 2, 3]
    final = torch.load(run / "last" / STATE_FILE, weights_only=True)
    assert final["progress"]["epoch"] == 3
    # Two steps per epoch, counted from the restored state: 3 epochs = 6 optimizer steps, not 4.
    assert float(final["optimizer"]["state"][0]["step"]) == 6
    assert read_meta(run / "last")[1].training["epoch"] == 3


def test_resume_reads_a_state_written_before_best_score_was_named(kermany_tree: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = tiny_config(kermany_tree, tmp_path / "cache", epochs=1)
    fit(cfg, run)
    state_file = run / "last" / STATE_FILE
    saved = torch.load(state_file, weights_only=True)
    saved["progress"]["best_auc"] = saved["progress"].pop("best_score")  # as an older pneumo wrote it
    torch.save(saved, state_file)
    cfg.train.epochs = 2
    fit(cfg, run, resume=True)
    final = torch.load(state_file, weights_only=True)["progress"]
    assert final["epoch"] == 2 and "best_auc" not in final
    assert final["best_score"] >= saved["progress"]["best_auc"]


def test_resume_refuses_a_run_whose_validation_split_has_changed(kermany_tree: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = tiny_config(kermany_tree, tmp_path / "cache", epochs=1)
    fit(cfg, run)
    cfg.train.epochs = 2
    cfg.data.split_seed += 1  # another patient draw, as a changed split rule would give
    with pytest.raises(ValueError, match="validation split is not the one"):
        fit(cfg, run, resume=True)


def test_crash_mid_training_leaves_a_loadable_last(kermany_tree: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = trainer.train_one_epoch

    def crashing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated power cut")
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_one_epoch", crashing)
    run = tmp_path / "run"
    cfg = tiny_config(kermany_tree, tmp_path / "cache", epochs=3)
    with pytest.raises(RuntimeError, match="power cut"):
        fit(cfg, run)
    model, meta, _ = load_bundle(run / "last")
    assert meta.training["epoch"] == 1 and [int(r["epoch"]) for r in history(run)] == [1]
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no half-written bundle left
    monkeypatch.setattr(trainer, "train_one_epoch", real)
    fit(cfg, run, resume=True)
    assert [int(r["epoch"]) for r in history(run)] == [1, 2, 3]


def test_crash_between_history_and_checkpoint_keeps_one_row_per_epoch(kermany_tree: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    real = checkpoint.save_last

    def crash_at_epoch_2(run_dir, model, meta, progress, optimizer, scheduler, training_weights):
        if progress.epoch == 2:
            raise KeyboardInterrupt
        return real(run_dir, model, meta, progress, optimizer, scheduler, training_weights)

    monkeypatch.setattr(checkpoint, "save_last", crash_at_epoch_2)
    run = tmp_path / "run"
    cfg = tiny_config(kermany_tree, tmp_path / "cache", epochs=3)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, run)
    assert [int(r["epoch"]) for r in history(run)] == [1, 2]  # epoch 2 was logged, not checkpointed
    monkeypatch.setattr(checkpoint, "save_last", real)
    fit(cfg, run, resume=True)
    assert [int(r["epoch"]) for r in history(run)] == [1, 2, 3]


def test_three_class_training(kermany_tree: Path, tmp_path: Path) -> None:
    cfg = tiny_config(kermany_tree, tmp_path / "cache", epochs=1)
    cfg.data.classes = 3
    best = fit(cfg, tmp_path / "run")
    model, meta, _ = load_bundle(best)
    assert meta.classes == 3 and meta.class_names == ["NORMAL", "BACTERIAL", "VIRAL"]
    with torch.no_grad():
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 3)
    assert math.isfinite(meta.metrics["auc"])


def test_best_exists_even_when_the_first_score_is_poor(kermany_tree: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A one-class validation set has no AUC; the score is -val_loss, which can be below -1."""
    monkeypatch.setattr(validation, "validation_metrics", lambda *args: (5.0, float("nan")))
    best = fit(tiny_config(kermany_tree, tmp_path / "cache", epochs=1), tmp_path / "run")
    load_bundle(best)


def test_unreadable_training_image_is_skipped(kermany_tree: Path, tmp_path: Path) -> None:
    bad = kermany_tree / "train" / "NORMAL" / "IM-0050-0001.jpeg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    run = tmp_path / "run"
    fit(tiny_config(kermany_tree, tmp_path / "cache", epochs=1), run)
    _, meta = read_meta(run / "best")
    assert meta.training["skipped"] == 1
    assert meta.training["n_train"] + meta.training["n_val"] == 40  # 41 files, one unreadable
    assert str(bad) in (run / "train.log").read_text()


def test_training_is_seeded(kermany_tree: Path, tmp_path: Path) -> None:
    states = []
    for name in ("a", "b"):
        fit(tiny_config(kermany_tree, tmp_path / "cache", epochs=1), tmp_path / name)
        states.append(load_bundle(tmp_path / name / "last")[0].state_dict())
    for key in states[0]:
        torch.testing.assert_close(states[0][key], states[1][key], rtol=0, atol=0)


def test_variants_run(kermany_tree: Path, tmp_path: Path) -> None:
    """Focal loss, cosine schedule, weighted sampler, frozen backbone and label smoothing together."""
    cfg = tiny_config(kermany_tree, tmp_path / "cache", epochs=2, loss="focal", scheduler="cosine",
                      label_smoothing=0.1, optimizer="adam")
    cfg.data.balance = "sampler"
    cfg.model.freeze_backbone = True
    cfg.augment = AugmentConfig(horizontal_flip=True)
    fit(cfg, tmp_path / "run")
    model, _, _ = load_bundle(tmp_path / "run" / "last")
    state = torch.load(tmp_path / "run" / "last" / STATE_FILE, weights_only=True)
    optimised = len(state["optimizer"]["param_groups"][0]["params"])
    assert optimised == len(list(model.classifier.parameters()))  # the frozen convolutions are not optimised
    assert np.isfinite([float(r["val_loss"]) for r in history(tmp_path / "run")]).all()


def test_early_stopping(kermany_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scores = iter([0.9, 0.8, 0.7, 0.6, 0.5])
    monkeypatch.setattr(validation, "validation_metrics", lambda *args: (0.5, next(scores)))
    run = tmp_path / "run"
    cfg = tiny_config(kermany_tree, tmp_path / "cache", epochs=5, early_stopping_patience=2)
    fit(cfg, run)
    assert [int(r["epoch"]) for r in history(run)] == [1, 2, 3]
    assert read_meta(run / "best")[1].training["epoch"] == 1
    fit(cfg, run, resume=True)  # a finished run has nothing left to do
    assert len(history(run)) == 3


def test_resume_needs_a_state(tmp_path: Path, kermany_tree: Path) -> None:
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        fit(tiny_config(kermany_tree, tmp_path / "cache"), tmp_path / "nothing", resume=True)


def test_ema_is_saved_and_onecycle_steps_per_batch(kermany_tree: Path, tmp_path: Path) -> None:
    """The EMA is what is saved (the raw weights sit in the train state), norm and bias go undecayed,
    and the one-cycle schedule steps every batch."""
    options = dict(epochs=3, scheduler="onecycle", ema_decay=0.9, decay_norm_and_bias=False, weight_decay=0.05)
    split = tmp_path / "split"
    first = fit(tiny_config(kermany_tree, tmp_path / "cache", **options), split)
    assert first == split / "best"
    state = torch.load(split / "last" / STATE_FILE, weights_only=True)
    raw = state["training_weights"]
    ema, _, _ = load_bundle(split / "last")
    differs = [k for k, v in ema.state_dict().items() if v.is_floating_point() and not torch.equal(v, raw[k])]
    assert differs, "the saved bundle should hold the average, not the raw weights"
    groups = state["optimizer"]["param_groups"]
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]
    assert float(state["scheduler"]["last_epoch"]) == 3 * 2  # stepped per batch: 3 epochs of 2 batches


def test_resumed_ema_run_trains_on_from_the_raw_weights(kermany_tree: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """After a crash, training continues from the raw weights of the last epoch, not from the average
    saved in last/ (which would silently restart the EMA from itself)."""
    options = dict(epochs=3, scheduler="onecycle", ema_decay=0.8, deterministic=True)
    real = trainer.train_one_epoch
    entering: dict[str, dict[str, torch.Tensor]] = {}

    def record(run_name: str, crash: bool):
        calls = {"n": 0}

        def wrapped(model, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 3 or (run_name == "resumed-after" and calls["n"] == 1):
                entering[run_name] = copy.deepcopy(model.state_dict())
                if crash:
                    raise KeyboardInterrupt
            return real(model, *args, **kwargs)
        return wrapped

    monkeypatch.setattr(trainer, "train_one_epoch", record("straight", crash=False))
    fit(tiny_config(kermany_tree, tmp_path / "cache", **options), tmp_path / "straight")
    monkeypatch.setattr(trainer, "train_one_epoch", record("resumed", crash=True))
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_config(kermany_tree, tmp_path / "cache", **options), tmp_path / "resumed")
    monkeypatch.setattr(trainer, "train_one_epoch", record("resumed-after", crash=False))
    fit(tiny_config(kermany_tree, tmp_path / "cache", **options), tmp_path / "resumed", resume=True)
    for key, value in entering["straight"].items():
        torch.testing.assert_close(entering["resumed-after"][key], value, rtol=0, atol=0)
    assert [int(r["epoch"]) for r in history(tmp_path / "resumed")] == [1, 2, 3]


def test_resume_refuses_flags_it_would_ignore(kermany_tree: Path, tmp_path: Path) -> None:
    from pneumo.cli import main

    fit(tiny_config(kermany_tree, tmp_path / "cache", epochs=1, scheduler="onecycle"), tmp_path / "run")
    with pytest.raises(SystemExit, match="--lr"):
        main(["train", "--resume", str(tmp_path / "run"), "--lr", "0.1"])
    with pytest.raises(SystemExit, match="onecycle"):
        main(["train", "--resume", str(tmp_path / "run"), "--epochs", "4"])


def test_gamma_augmentation_changes_tone_but_not_range() -> None:
    pixels = torch.linspace(0, 255, 64 * 64).reshape(1, 1, 64, 64).repeat(8, 1, 1, 1).to(torch.uint8)
    cfg = PreprocessConfig(image_size=64)
    prep = BatchPreprocess(cfg, AugmentConfig(brightness=0.0, contrast=0.0, gamma=0.4)).train()
    torch.manual_seed(0)
    out = prep(pixels)
    plain = BatchPreprocess(cfg)(pixels)
    low, high = -cfg.mean / cfg.std, (1 - cfg.mean) / cfg.std
    assert out.min() >= low - 1e-6 and out.max() <= high + 1e-6
    assert not torch.allclose(out, plain)
    # Gamma keeps black black and white white: only the tone curve in between moves.
    torch.testing.assert_close(out[:, :, 0, 0], plain[:, :, 0, 0])
    torch.testing.assert_close(out[:, :, -1, -1], plain[:, :, -1, -1])
    assert len({round(float(v), 4) for v in out[:, 0, 32, 32]}) > 1  # a different curve per image


def test_recompute_batchnorm_measures_the_given_batches_and_restores_momentum() -> None:
    from pneumo.training.loop import recompute_batchnorm

    cfg = PreprocessConfig(image_size=16)
    model = torch.nn.Sequential(torch.nn.BatchNorm2d(1, momentum=0.01))
    model[0].running_mean.fill_(5.0)  # stale statistics, as an EMA of buffers leaves them
    batches = [{"image": torch.full((4, 1, 8, 8), value, dtype=torch.uint8)} for value in (51, 153, 255)]
    recompute_batchnorm(model.eval(), batches, BatchPreprocess(cfg), torch.device("cpu"), batches=2)
    want = np.mean([(51 / 255 - cfg.mean) / cfg.std, (153 / 255 - cfg.mean) / cfg.std])  # the third is not used
    assert float(model[0].running_mean) == pytest.approx(want, abs=1e-6)
    assert model[0].momentum == 0.01 and not model.training
