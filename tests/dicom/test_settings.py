"""``pneumo serve --dicom-*`` flags, AE titles and destinations, header checks, DICOMweb URLs."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from pneumo.cli import build_parser
from pneumo.commands.serve import build_settings
from pneumo.dicom.checks import header_reason, instance_uids
from pneumo.dicom.dicomweb import Target
from pneumo.dicom.settings import Destination, DicomSettings


def test_dicom_flags_map_onto_settings(tmp_path):
    args = build_parser().parse_args([
        "serve", "--data-dir", str(tmp_path), "--dicom-port", "11112", "--dicom-ae-title", "PNEUMO_AI",
        "--dicom-allow", "ORTHANC, MODALITY1", "--dicom-forward", "PACS@127.0.0.1:4242", "--dicom-gradcam"])
    dicom = build_settings(args).dicom
    assert (dicom.port, dicom.ae_title, dicom.host) == (11112, "PNEUMO_AI", "127.0.0.1")
    assert dicom.allow == ("ORTHANC", "MODALITY1")
    assert dicom.forward == Destination("PACS", "127.0.0.1", 4242) and dicom.gradcam
    assert dicom.spool_dir == tmp_path / "dicom"


def test_no_dicom_port_means_no_node_and_its_options_are_refused_alone(tmp_path):
    assert build_settings(build_parser().parse_args(["serve", "--data-dir", str(tmp_path)])).dicom is None
    args = build_parser().parse_args(["serve", "--data-dir", str(tmp_path), "--dicom-forward", "A@127.0.0.1:1"])
    with pytest.raises(ValueError, match="need --dicom-port"):
        build_settings(args)


@pytest.mark.parametrize("text", ["PACS@127.0.0.1", "@127.0.0.1:104", "PACS127.0.0.1:104", "PACS@h:0",
                                  "WAY_TOO_LONG_AE_TITLE@127.0.0.1:104"])
def test_bad_destinations_name_the_expected_form(text):
    with pytest.raises(ValueError, match="AET@HOST:PORT|port|AE title"):
        Destination.parse(text)


def test_bad_ae_titles_are_refused(tmp_path):
    with pytest.raises(ValueError, match="not a valid DICOM AE title"):
        DicomSettings(port=104, spool_dir=tmp_path, ae_title="BACK\\SLASH")
    with pytest.raises(ValueError, match="--dicom-allow entry"):
        DicomSettings(port=104, spool_dir=tmp_path, allow=("",))


def _header(**tags) -> Dataset:
    ds = Dataset()
    for key, value in tags.items():
        setattr(ds, key, value)
    return ds


@pytest.mark.parametrize("tags, expected", [
    ({"ViewPosition": "PA", "BodyPartExamined": "CHEST"}, None),
    ({"ViewPosition": "AP"}, None),
    ({}, None),  # missing tags are no reason: the image gate still looks at the pixels
    ({"ViewPosition": "LL", "BodyPartExamined": "CHEST"}, "lateral view (ViewPosition LL"),
    ({"ViewPosition": "rl "}, "lateral view (ViewPosition RL"),
    ({"BodyPartExamined": "KNEE"}, "not a chest image (BodyPartExamined KNEE)"),
])
def test_header_reasons(tags, expected):
    reason = header_reason(_header(**tags))
    assert reason == expected if expected is None else expected in reason


def test_instance_uids_keep_uids_only():
    ds = _header(StudyInstanceUID="1.2", SeriesInstanceUID="1.2.3", SOPInstanceUID="1.2.3.4",
                 SOPClassUID="1.2.840.10008.5.1.4.1.1.1.1", PatientName="Doe^Jane", PatientID="X")
    assert instance_uids(ds) == {"study_instance_uid": "1.2", "series_instance_uid": "1.2.3",
                                 "sop_instance_uid": "1.2.3.4", "sop_class_uid": "1.2.840.10008.5.1.4.1.1.1.1"}


def test_dicomweb_urls():
    target = Target.parse("dicomweb+http://127.0.0.1:8042/dicom-web/studies/1.2.3/series/4.5")
    assert (target.base_url, target.study, target.series, target.instance) == (
        "http://127.0.0.1:8042/dicom-web", "1.2.3", "4.5", None)
    assert target.instance_url("4.5", "6.7") == (
        "dicomweb+http://127.0.0.1:8042/dicom-web/studies/1.2.3/series/4.5/instances/6.7")
    for bad in ("dicomweb+http://host/dicom-web", "http://host/dicom-web/studies/1.2", "dicomweb+ftp://h/studies/1"):
        with pytest.raises(ValueError, match="not a DICOMweb study URL"):
            Target.parse(bad)
