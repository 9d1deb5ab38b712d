"""End to end against a real PACS: a throwaway Orthanc on loopback (pneumo_testsupport/orthanc.py) sends DX instances to
pneumo's node, pneumo's Structured Reports arrive back in Orthanc in the same study, and ``pneumo predict`` pulls a
study over Orthanc's DICOMweb plugin. One Orthanc and one pneumo for the whole module, to stay fast."""

from __future__ import annotations

import io
import json

import pydicom
import pytest
from pydicom.uid import ComprehensiveSRStorage, generate_uid

from pneumo.cli import main
from pneumo.dicom.report import read_report
from pneumo_testsupport.net import free_port
from pneumo_testsupport.orthanc import find_orthanc, local_orthanc

from conftest import make_tiny_bundle  # the shared tests/conftest.py

from .conftest import PATIENT_ID, PATIENT_NAME, dx_instance, encode

FINDING = {"PNEUMONIA": "Pneumonia", "NORMAL": "No pneumonia"}


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    """(orthanc, client, node, bundle): Orthanc knows pneumo as modality 'pneumo'; pneumo accepts only ORTHANC
    and forwards its reports to it."""
    from fastapi.testclient import TestClient

    from pneumo.dicom.settings import Destination, DicomSettings
    from pneumo.service import ServiceSettings, create_app

    found = find_orthanc()
    if found is None:
        pytest.skip("Orthanc is not installed (Debian: apt-get install orthanc orthanc-dicomweb; scripts/setup.sh "
                    "does it when run as root)")
    binary, plugin = found
    root = tmp_path_factory.mktemp("dicom-e2e")
    bundle = make_tiny_bundle(root)
    node_port = free_port()
    modalities = {"pneumo": {"AET": "PNEUMO", "Host": "127.0.0.1", "Port": node_port}}
    with local_orthanc(binary, plugin, modalities) as orthanc:
        dicom = DicomSettings(port=node_port, spool_dir=root / "data" / "dicom", allow=(orthanc.aet,),
                              forward=Destination(orthanc.aet, "127.0.0.1", orthanc.dicom_port))
        settings = ServiceSettings(model=str(bundle), data_dir=root / "data", api_key=None, dicom=dicom)
        with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
            yield orthanc, client, client.app.state.service.dicom, bundle, plugin


def upload(http, datasets) -> list[dict]:
    answers = []
    for ds in datasets:
        response = http.post("/instances", content=encode(ds), headers={"Content-Type": "application/dicom"})
        assert response.status_code == 200, response.text
        answers.append(response.json())
    return answers


