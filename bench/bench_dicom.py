"""The DICOM node under load: figures, not pass/fail.

    python bench/bench_dicom.py [--model default] [--data ../shared/data/kermany/train] [--instances 200] [--side 2048]

Starts a throwaway Orthanc (pneumo_testsupport/orthanc.py, which the tests use too) and ``pneumo serve --dicom-port``
as a subprocess with a fresh SQLite history, forwarding its reports to Orthanc. Builds DX instances with pydicom
from X-ray JPEGs (plus a few CT instances that must be refused) and sends them over ``--associations`` concurrent
associations, then waits until every report is in Orthanc. ``--sender orthanc`` (the default) is the hospital's
path: the instances are uploaded to Orthanc first, untimed, and Orthanc C-STOREs them to the node in one job per
association (a CT in a job of its own, since Orthanc ends a job at its first refused instance), with its default
PDU size. ``--sender pynetdicom`` sends them from this process. Prints:

* answered: every C-STORE got a status (Success or a refusal), none timed out;
* lost: readings missing from the history or from Orthanc (SRs counted there);
* the node still answers C-ECHO and /health afterwards; its RSS at each quarter of the run (memory steady);
* instances/s through the node (receive, predict, SR, forward) against the Predictor's own
  ``predict_many`` rate on the same DICOM bytes, measured in this run (target: ratio >= 0.8).

Exit status 1 when an instance went unanswered or a reading went missing.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import Verification

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout root: pneumo_testsupport/

from pneumo_testsupport.net import free_port  # noqa: E402
from pneumo_testsupport.orthanc import find_orthanc, local_orthanc  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="default", help="bundle for pneumo serve and the reference Predictor")
    p.add_argument("--data", default=str(ROOT / "tests" / "assets"), help="folder of chest X-ray JPEGs (recursive)")
    p.add_argument("--instances", type=int, default=200, help="C-STOREs in all, refusals included")
    p.add_argument("--associations", type=int, default=4, help="concurrent associations")
    p.add_argument("--sender", choices=("orthanc", "pynetdicom"), default="orthanc",
                   help="who C-STOREs the instances to the node: Orthanc (a PACS) or pynetdicom in this process")
    p.add_argument("--refused", type=int, default=10, help="how many of the instances are CT (must be refused)")
    p.add_argument("--side", type=int, default=2048,
                   help="longest side of the DX instances in pixels, the X-rays resized up or down to it (a DX or "
                        "CR detector gives 2,000-3,000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds the sender waits for each answer")
    return p


def dx_bytes(jpeg: Path, study: str, side: int, sop_class: str = DigitalXRayImageStorageForPresentation) -> bytes:
    image = Image.open(jpeg).convert("L")
    scale = side / max(image.size)
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                         Image.Resampling.BILINEAR)
    pixels = np.asarray(image).astype(np.uint16) * 16
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("bench", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Bench^Patient", "BENCH-1", "", "O"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID, ds.ReferringPhysicianName = "20261201", "120000", "", "1", ""
    ds.Modality = "CT" if sop_class == CTImageStorage else "DX"
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.BodyPartExamined, ds.ViewPosition, ds.PatientOrientation = "CHEST", "PA", ["L", "F"]
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def start_node(args, data_dir: Path, http_port: int, dicom_port: int, orthanc) -> subprocess.Popen:
    command = [sys.executable, "-m", "pneumo.cli", "serve", "--model", args.model, "--port", str(http_port),
               "--data-dir", str(data_dir), "--log-level", "warning", "--dicom-port", str(dicom_port),
               "--dicom-allow", f"BENCHSCU,{orthanc.aet}",
               "--dicom-forward", f"{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}"]
    env = {k: v for k, v in os.environ.items() if k != "PNEUMO_API_KEY"}
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    log = open(data_dir / "serve.log", "wb")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 900  # importing torch takes minutes on a busy machine
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"pneumo serve exited with {server.returncode}: "
                               f"{(data_dir / 'serve.log').read_text(errors='replace')[-1500:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{http_port}/api/v1/health", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    server.terminate()
    raise RuntimeError("pneumo serve did not answer /health within 900 s")


def send_all(port: int, chunk: list[bytes], timeout: float) -> list[int]:
    """C-STORE the chunk over one association (a new one if the node drops it); -1: no answer."""
    import pydicom

    ae = AE(ae_title="BENCHSCU")
    for sop_class in (DigitalXRayImageStorageForPresentation, CTImageStorage):
        ae.add_requested_context(sop_class, ExplicitVRLittleEndian)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    statuses: list[int] = []
    assoc = None
    for data in chunk:
        if assoc is None or not assoc.is_established:
            assoc = ae.associate("127.0.0.1", port, ae_title="PNEUMO")
        if not assoc.is_established:
            statuses.append(-1)
            continue
        status = assoc.send_c_store(pydicom.dcmread(io.BytesIO(data)))
        statuses.append(int(status.Status) if status and "Status" in status else -1)
    if assoc is not None and assoc.is_established:
        assoc.release()
    return statuses


def upload(orthanc, instances: list[bytes]) -> list[str]:
    """Orthanc's ids of the instances, uploaded over its REST API."""
    with orthanc.client() as http:
        return [http.post("/instances", content=data).raise_for_status().json()["ID"] for data in instances]


