"""Issue 28's small DICOMweb findings: credentials in a ``dicomweb+https://user:pass@host/...`` URL never reach a
row name or an error, and UIDs a server returns are checked before they go into a URL."""

from __future__ import annotations

from typing import Any

import pytest

from pneumo.dicom.dicomweb import Target, checked_uid, resolve, without_credentials

URL = "dicomweb+https://radiology:Hunter2-secret@pacs.example:8443/dicom-web/studies/1.2.3"


class FakeClient:
    """Answers QIDO-RS with ``instances`` (series UID, SOP UID) and records every request made."""

    def __init__(self, instances: list[tuple[str, str]], *, url: str, fail: bool = False) -> None:
        self.url, self.instances, self.fail = url, instances, fail

    def search_for_instances(self, **query: Any) -> list[dict]:
        if self.fail:
            raise ConnectionError(f"cannot reach {self.url}/studies")
        return [{"0020000E": {"Value": [series]}, "00080018": {"Value": [sop]},
                 "00200013": {"Value": [n]}} for n, (series, sop) in enumerate(self.instances, 1)]


def _factory(instances, **options):
    return lambda url: FakeClient(instances, url=url, **options)


def test_row_names_carry_no_credentials():
    _, names = resolve([URL], client_factory=_factory([("1.2.3.4", "1.2.3.4.5"), ("1.2.3.4", "1.2.3.4.6")]))
    assert names == ["dicomweb+https://pacs.example:8443/dicom-web/studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5",
                     "dicomweb+https://pacs.example:8443/dicom-web/studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.6"]
    assert not any("Hunter2" in n or "radiology" in n for n in names)


def test_errors_carry_no_credentials():
    with pytest.raises(ValueError) as info:
        resolve([URL], client_factory=_factory([], fail=True))
    assert "Hunter2" not in str(info.value) and "pacs.example:8443" in str(info.value)
    with pytest.raises(ValueError) as info:
        Target.parse("dicomweb+https://user:Hunter2@pacs.example/dicom-web/nothing")
    assert "Hunter2" not in str(info.value)


def test_the_client_still_gets_the_credentials():
    seen: list[str] = []

    def factory(url):
        seen.append(url)
        return FakeClient([("1.2", "1.3")], url=url)

    resolve([URL], client_factory=factory)
    assert seen == ["https://radiology:Hunter2-secret@pacs.example:8443/dicom-web"]


@pytest.mark.parametrize("uid", ["1.2.3/../../admin", "1.2.3?x=1", "1.2..3", "01.2", "1.2.", "", "1.2.3 ",
                                 "1." + "2" * 63, "None"])
def test_invalid_uids_from_the_server_are_refused(uid):
    with pytest.raises(ValueError, match="invalid SOP Instance UID"):
        resolve([URL], client_factory=_factory([("1.2.3.4", uid)]))


def test_uid_grammar():
    assert checked_uid("1.2.840.10008.5.1.4.1.1.1", "UID", "x") == "1.2.840.10008.5.1.4.1.1.1"
    assert checked_uid("0.0", "UID", "x") == "0.0"
    assert checked_uid("1." + "2" * 62, "UID", "x")  # 64 characters


def test_without_credentials():
    assert without_credentials("https://u:p@h:1/x?y#z") == "https://h:1/x?y#z"
    assert without_credentials("https://h/x") == "https://h/x"
    assert without_credentials("https://a@b:p@h/x") == "https://h/x"
