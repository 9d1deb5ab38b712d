"""Who may open an association with the node: a calling AE title, and the addresses it may come from.

An AE title alone is trivial to spoof (any sender can write any title into its A-ASSOCIATE-RQ), so an entry can
pin it to an address or a network: ``ORTHANC@10.0.0.5``, ``CR_ROOM@10.0.3.0/24``. ``AET`` alone accepts that
title from any address, and is refused off loopback (see :func:`check_allow_list`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

# PS3.5 6.2: an AE title is 1-16 characters of the default repertoire, no backslash, no control characters.
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def check_ae_title(value: str, what: str = "AE title") -> str:
    """The AE title with its padding removed; ValueError naming it when DICOM would not accept it."""
    title = str(value).strip()
    if not _AE_TITLE.match(title):
        raise ValueError(f"{what} {value!r} is not a valid DICOM AE title: 1 to 16 printable ASCII characters, "
                         "no backslash")
    return title


@dataclass(frozen=True)
class AllowedPeer:
    """One ``--dicom-allow`` entry: an AE title and the network it may call from (None: any address)."""

    ae_title: str
    network: Network | None = None

    @classmethod
    def parse(cls, text: str) -> "AllowedPeer":
        title, sep, address = str(text).strip().partition("@")
        if not sep:
            return cls(check_ae_title(title, "--dicom-allow entry"))
        try:
            network = ipaddress.ip_network(address.strip().strip("[]"), strict=False)
        except ValueError:
            raise ValueError(f"--dicom-allow entry {text!r}: {address!r} is not an IP address or network "
                             "(write AET@10.0.0.5 or AET@10.0.3.0/24; host names are not accepted, since "
                             "they resolve differently over time)") from None
        return cls(check_ae_title(title, "--dicom-allow entry"), network)

    def admits(self, ae_title: str, address: str) -> bool:
        if ae_title.strip() != self.ae_title:
            return False
        if self.network is None:
            return True
        try:
            peer = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            return False
        if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
            peer = peer.ipv4_mapped  # an IPv4 peer on a dual-stack socket
        return peer.version == self.network.version and peer in self.network

    def __str__(self) -> str:
        return self.ae_title if self.network is None else f"{self.ae_title}@{self.network}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_allow_list(host: str, peers: tuple[AllowedPeer, ...]) -> None:
    """Off loopback, the node must name who may call it, each title with its address: ValueError otherwise."""
    if is_loopback(host):
        return
    if not peers:
        raise ValueError(f"the DICOM node listens on {host}, off loopback: give --dicom-allow AET@ADDRESS for each "
                         "sender (e.g. ORTHANC@10.0.0.5); without it anyone on the network could send")
    bare = [peer.ae_title for peer in peers if peer.network is None]
    if bare:
        raise ValueError(f"the DICOM node listens on {host}, off loopback: --dicom-allow {','.join(bare)} has no "
                         "address, and an AE title alone is easy to spoof; write AET@ADDRESS or AET@NETWORK/BITS "
                         "(AET@0.0.0.0/0 accepts that title from anywhere, if you mean it)")
