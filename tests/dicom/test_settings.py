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


def test_the_allow_list_pins_ae_titles_to_addresses():
    from pneumo.dicom.peers import AllowedPeer

    pinned = AllowedPeer.parse("ORTHANC@10.0.0.5")
    assert pinned.admits("ORTHANC", "10.0.0.5") and pinned.admits("ORTHANC ", "::ffff:10.0.0.5")
    assert not pinned.admits("ORTHANC", "10.0.0.6") and not pinned.admits("OTHER", "10.0.0.5")
    network = AllowedPeer.parse("CR_ROOM@10.0.3.0/24")
    assert network.admits("CR_ROOM", "10.0.3.77") and not network.admits("CR_ROOM", "10.0.4.1")
    assert AllowedPeer.parse("ANY").admits("ANY", "192.0.2.1")
    with pytest.raises(ValueError, match="not an IP address or network"):
        AllowedPeer.parse("ORTHANC@pacs.example.org")


@pytest.mark.parametrize("allow, message", [((), "give --dicom-allow AET@ADDRESS"),
                                            (("ORTHANC",), "has no address")])
def test_off_loopback_the_node_refuses_to_start_without_pinned_senders(tmp_path, allow, message):
    with pytest.raises(ValueError, match=message):
        DicomSettings(port=104, spool_dir=tmp_path, host="0.0.0.0", allow=allow)
    settings = DicomSettings(port=104, spool_dir=tmp_path, host="10.0.0.2", allow=("ORTHANC@10.0.0.5",))
    assert settings.allow == ("ORTHANC@10.0.0.5/32",)
    assert DicomSettings(port=104, spool_dir=tmp_path, host="127.0.0.1").allow == ()  # loopback: local senders


def test_security_flags_map_onto_settings(tmp_path):
    cert, key = tmp_path / "node.pem", tmp_path / "node.key"
    cert.write_text("x")
    key.write_text("x")
    args = build_parser().parse_args([
        "serve", "--host", "10.0.0.2", "--data-dir", str(tmp_path), "--dicom-port", "11112",
        "--dicom-allow", "ORTHANC@10.0.0.5,CR@10.0.3.0/24", "--dicom-tls-cert", str(cert), "--dicom-tls-key",
        str(key), "--dicom-max-pdu", "65536", "--dicom-max-dataset-mb", "32", "--dicom-max-image-mb", "16",
        "--dicom-max-associations", "3", "--dicom-spool-quota-mb", "100", "--dicom-accept-deflate"])
    dicom = build_settings(args).dicom
    assert dicom.allow == ("ORTHANC@10.0.0.5/32", "CR@10.0.3.0/24")
    assert (dicom.tls.cert, dicom.tls.key, dicom.tls.ca) == (cert, key, None)
    assert (dicom.max_pdu, dicom.max_dataset_bytes, dicom.max_image_bytes) == (65536, 32 << 20, 16 << 20)
    assert (dicom.max_associations, dicom.spool_quota_bytes, dicom.accept_deflate) == (3, 100 << 20, True)
    defaults = build_settings(build_parser().parse_args(["serve", "--data-dir", str(tmp_path), "--dicom-port",
                                                         "11112"])).dicom
    assert defaults.accept_deflate is False and defaults.tls is None


def test_tls_flags_come_in_pairs_and_name_missing_files(tmp_path):
    base = ["serve", "--data-dir", str(tmp_path), "--dicom-port", "11112"]
    with pytest.raises(ValueError, match="both --dicom-tls-cert and --dicom-tls-key"):
        build_settings(build_parser().parse_args([*base, "--dicom-tls-cert", str(tmp_path / "a.pem")]))
    with pytest.raises(ValueError, match="no such file"):
        build_settings(build_parser().parse_args([*base, "--dicom-tls-cert", str(tmp_path / "a.pem"),
                                                  "--dicom-tls-key", str(tmp_path / "a.key")]))
    with pytest.raises(ValueError, match="need --dicom-port"):
        build_settings(build_parser().parse_args(["serve", "--data-dir", str(tmp_path), "--dicom-accept-deflate"]))


@pytest.mark.parametrize("field, value", [("max_pdu", 100), ("max_dataset_bytes", 0), ("max_associations", 0),
                                          ("spool_quota_bytes", 0), ("max_pdu", 1 << 32)])
def test_limits_out_of_range_are_refused(tmp_path, field, value):
    with pytest.raises(ValueError, match="must be at least|does not fit"):
        DicomSettings(port=104, spool_dir=tmp_path, **{field: value})


def test_image_budget_from_the_header_alone():
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    from pneumo.dicom.checks import image_refusal

    def header(**tags):
        return _header(**{"Rows": 2000, "Columns": 2000, "BitsAllocated": 16, "SamplesPerPixel": 1, **tags})

    assert image_refusal(header(), 8_000_000) is None
    assert image_refusal(header(), 7_999_999).status == 0xA700
    assert image_refusal(header(NumberOfFrames=128), 1 << 40).status == 0xA900
    lying = header()
    lying[0x00280008] = RawDataElement(Tag(0x00280008), "IS", 1, b"x", 0, False, True)  # as received
    assert image_refusal(lying, 1 << 40).status == 0xC000
    assert image_refusal(_header(Rows=10, BitsAllocated=16), 1 << 40).status == 0xA900
    assert image_refusal(header(SamplesPerPixel=3, BitsAllocated=12), 24_000_000) is None  # 12 bits take 2 bytes
    assert image_refusal(header(SamplesPerPixel=3, BitsAllocated=12), 23_999_999).status == 0xA700


def test_a_deflated_stream_is_inflated_no_further_than_the_cap():
    import zlib

    from pneumo.dicom.received import DatasetTooLargeError, inflate_capped

    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    bomb = compressor.compress(bytes(50 << 20)) + compressor.flush()
    assert len(bomb) < 100_000
    with pytest.raises(DatasetTooLargeError, match="more than 1048576 bytes"):
        inflate_capped(bomb, 1 << 20)
    small = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    data = bytes(range(256)) * 100
    assert inflate_capped(small.compress(data) + small.flush(), 1 << 20).getvalue() == data


def test_backoff_doubles_up_to_its_cap_and_gives_up_after_its_attempts():
    from pneumo.dicom.retry import Backoff

    now = [0.0]
    backoff = Backoff(1.0, 4.0, attempts=5, clock=lambda: now[0])
    assert [backoff.failed("a") for _ in range(4)] == [1.0, 2.0, 4.0, 4.0]
    assert not backoff.is_due("a") and backoff.due() == []
    now[0] = 100.0
    assert backoff.due() == ["a"] and backoff.waiting() == 1
    backoff.taken("a")
    assert backoff.waiting() == 0 and backoff.due() == []
    assert backoff.failed("a") is None  # the fifth failure: no more tries
    assert backoff.failures("a") == 0
