"""Records from the Kermany layout and from CSV manifests: patient keys, subtypes, labels, splits."""

from __future__ import annotations

from pathlib import Path

import pytest

from pneumo.data.records import class_names, load_records, parse_kermany_name, read_manifest, scan_kermany


@pytest.mark.parametrize("name, patient, subtype", [
    ("person1946_bacteria_4875.jpeg", "person1946_bacteria", "bacterial"),
    ("person1_virus_6.jpeg", "person1_virus", "viral"),
    ("IM-0115-0001.jpeg", "IM-0115", ""),
    ("NORMAL2-IM-1427-0001.jpeg", "NORMAL2-IM-1427", ""),
    ("IM-0011-0001-0002.jpeg", "IM-0011", ""),
    ("IM-0011-0001-0001.jpeg", "IM-0011", ""),
    ("Person12_Virus_40.JPEG", "person12_virus", "viral"),
    ("scan_without_pattern.png", "scan_without_pattern", ""),  # unknown names: one patient per image
])
def test_parse_kermany_name(name: str, patient: str, subtype: str) -> None:
    assert parse_kermany_name(name) == (patient, subtype)


def test_bacterial_and_viral_with_same_number_are_different_patients() -> None:
    assert parse_kermany_name("person100_bacteria_1.jpeg")[0] != parse_kermany_name("person100_virus_2.jpeg")[0]


def test_scan_kermany_tree(kermany_tree: Path) -> None:
    records = scan_kermany(kermany_tree)
    assert len(records) == 52  # (10 + 3 patients) x 2 classes x 2 images
    assert {r.split for r in records} == {"train", "test"}
    normal = [r for r in records if r.label == "NORMAL"]
    pneumonia = [r for r in records if r.label == "PNEUMONIA"]
    assert len(normal) == len(pneumonia) == 26
    assert all(r.subtype == "" for r in normal)
    assert {r.subtype for r in pneumonia} == {"bacterial", "viral"}
    # Two images per patient, so patients are half the images.
    assert len({r.patient_id for r in records}) == 26
    assert all(Path(r.path).is_file() for r in records)


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8\xff")  # scanning does not decode


def test_scan_is_tolerant_of_case_and_missing_splits(tmp_path: Path) -> None:
    _touch(tmp_path / "Train" / "normal" / "IM-0001-0001.jpeg")
    _touch(tmp_path / "Train" / "Pneumonia" / "person3_virus_9.JPG")
    _touch(tmp_path / "Train" / "Pneumonia" / ".hidden.jpeg")
    _touch(tmp_path / "Train" / "Pneumonia" / "notes.txt")
    records = scan_kermany(tmp_path)
    assert [(r.split, r.label, r.patient_id, r.subtype) for r in records] == [
        ("train", "NORMAL", "IM-0001", ""), ("train", "PNEUMONIA", "person3_virus", "viral")]


def test_scan_root_holding_classes_directly(tmp_path: Path) -> None:
    _touch(tmp_path / "NORMAL" / "IM-0001-0001.jpeg")
    records = scan_kermany(tmp_path)
    assert [(r.split, r.label) for r in records] == [("", "NORMAL")]


def test_scan_wrong_layout_says_what_is_expected(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    with pytest.raises(ValueError, match="Kermany layout"):
        scan_kermany(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        scan_kermany(tmp_path / "nope")


def test_manifest_with_relative_paths(tmp_path: Path) -> None:
    _touch(tmp_path / "imgs" / "a.png")
    (tmp_path / "sub").mkdir()
    manifest = tmp_path / "sub" / "list.csv"
    manifest.write_text(
        "Path,Label,split,patient_id,subtype\n"
        "../imgs/a.png,normal,train,p1,\n"
        f"{tmp_path / 'imgs' / 'b.png'},PNEUMONIA,test,p2,bacteria\n"
        "../imgs/person7_virus_3.jpeg,viral,,,\n"
        "../imgs/c.png,Pneumonia,val,p4,viral\n")
    records = read_manifest(manifest)
    assert [r.label for r in records] == ["NORMAL", "PNEUMONIA", "PNEUMONIA", "PNEUMONIA"]
    assert [r.subtype for r in records] == ["", "bacterial", "viral", "viral"]
    assert [r.split for r in records] == ["train", "test", "", "val"]
    assert [r.patient_id for r in records] == ["p1", "p2", "person7_virus", "p4"]
    assert Path(records[0].path).resolve() == (tmp_path / "imgs" / "a.png").resolve()
    assert records[1].path == str(tmp_path / "imgs" / "b.png")
    assert [r.target(3) for r in records] == [0, 1, 2, 2]
    assert load_records(manifest=str(manifest)) == records


@pytest.mark.parametrize("body, message", [
    ("path,label\nx.png,covid\n", r"list.csv:2: label 'covid' is not one of"),
    ("path,label,split\nx.png,NORMAL,holdout\n", r"split 'holdout' is not one of"),
    ("path,label,subtype\nx.png,PNEUMONIA,fungal\n", r"subtype 'fungal'"),
    ("file,class\nx.png,NORMAL\n", r"header must include 'path' and 'label'"),
])
def test_manifest_errors_name_line_and_value(tmp_path: Path, body: str, message: str) -> None:
    manifest = tmp_path / "list.csv"
    manifest.write_text(body)
    with pytest.raises(ValueError, match=message):
        read_manifest(manifest)


def test_three_class_target_needs_subtype(tmp_path: Path) -> None:
    manifest = tmp_path / "list.csv"
    manifest.write_text("path,label,patient_id\nx.png,PNEUMONIA,p1\n")
    record = read_manifest(manifest)[0]
    assert record.target(2) == 1
    with pytest.raises(ValueError, match="bacterial/viral subtype"):
        record.target(3)


def test_class_names() -> None:
    assert class_names(2) == ("NORMAL", "PNEUMONIA")
    assert class_names(3) == ("NORMAL", "BACTERIAL", "VIRAL")
    with pytest.raises(ValueError, match="2 or 3"):
        class_names(4)


def test_load_records_needs_a_source() -> None:
    with pytest.raises(ValueError, match="root .* or a CSV manifest"):
        load_records()


def test_manifest_order_column_drives_a_temporal_split(tmp_path: Path) -> None:
    from pneumo.config import DataConfig
    from pneumo.data.selection import training_splits

    rows = ["path,label,patient_id,order"]
    rows += [f"n{i}.png,NORMAL,pn{i},2021-03-{i + 1:02d}" for i in range(10)]
    rows += [f"p{i}.png,PNEUMONIA,pp{i},{100 + i}" for i in range(10)]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    records = read_manifest(tmp_path / "m.csv")
    assert records[0].order == "2021-03-01" and records[-1].order == "109"
    train, val = training_splits(records, DataConfig(manifest=str(tmp_path / "m.csv"), split_by="temporal",
                                                     val_fraction=0.2, temporal_end="latest"))
    assert sorted(Path(r.path).name for r in val) == ["n8.png", "n9.png", "p8.png", "p9.png"]
