"""What receiving alone costs the node: pynetdicom's Storage SCP with a handler that acknowledges and keeps
nothing, fed by Orthanc's C-STORE jobs as in bench/bench_dicom.py. Figures, not pass/fail.

    python bench/bench_dicom_receive.py --data ../shared/data/kermany/train [--instances 100] [--side 2048]

Prints, with pneumo's socket reading (``pneumo.dicom.tcp.RECEIVING_HANDLERS``) and with pynetdicom's own, the CPU
milliseconds per instance of the receiving process and of Orthanc, and instances/s: the floor under the node's
costs before any reading, spooling or reporting, to set beside ``Predictor.predict_many``'s CPU per instance.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.presentation import AllStoragePresentationContexts

from bench_dicom import cpu_seconds, dx_bytes, send_through_orthanc, upload  # bench/bench_dicom.py
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout root: pneumo_testsupport/

from pneumo_testsupport.net import free_port  # noqa: E402
from pneumo_testsupport.orthanc import find_orthanc, local_orthanc  # noqa: E402
from pneumo.dicom.tcp import CONNECTION_HANDLERS, RECEIVING_HANDLERS  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default="../shared/data/kermany/train", help="folder of chest X-ray JPEGs (recursive)")
    p.add_argument("--instances", type=int, default=100)
    p.add_argument("--associations", type=int, default=4)
    p.add_argument("--side", type=int, default=2048, help="longest side of the DX instances in pixels")
    p.add_argument("--seed", type=int, default=0)
    return p


def receive(orthanc, ids: list[str], args: argparse.Namespace, port: int, handlers: list) -> tuple[float, float, float]:
    """(instances/s, CPU ms per instance here, CPU ms per instance of Orthanc) for one pass of all ``ids``."""
    ae = AE(ae_title="PNEUMO")
    ae.maximum_pdu_size = 0
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax)
    received = []
    server = ae.start_server(("127.0.0.1", port), block=False,
                             evt_handlers=[*handlers, (evt.EVT_C_STORE, lambda event: received.append(1) or 0)])
    try:
        cpu, orthanc_cpu, started = time.process_time(), cpu_seconds(orthanc.pid), time.perf_counter()
        statuses = send_through_orthanc(orthanc, ids, [False] * len(ids), args.associations, timeout=120)
        seconds = time.perf_counter() - started
        cpu, orthanc_cpu = time.process_time() - cpu, cpu_seconds(orthanc.pid) - orthanc_cpu
    finally:
        server.shutdown()
    if statuses.count(0) != len(ids) or len(received) != len(ids):
        raise SystemExit(f"{statuses.count(0)} of {len(ids)} acknowledged, {len(received)} received")
    return len(ids) / seconds, cpu / len(ids) * 1e3, orthanc_cpu / len(ids) * 1e3


def main(args: argparse.Namespace) -> None:
    found = find_orthanc()
    if found is None:
        raise SystemExit("Orthanc is not installed: apt-get install orthanc (scripts/setup.sh)")
    jpegs = sorted(p for p in Path(args.data).rglob("*") if p.suffix.lower() in (".jpeg", ".jpg"))
    picks = random.Random(args.seed).sample(jpegs, min(args.instances, len(jpegs)))
    study = generate_uid()
    instances = [dx_bytes(p, study, args.side) for p in picks]
    port = free_port()
    modalities = {"pneumo": {"AET": "PNEUMO", "Host": "127.0.0.1", "Port": port}}
    options = {"ConcurrentJobs": args.associations, "JobsHistorySize": 10 * len(instances)}
    with local_orthanc(found[0], found[1], modalities, options=options) as orthanc:
        ids = upload(orthanc, instances)
        print(f"{len(ids)} DX instances of {sum(map(len, instances)) / len(instances) / 1e6:.2f} MB, sent by "
              f"Orthanc over {args.associations} associations to a Storage SCP that keeps nothing")
        for name, handlers in (("pneumo's socket reading", RECEIVING_HANDLERS),
                               ("pynetdicom's socket reading", CONNECTION_HANDLERS),
                               ("pneumo's socket reading", RECEIVING_HANDLERS)):
            rate, here, there = receive(orthanc, ids, args, port, handlers)
            print(f"{name}: {rate:.1f} instances/s; CPU ms per instance: receiver {here:.1f}, Orthanc {there:.1f}",
                  flush=True)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
