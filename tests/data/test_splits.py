"""Patient-level splits (no patient on both sides, stratified, seeded), split selection and duplicates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pneumo.config import DataConfig
from pneumo.data.records import ImageRecord, scan_kermany
from pneumo.data.selection import fingerprint, select_split, training_splits
from pneumo.data.splits import find_duplicates, patients_in_both, split_by_patient, split_temporal, temporal_position


def _records(seed: int, patients: int = 120) -> list[ImageRecord]:
    """Kermany-like records: ~1:3 normal:pneumonia patients, 1-4 images each, bacterial and viral."""
    rng = np.random.default_rng(seed)
    records = []
    for p in range(patients):
        images = int(rng.integers(1, 5))
        if rng.random() < 0.25:
            label, subtype, patient = "NORMAL", "", f"IM-{p:04d}"
        else:
            subtype = "bacterial" if rng.random() < 0.65 else "viral"
            label, patient = "PNEUMONIA", f"person{p}_{'bacteria' if subtype == 'bacterial' else 'virus'}"
        records += [ImageRecord(f"/d/{patient}_{k}.jpeg", label, "train", patient, subtype) for k in range(images)]
    return records


@pytest.mark.parametrize("seed", range(8))
def test_no_patient_in_both_parts(seed: int) -> None:
    records = _records(seed)
    train, val = split_by_patient(records, 0.2, seed=seed)
    assert not patients_in_both(train, val)
    assert sorted(r.path for r in train + val) == sorted(r.path for r in records)  # nothing lost or doubled
    assert {r.split for r in train} == {"train"} and {r.split for r in val} == {"val"}
    assert 0.1 < len(val) / len(records) < 0.3


@pytest.mark.parametrize("seed", range(4))
def test_stratification_is_roughly_preserved(seed: int) -> None:
    records = _records(seed, patients=300)
    train, val = split_by_patient(records, 0.2, seed=seed)
    for classes, tolerance in ((2, 0.02), (3, 0.02)):  # stratified on the label and the subtype
        for c in range(classes):
            overall = np.mean([r.target(classes) == c for r in records])
            in_val = np.mean([r.target(classes) == c for r in val])
            assert abs(in_val - overall) < tolerance, (classes, c, overall, in_val)


def test_binary_and_three_class_runs_share_one_split() -> None:
    from pneumo.config import DataConfig
    from pneumo.data.selection import training_splits

    records = _records(3, patients=200)
    _, val2 = training_splits(records, DataConfig(classes=2, val_fraction=0.2))
    _, val3 = training_splits(records, DataConfig(classes=3, val_fraction=0.2))
    assert [r.path for r in val2] == [r.path for r in val3]


def test_split_is_seeded() -> None:
    records = _records(0)
    first = split_by_patient(records, 0.2, seed=5)[1]
    assert split_by_patient(records, 0.2, seed=5)[1] == first
    assert split_by_patient(records, 0.2, seed=6)[1] != first


def test_too_few_patients() -> None:
    records = [ImageRecord(f"/d/{i}.png", "NORMAL", "train", f"p{i}") for i in range(3)]
    with pytest.raises(ValueError, match="only 3 patients"):
        split_by_patient(records, 0.1, seed=0)
    with pytest.raises(ValueError, match="only 1 patients"):
        split_by_patient(records[:1], 0.5, seed=0)


@pytest.mark.parametrize("fraction", [0.1, 0.12, 0.15, 0.3, 0.45, 0.6])
def test_the_fraction_asked_for_is_the_fraction_given(fraction: float) -> None:
    records = _records(1, patients=400)
    train, val = split_by_patient(records, fraction, seed=0)
    # Within one patient's images (at most 4) per stratum of the three.
    assert abs(len(val) - fraction * len(records)) <= 12, (len(val), fraction * len(records))
    assert not patients_in_both(train, val)


def test_select_split_on_tree(kermany_tree: Path) -> None:
    records = scan_kermany(kermany_tree)
    cfg = DataConfig(root=str(kermany_tree), val_fraction=0.2, split_seed=3)
    train, val = training_splits(records, cfg)
    assert select_split(records, "train", cfg) == train and select_split(records, "val", cfg) == val
    assert not patients_in_both(train, val)
    test = select_split(records, "test", cfg)
    assert len(test) == 12 and {r.split for r in test} == {"test"}
    assert len(select_split(records, "all", cfg)) == len(records)
    with pytest.raises(ValueError, match="no images in split 'official-val'"):
        select_split(records, "official-val", cfg)
    with pytest.raises(ValueError, match="unknown split 'holdout'; choose one of"):
        select_split(records, "holdout", cfg)
    with pytest.raises(ValueError, match="no val split"):
        training_splits(records, DataConfig(val_source="folder"))
    assert fingerprint(train) == fingerprint(list(reversed(train))) != fingerprint(val)


def test_duplicates_across_splits_are_leakage(kermany_tree: Path) -> None:
    records = scan_kermany(kermany_tree)
    source = next(r for r in records if r.split == "train" and r.label == "NORMAL")
    copy_in_test = kermany_tree / "test" / "NORMAL" / "IM-0900-0001.jpeg"
    copy_in_test.write_bytes(Path(source.path).read_bytes())
    twin_in_train = Path(source.path).with_name("IM-0901-0001.jpeg")
    other = next(r for r in records if r.split == "train" and r.label == "PNEUMONIA")
    twin_in_train.write_bytes(Path(other.path).read_bytes())
    groups = find_duplicates(scan_kermany(kermany_tree))
    assert len(groups) == 2
    by_path = {p: g for g in groups for p in g.paths}
    leak = by_path[str(copy_in_test)]
    assert set(leak.paths) == {source.path, str(copy_in_test)} and leak.crosses_splits
    assert not by_path[str(twin_in_train)].crosses_splits  # a duplicate inside train is not leakage


def test_duplicates_skip_unreadable_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(b"same")
    b.write_bytes(b"same")
    records = [ImageRecord(str(a), "NORMAL", "train"), ImageRecord(str(b), "NORMAL", "test"),
               ImageRecord(str(tmp_path / "gone.png"), "NORMAL", "test")]
    groups = find_duplicates(records)
    assert len(groups) == 1 and groups[0].crosses_splits


def test_temporal_split_takes_the_earliest_patients_of_each_sequence() -> None:
    records = _records(3, patients=200)
    train, val = split_temporal(records, 0.2, "earliest")
    assert not patients_in_both(train, val)
    assert sorted(r.path for r in train + val) == sorted(r.path for r in records)
    for sequence in ("IM-#", "person#_bacteria", "person#_virus"):
        numbers = {rec.split: [] for rec in train + val}
        for rec in train + val:
            seq, position = temporal_position(rec)
            if seq == sequence:
                numbers[rec.split].append(position)
        assert numbers["val"] and numbers["train"], sequence
        assert max(numbers["val"]) < min(numbers["train"]), sequence  # every val patient comes first in time
    late_train, late_val = split_temporal(records, 0.2, "latest")
    assert {r.patient_id for r in late_val}.isdisjoint({r.patient_id for r in val})


def test_temporal_split_is_chosen_by_config_and_honours_the_fraction() -> None:
    records = _records(5, patients=400)
    cfg = DataConfig(root="x", split_by="temporal", val_fraction=0.12)
    train, val = training_splits(records, cfg)
    patients = {r.patient_id for r in records}
    assert abs(len({r.patient_id for r in val}) / len(patients) - 0.12) < 0.02
    assert training_splits(records, cfg) == (train, val)  # no randomness


def test_temporal_split_uses_a_manifest_order_column_and_names_files_without_one() -> None:
    records = [ImageRecord(f"/d/{i}.png", "NORMAL" if i % 2 else "PNEUMONIA", "train", f"p{i}x", "",
                           f"2020-01-{i + 1:02d}") for i in range(20)]
    train, val = split_temporal(records, 0.2)
    assert {r.path for r in val} == {"/d/0.png", "/d/1.png", "/d/2.png", "/d/3.png"}
    with pytest.raises(ValueError, match="/d/odd.png.*order"):
        split_temporal(records + [ImageRecord("/d/odd.png", "NORMAL", "train", "anon", "")], 0.2)
    with pytest.raises(ValueError, match="neither a number nor an ISO date"):
        split_temporal([ImageRecord("/d/a.png", "NORMAL", "train", "a", "", "yesterday")] * 2, 0.5)


def test_configs_stored_before_the_fraction_rule_keep_their_kfold_split() -> None:
    from pneumo.config import RunConfig

    records = _records(2, patients=300)
    legacy = RunConfig.from_stored({"data": {"val_fraction": 0.15, "split_seed": 4}}).data
    assert legacy.patient_split == "kfold"
    assert RunConfig.from_stored({"data": {"patient_split": "fraction"}}).data.patient_split == "fraction"
    assert RunConfig.from_dict({"data": {}}).data.patient_split == "fraction"  # new runs
    _, old_val = training_splits(records, legacy)
    # What the k-fold rule gives: round(1 / 0.15) = 7 folds, one of them (about 14.3%).
    assert abs(len(old_val) / len(records) - 1 / 7) < 0.03
    assert old_val == split_by_patient(records, 0.15, 4, rule="kfold")[1]
    _, new_val = training_splits(records, DataConfig(val_fraction=0.15, split_seed=4))
    assert abs(len(new_val) - 0.15 * len(records)) <= 12
    with pytest.raises(ValueError, match="unknown patient split rule"):
        split_by_patient(records, 0.15, 4, rule="random")


def test_split_settings_name_only_what_decides_the_split() -> None:
    from pneumo.data.selection import split_settings

    temporal = DataConfig(split_by="temporal", val_fraction=0.12)
    # A temporal block ignores the seed and the patient-split rule; a patient split ignores the temporal end.
    assert split_settings(temporal) == split_settings(DataConfig(split_by="temporal", val_fraction=0.12,
                                                                 split_seed=7, patient_split="kfold"))
    assert split_settings(temporal) != split_settings(DataConfig(split_by="temporal", val_fraction=0.15))
    assert split_settings(DataConfig(split_seed=1)) != split_settings(DataConfig(split_seed=2))
    assert split_settings(DataConfig()) == split_settings(DataConfig(temporal_end="latest"))
