"""``pneumo predict dicomweb+http://HOST/dicom-web/studies/UID``: list a study's (or series') instances with
QIDO-RS and fetch each with WADO-RS (dicomweb-client), so retrospective work reads straight from a PACS.

Each instance is fetched as its DICOM bytes and predicted exactly like a local file holding them; rows are named
by the instance's own URL (``.../studies/S/series/SE/instances/I``), without any ``user:password@`` the URL
carried. UIDs the server returns are checked against the DICOM UID grammar before they go into a URL.
"""

from __future__ import annotations

import io
import re
from urllib.parse import urlsplit, urlunsplit
from dataclasses import dataclass
from typing import Any, Iterator

from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset

PREFIX = "dicomweb+"
_TARGET = re.compile(r"^(?P<base>https?://[^?#]+?)/studies/(?P<study>[0-9.]+)"
                     r"(?:/series/(?P<series>[0-9.]+)(?:/instances/(?P<instance>[0-9.]+))?)?/?$")
# PS3.5 9.1: components of digits without leading zeros, separated by dots, at most 64 characters.
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
# DICOM JSON tags of the QIDO-RS answer
_STUDY, _SERIES, _SOP, _NUMBER = "0020000D", "0020000E", "00080018", "00200013"


def is_dicomweb(text: str) -> bool:
    return str(text).startswith(PREFIX)


def without_credentials(url: str) -> str:
    """``url`` without the ``user:password@`` of its authority: what may be written to rows, logs and errors."""
    scheme, netloc, path, query, fragment = urlsplit(str(url))
    return urlunsplit((scheme, netloc.rsplit("@", 1)[-1], path, query, fragment))


def checked_uid(value: object, what: str, source: str) -> str:
    """``value`` if it is a valid DICOM UID, else a ValueError naming ``source`` (a URL without credentials)."""
    text = str(value)
    if len(text) > 64 or not _UID.match(text):
        raise ValueError(f"{source}: the DICOMweb server returned an invalid {what} {text[:80]!r}; a UID is digits "
                         "and dots, at most 64 characters")
    return text


@dataclass(frozen=True)
class Target:
    """What a ``dicomweb+`` URL names: the DICOMweb root and a study (optionally one series or instance)."""

    base_url: str
    study: str
    series: str | None = None
    instance: str | None = None

    @classmethod
    def parse(cls, text: str) -> "Target":
        match = _TARGET.match(str(text)[len(PREFIX):]) if is_dicomweb(text) else None
        if match is None:
            raise ValueError(f"{without_credentials(str(text))!r} is not a DICOMweb study URL; write dicomweb+http://HOST/dicom-web/studies/UID "
                             "(optionally /series/UID or /series/UID/instances/UID)")
        return cls(match["base"], match["study"], match["series"], match["instance"])

    def instance_url(self, series: str, instance: str) -> str:
        """The row name of one instance: its URL without credentials."""
        return f"{PREFIX}{without_credentials(self.base_url)}/studies/{self.study}/series/{series}/instances/{instance}"


def _value(item: dict[str, Any], tag: str) -> Any:
    values = item.get(tag, {}).get("Value") or [None]
    return values[0]


def list_instances(client: DICOMwebClient, target: Target) -> list[tuple[str, str]]:
    """(series UID, SOP instance UID) of every instance under ``target``, in series and instance-number order."""
    if target.instance is not None:
        return [(str(target.series), target.instance)]
    found = client.search_for_instances(study_instance_uid=target.study, series_instance_uid=target.series,
                                        fields=[_NUMBER])
    source = PREFIX + without_credentials(target.base_url)
    rows = [(checked_uid(_value(i, _SERIES), "Series Instance UID", source),
             checked_uid(_value(i, _SOP), "SOP Instance UID", source), int(_value(i, _NUMBER) or 0)) for i in found]
    return [(series, sop) for series, sop, _ in sorted(rows, key=lambda r: (r[0], r[2], r[1]))]


def _bytes(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def resolve(paths: list[str], *, client_factory=DICOMwebClient) -> tuple[Iterator[Any], list[str]]:
    """Sources for ``Predictor.predict_many`` and the name of each row. Local paths pass through unchanged;
    each ``dicomweb+`` URL becomes its instances, fetched lazily (one at a time, as the Predictor asks)."""
    plan: list[tuple[str, Any]] = []  # (name, path or (client, target, series, sop))
    for path in paths:
        if not is_dicomweb(path):
            plan.append((path, path))
            continue
        target = Target.parse(path)
        shown = PREFIX + without_credentials(path[len(PREFIX):])
        client = client_factory(url=target.base_url)
        try:
            instances = list_instances(client, target)
        except ValueError:
            raise
        except Exception as exc:  # requests' HTTPError, connection errors, bad JSON
            reason = str(exc).replace(target.base_url, without_credentials(target.base_url))
            raise ValueError(f"{shown}: cannot list the instances over QIDO-RS ({type(exc).__name__}: {reason})") from exc
        if not instances:
            raise ValueError(f"{shown}: the DICOMweb server lists no instances for it")
        plan += [(target.instance_url(series, sop), (client, target, series, sop)) for series, sop in instances]

    def sources() -> Iterator[Any]:
        for name, source in plan:
            if isinstance(source, str):
                yield source
                continue
            client, target, series, sop = source
            try:
                dataset = client.retrieve_instance(study_instance_uid=target.study, series_instance_uid=series,
                                                   sop_instance_uid=sop)
            except Exception as exc:
                reason = str(exc).replace(target.base_url, without_credentials(target.base_url))
                raise ValueError(f"{name}: cannot fetch it over WADO-RS ({type(exc).__name__}: {reason})") from exc
            yield _bytes(dataset)

    return sources(), [name for name, _ in plan]