def predict_json(capsys, *args) -> list[dict]:
    capsys.readouterr()
    code = main(["predict", *args, "--format", "json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def test_orthanc_sends_dx_to_pneumo_and_the_reports_come_back_in_the_same_study(pacs, xray_files, tmp_path, capsys):
    orthanc, client, node, bundle, _ = pacs
    study, series = generate_uid(), generate_uid()
    frontal = [dx_instance(f, study_uid=study, series_uid=series, InstanceNumber=i + 1)
               for i, f in enumerate(xray_files[:3])]
    lateral = dx_instance(xray_files[3], study_uid=study, series_uid=series, view="LL", InstanceNumber=4)
    files = []
    for ds in frontal:
        files.append(tmp_path / f"{ds.SOPInstanceUID}.dcm")
        files[-1].write_bytes(encode(ds))
    with orthanc.client() as http:
        answers = upload(http, [*frontal, lateral])
        study_id = answers[0]["ParentStudy"]
        job = http.post("/modalities/pneumo/store",
                        json={"Resources": [a["ID"] for a in answers], "Synchronous": True})
        assert job.status_code == 200, job.text
        assert node.wait_idle(120)
        reports = {}
        for instance in http.get(f"/studies/{study_id}/instances").json():
            ds = pydicom.dcmread(io.BytesIO(http.get(f"/instances/{instance['ID']}/file").content))
            if ds.SOPClassUID == ComprehensiveSRStorage:
                assert ds.StudyInstanceUID == study
                reports[read_report(ds)["source_sop_instance_uid"]] = read_report(ds)
    assert set(reports) == {ds.SOPInstanceUID for ds in [*frontal, lateral]}
    expected = {row["path"]: row for row in predict_json(capsys, *map(str, files), "--model", str(bundle))}
    for ds, path in zip(frontal, files):
        row, report = expected[str(path)], reports[ds.SOPInstanceUID]
        assert report["finding"] == FINDING[row["label"]]
        assert report["probability"] == pytest.approx(row["probability"], abs=1e-6)
        assert report["threshold"] == pytest.approx(row["threshold"])
        assert report["algorithm_version"].startswith(f"{row['model_version']} {bundle.name}@")
    assert reports[lateral.SOPInstanceUID]["finding"] == "Not assessed"
    assert "lateral" in reports[lateral.SOPInstanceUID]["reason"]
    history = client.get("/api/v1/history?limit=50").json()["items"]
    mine = [r for r in history if r["dicom"] and r["dicom"]["study_instance_uid"] == study]
    assert len(mine) == 4 and {r["dicom"]["calling_ae"] for r in mine} == {orthanc.aet}
    assert PATIENT_NAME not in json.dumps(history) and PATIENT_ID not in json.dumps(history)


def test_predict_over_dicomweb_gives_the_rows_of_the_same_local_files(pacs, xray_files, tmp_path, capsys):
    orthanc, client, node, bundle, plugin = pacs
    if plugin is None:
        pytest.skip("Orthanc's DICOMweb plugin is not installed (Debian: apt-get install orthanc-dicomweb)")
    study, series_a, series_b = generate_uid(), generate_uid(), generate_uid()
    datasets = [dx_instance(f, study_uid=study, series_uid=series_a if i < 2 else series_b, InstanceNumber=i + 1)
                for i, f in enumerate(xray_files)]
    paths = {}
    for ds in datasets:
        paths[ds.SOPInstanceUID] = tmp_path / f"{ds.SOPInstanceUID}.dcm"
        paths[ds.SOPInstanceUID].write_bytes(encode(ds))
    with orthanc.client() as http:
        upload(http, datasets)
    url = f"dicomweb+{orthanc.url}/dicom-web/studies/{study}"
    remote = predict_json(capsys, url, "--model", str(bundle))
    local = predict_json(capsys, *map(str, paths.values()), "--model", str(bundle))
    assert len(remote) == len(datasets)
    by_uid = {row["path"].rsplit("/instances/", 1)[1]: row for row in remote}
    assert set(by_uid) == set(paths)
    for row in local:
        uid = row["path"].rsplit("/", 1)[1].removesuffix(".dcm")
        other = by_uid[uid]
        assert other["path"] == f"{url}/series/{datasets[[d.SOPInstanceUID for d in datasets].index(uid)].SeriesInstanceUID}/instances/{uid}"
        for key in ("label", "threshold", "unknown_reason", "error", "model_version", "subtype_probabilities"):
            assert other[key] == row[key], key
        assert other["probability"] == pytest.approx(row["probability"], abs=1e-9)
    # A series URL gives only that series.
    only_b = predict_json(capsys, f"{url}/series/{series_b}", "--model", str(bundle))
    assert len(only_b) == 2


def test_a_study_the_pacs_does_not_have_is_a_clear_error(pacs, capsys):
    orthanc, client, node, bundle, plugin = pacs
    if plugin is None:
        pytest.skip("Orthanc's DICOMweb plugin is not installed (Debian: apt-get install orthanc-dicomweb)")
    code = main(["predict", f"dicomweb+{orthanc.url}/dicom-web/studies/1.2.3.999", "--model", str(bundle)])
    assert code == 2
    assert "lists no instances" in capsys.readouterr().err