def send_through_orthanc(orthanc, ids: list[str], is_ct: list[bool], associations: int, timeout: float
                         ) -> list[int]:
    """Have Orthanc C-STORE the instances to the node ("pneumo" modality): the DX split over ``associations``
    jobs, each CT in a job of its own. A status per instance: 0 for a DX whose job succeeded, the DIMSE status
    Orthanc reports for a refused CT, -1 for no answer (a job that failed otherwise, or did not end in time)."""
    dx = [i for i, ct in zip(ids, is_ct) if not ct]
    jobs = [(chunk, False) for chunk in (dx[k::associations] for k in range(associations)) if chunk]
    jobs += [([i], True) for i, ct in zip(ids, is_ct) if ct]
    statuses: list[int] = []
    with orthanc.client() as http:
        running = [(http.post("/modalities/pneumo/store", json={"Resources": chunk, "Synchronous": False})
                    .raise_for_status().json()["ID"], chunk, ct) for chunk, ct in jobs]
        deadline = time.monotonic() + timeout * len(ids)
        for job, chunk, ct in running:
            while True:
                state = http.get(f"/jobs/{job}").json()
                if state["State"] in ("Success", "Failure") or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            if state["State"] == "Success":
                statuses += [0] * len(chunk)
                continue
            # A refusal: Orthanc names the DIMSE status in its error details (e.g. "... status 0x0122 ...").
            code = re.search(r"0x([0-9A-Fa-f]{4})", json.dumps(state))
            if not (ct and code):
                print(f"job of {len(chunk)} instance(s) ended {state['State']}: "
                      f"{state.get('ErrorDescription')} {state.get('ErrorDetails', '')}", flush=True)
            statuses += [int(code.group(1), 16) if ct and code else -1] * len(chunk)
    return statuses


def echo(port: int) -> bool:
    ae = AE(ae_title="BENCHSCU")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="PNEUMO")
    if not assoc.is_established:
        return False
    ok = assoc.send_c_echo().Status == 0
    assoc.release()
    return ok


def predictor_rate(model: str, instances: list[bytes]) -> tuple[float, float]:
    """Instances/s of Predictor.predict_many on the DICOM bytes, and its CPU seconds per instance."""
    from pneumo.inference.predictor import Predictor

    predictor = Predictor.load(model)
    predictor.predict_many(instances[:8])  # warm-up
    cpu, started = time.process_time(), time.perf_counter()
    predictor.predict_many(instances)
    return len(instances) / (time.perf_counter() - started), (time.process_time() - cpu) / len(instances)


def main(args: argparse.Namespace) -> int:
    found = find_orthanc()
    if found is None:
        raise SystemExit("Orthanc is not installed: apt-get install orthanc orthanc-dicomweb (scripts/setup.sh)")
    jpegs = sorted(p for p in Path(args.data).rglob("*") if p.suffix.lower() in (".jpeg", ".jpg"))
    if not jpegs:
        raise SystemExit(f"no JPEGs under {args.data}")
    rng = random.Random(args.seed)
    readable = args.instances - args.refused
    picks = [jpegs[i % len(jpegs)] for i in range(readable)] if len(jpegs) < readable else rng.sample(jpegs, readable)
    study = generate_uid()
    print(f"building {readable} DX + {args.refused} CT instances (longest side {args.side} px) ...", flush=True)
    dx = [dx_bytes(p, study, args.side) for p in picks]
    ct = [dx_bytes(picks[i % len(picks)], study, args.side, CTImageStorage) for i in range(args.refused)]
    everything = [(data, False) for data in dx] + [(data, True) for data in ct]
    rng.shuffle(everything)
    print(f"instances: {len(everything)}, {sum(len(d) for d, _ in everything) / len(everything) / 1e6:.2f} MB each "
          "on average")

    reference, reference_cpu = predictor_rate(args.model, dx)
    print(f"Predictor.predict_many on the same {len(dx)} DICOM files: {reference:.2f} instances/s, "
          f"{reference_cpu * 1e3:.0f} CPU ms each")

    node_port, http_port = free_port(), free_port()
    modalities = {"pneumo": {"AET": "PNEUMO", "Host": "127.0.0.1", "Port": node_port}}
    # One job per association at a time (Orthanc runs 2 at once by default).
    options = {"ConcurrentJobs": args.associations, "DicomScuTimeout": int(args.timeout),
               "JobsHistorySize": 10 * args.instances}  # finished jobs stay visible (default: the last 10)
    with tempfile.TemporaryDirectory(prefix="pneumo-bench-dicom-") as tmp, \
            local_orthanc(found[0], found[1], modalities, options=options) as orthanc:
        data_dir = Path(tmp)
        server = start_node(args, data_dir, http_port, node_port, orthanc)
        health = f"http://127.0.0.1:{http_port}/api/v1/status"  # the node counts (no key: auth is off here)
        try:
            if args.sender == "orthanc":
                print(f"uploading the {len(everything)} instances to Orthanc (not timed) ...", flush=True)
                ids = upload(orthanc, [data for data, _ in everything])
            idle_rss = rss_mib(server.pid)
            during: list[float] = []
            sampling = threading.Event()

            def sample() -> None:
                while not sampling.wait(0.25):
                    during.append(rss_mib(server.pid))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            cpu_before = {"node": cpu_seconds(server.pid), "Orthanc": cpu_seconds(orthanc.pid),
                          "this bench": time.process_time()}
            started = time.perf_counter()
            if args.sender == "orthanc":
                statuses = send_through_orthanc(orthanc, ids, [ct for _, ct in everything], args.associations,
                                                args.timeout)
            else:
                chunks = [[data for data, _ in everything[i::args.associations]] for i in range(args.associations)]
                with ThreadPoolExecutor(args.associations) as pool:
                    statuses = [s for part in pool.map(lambda c: send_all(node_port, c, args.timeout),
                                                       chunks) for s in part]
            sent_s = time.perf_counter() - started
            deadline = time.monotonic() + 1800
            while time.monotonic() < deadline:
                try:
                    node = httpx.get(health, timeout=60).json()["dicom"]
                except httpx.TransportError:  # a busy machine: ask again
                    continue
                if node["waiting"] == 0 and node["read"] + node["failed"] >= statuses.count(0) \
                        and node["reports_waiting"] == 0:
                    break
                time.sleep(0.2)
            elapsed = time.perf_counter() - started
            cpu_used = {"node": cpu_seconds(server.pid), "Orthanc": cpu_seconds(orthanc.pid),
                        "this bench": time.process_time()}
            cpu_used = {name: value - cpu_before[name] for name, value in cpu_used.items()}
            sampling.set()
            sampler.join()
            read_rss = rss_mib(server.pid)
            node = httpx.get(health, timeout=120).json()["dicom"]
            history = httpx.get(f"http://127.0.0.1:{http_port}/api/v1/history?limit=1", timeout=120).json()["total"]
            with orthanc.client() as http:
                srs = [s for s in http.get("/series?expand").json() if s["MainDicomTags"].get("Modality") == "SR"]
                in_orthanc = sum(len(s["Instances"]) for s in srs)
            alive = echo(node_port) and server.poll() is None
        except BaseException:
            print(f"node exit status {server.poll()}; Orthanc alive: {Path(f'/proc/{orthanc.pid}').exists()}; "
                  "the node's log ends:\n" + (data_dir / "serve.log").read_text(errors="replace")[-3000:], flush=True)
            raise
        finally:
            server.terminate()
            server.wait(timeout=60)
    accepted, refused = statuses.count(0), sum(1 for s in statuses if s not in (0, -1))
    unanswered = statuses.count(-1)
    lost_history, lost_orthanc = accepted - history, accepted - in_orthanc
    rate = node["read"] / elapsed
    print(f"answered: {len(statuses) - unanswered}/{len(statuses)} ({accepted} stored, {refused} refused, "
          f"{unanswered} unanswered); all sent in {sent_s:.1f} s over {args.associations} associations by "
          f"{args.sender}")
    print(f"history rows: {history}, SRs in Orthanc: {in_orthanc}; lost: {lost_history} (history), "
          f"{lost_orthanc} (Orthanc); node failures: {node['failed']}")
    print(f"node still up (C-ECHO, process alive): {alive}")
    print(f"node RSS, MiB: idle {idle_rss:.0f}, during {min(during, default=idle_rss):.0f}-"
          f"{max(during, default=idle_rss):.0f}, when all were read {read_rss:.0f}")
    # On this machine the sender and the PACS share the node's cores; in a hospital they run elsewhere. With
    # --sender orthanc, Orthanc's CPU is the sender's and the reports' receiver's.
    print("CPU ms per stored instance: " + ", ".join(f"{name} {value / max(accepted, 1) * 1e3:.0f}"
                                                     for name, value in cpu_used.items())
          + f"; Predictor alone {reference_cpu * 1e3:.0f}")
    print(f"through the node: {rate:.2f} instances/s ({node['read']} read in {elapsed:.1f} s, receive to SR in "
          f"Orthanc); Predictor: {reference:.2f}/s; ratio {rate / reference:.2f} (target >= 0.8)")
    return 1 if unanswered or lost_history or lost_orthanc or not alive else 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
