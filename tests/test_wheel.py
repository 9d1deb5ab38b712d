"""The wheel stands alone: built from the tree, installed into a fresh virtual environment outside the repository,
it predicts the sample X-rays and serves the page and the API. Proof that the weights, gates, ONNX files and the
web page ship inside the package rather than being found in the source tree.

Two installs. The full one (``installed``): installing torch and friends afresh would take minutes, so that
environment sees the dependencies already installed in the running interpreter's environment through a folder of
links to them (pneumo itself left out); pip still resolves the wheel's declared requirements against them and
installs nothing but the wheel. The light one (``light``, ``pip install pneumo`` without extras): a clean virtual
environment (no system or test site-packages) into which pip installs the wheel's requirements from the package
index pip is configured with; it must predict, explain and serve without torch.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.request
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from pneumo.inference.predictor import Predictor
from pneumo_testsupport.net import free_port

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "pneumo"
ASSETS = Path(__file__).parent / "assets"
SKIP_PARTS = {"__pycache__"}
SKIP_SUFFIXES = {".pyc", ".pyo"}

pytestmark = pytest.mark.slow


def _package_files() -> list[str]:
    """Every file of the package in the tree, as a path inside the wheel (``pneumo/...``)."""
    return sorted(str(p.relative_to(PACKAGE.parent)) for p in PACKAGE.rglob("*")
                  if p.is_file() and not SKIP_PARTS & set(p.parts) and p.suffix not in SKIP_SUFFIXES)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from the tree, once for both installs."""
    return _build_wheel(tmp_path_factory.mktemp("wheel-build"))


def _build_wheel(out: Path) -> Path:
    source = _mkdir(out / "source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    dist = out / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    "-w", str(dist), str(source)], check=True, cwd=out, env=_clean_env(out))
    (wheel,) = dist.glob("pneumo-*.whl")
    return wheel


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def _clean_env(home: Path) -> dict[str, str]:
    """The environment without anything that points Python at the source tree, with caches and data in ``home``."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}}
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / "data"), PNEUMO_CACHE=str(home / "cache"),
               MPLCONFIGDIR=str(home / "mpl"), OMP_NUM_THREADS="1", PYTHONNOUSERSITE="1")
    return env


def _dependency_links(target: Path) -> Path:
    """A folder of links to everything installed in this interpreter's site-packages except pneumo itself."""
    site = Path(sysconfig.get_paths()["purelib"])
    target.mkdir()
    for entry in site.iterdir():
        if "pneumo" in entry.name.lower() or entry.suffix == ".pth":
            continue
        (target / entry.name).symlink_to(entry)
    return target


def _fresh_venv(root: Path, deps: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    purelib = subprocess.run([str(root / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    (Path(purelib) / "pneumo-test-deps.pth").write_text(f"{deps}\n")
    return root


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback only)
        return response.status, response.read()


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    home: Path  # the working directory, outside the repository
    env: dict[str, str]

    # Liveness bounds, not speed targets: 4 images take seconds on an idle machine, minutes on a loaded one.
    def pneumo(self, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.venv / "bin" / "pneumo"), *args], cwd=self.home, env=self.env,
                              capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Installed:
    """The wheel built from the tree and installed into a fresh virtual environment in a temporary folder."""
    root = tmp_path_factory.mktemp("wheel")
    home = _mkdir(root / "elsewhere")
    env = _clean_env(home)
    venv = _fresh_venv(root / "venv", _dependency_links(root / "deps"))
    python = str(venv / "bin" / "python")
    # Requirements resolved (not --no-deps) against what the fresh environment sees, with no index to fall back on:
    # a requirement the environment does not satisfy fails the install. Only the wheel gets installed.
    subprocess.run([python, "-m", "pip", "install", "--no-index", "-q", str(wheel)], check=True, cwd=home, env=env)
    return Installed(wheel=wheel, venv=venv, home=home, env=env)


def test_wheel_holds_every_file_of_the_package(installed: Installed) -> None:
    in_wheel = set(zipfile.ZipFile(installed.wheel).namelist())
    missing = [name for name in _package_files() if name not in in_wheel]
    assert not missing, f"files of the package left out of {installed.wheel.name}: {missing}"


def test_installed_package_is_imported_from_the_fresh_environment(installed: Installed) -> None:
    location = subprocess.run([str(installed.venv / "bin" / "python"), "-c", "import pneumo; print(pneumo.__file__)"],
                              check=True, cwd=installed.home, env=installed.env, capture_output=True,
                              text=True).stdout.strip()
    assert Path(location).resolve().is_relative_to((installed.venv / "lib").resolve()), location


def test_installed_predict_matches_the_tree(installed: Installed) -> None:
    images = shutil.copytree(ASSETS, installed.home / "xrays", ignore=shutil.ignore_patterns("*.md"))
    done = installed.pneumo("predict", str(images), "--format", "json")
    assert done.returncode == 0, done.stderr
    rows = {Path(r["path"]).name: r for r in json.loads(done.stdout)}
    assert sorted(rows) == sorted(p.name for p in ASSETS.glob("*.jpeg"))
    # The installed copy gives what the tree's copy gives: the same weights, gate and threshold shipped.
    reference = Predictor.load("default")
    assert reference.has_gate
    for result in reference.predict_many(sorted(str(p) for p in images.glob("*.jpeg"))):
        row = rows[Path(result.path).name]
        assert row["error"] is None and row["label"] == result.label, (row, result)
        if result.probability is not None:
            assert row["probability"] == pytest.approx(result.probability, abs=1e-4)
        assert row["threshold"] == pytest.approx(reference.meta.threshold)


def test_installed_onnx_export_is_used_as_shipped(installed: Installed) -> None:
    shipped = PACKAGE / "weights" / "default" / "model.onnx"
    if not shipped.is_file():
        pytest.skip(f"no {shipped.relative_to(REPO)} in the tree: the default bundle ships no ONNX export yet")
    done = installed.pneumo("predict", str(ASSETS), "--backend", "onnx", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert all(row["error"] is None for row in json.loads(done.stdout))
    # A matching export inside the package is used as is: nothing exported into the cache.
    assert not (installed.home / "cache" / "onnx").exists()


def _serve(installed: Installed) -> tuple[subprocess.Popen, str]:
    """``pneumo serve`` from the installed environment, once healthy: the process and its base URL."""
    port = free_port()
    server = subprocess.Popen([str(installed.venv / "bin" / "pneumo"), "serve", "--host", "127.0.0.1", "--port",
                               str(port), "--data-dir", str(installed.home / "history")], cwd=installed.home,
                              env=installed.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    # A liveness bound, not a speed target: start-up (torch import, model load) is slow on a loaded machine.
    deadline = time.monotonic() + 600
    while True:
        if server.poll() is not None:
            raise AssertionError(f"pneumo serve exited: {server.stderr.read()}")
        try:
            status, body = _get(f"{base}/api/v1/health")
            break
        except OSError:
            if time.monotonic() > deadline:
                server.terminate()
                raise AssertionError("pneumo serve never answered /api/v1/health")
            time.sleep(0.5)
    assert status == 200 and json.loads(body)["status"] == "ok"
    return server, base


def test_installed_serve_is_healthy_with_its_page(installed: Installed) -> None:
    server, base = _serve(installed)
    try:
        status, page = _get(f"{base}/")
        assert status == 200 and b"/static/app.js" in page
        for asset in ("app.js", "app.css"):
            status, served = _get(f"{base}/static/{asset}")
            assert status == 200 and served == (PACKAGE / "service" / "static" / asset).read_bytes(), asset
        assert (installed.home / "history" / "history.sqlite3").is_file()
    finally:
        server.terminate()
        server.wait(timeout=30)


# ---- the light install: `pip install pneumo`, no extras, in a clean virtual environment ----------------------------

HEAVY = ("torch", "torchvision", "sklearn", "scipy", "matplotlib", "cv2", "onnx")
# Issue 26's bound for the torch-free package and its dependencies, installed (pip and setuptools, which every
# virtual environment brings, not counted).
LIGHT_INSTALL_MB = 400


@pytest.fixture(scope="module")
def light(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Installed:
    """The wheel installed without extras into a clean virtual environment: its requirements come from the package
    index pip is configured with (PyPI, or a local mirror), not from the test environment."""
    root = tmp_path_factory.mktemp("light")
    home = _mkdir(root / "elsewhere")
    env = _clean_env(home)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)  # no --system-site-packages
    done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                           str(wheel)], cwd=home, env=env, capture_output=True, text=True, timeout=1200)
    if done.returncode != 0 and "No matching distribution found" in done.stderr:
        pytest.skip(f"no package index reachable for the light install's requirements: {done.stderr[-300:]}")
    assert done.returncode == 0, done.stderr[-3000:]
    return Installed(wheel=wheel, venv=venv, home=home, env=env)


def test_light_install_has_no_torch_and_stays_small(light: Installed) -> None:
    python = str(light.venv / "bin" / "python")
    for module in HEAVY:
        done = subprocess.run([python, "-c", f"import {module}"], cwd=light.home, env=light.env, capture_output=True,
                              text=True)
        assert done.returncode != 0 and "ModuleNotFoundError" in done.stderr, f"{module} is importable"
    purelib = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  check=True, capture_output=True, text=True).stdout.strip())
    size = sum(f.stat().st_size for entry in purelib.iterdir() if entry.name.split("-")[0] not in ("pip", "setuptools")
               for f in ([entry] if entry.is_file() else entry.rglob("*")) if f.is_file() and not f.is_symlink())
    assert size / 1e6 <= LIGHT_INSTALL_MB, f"the light install takes {size / 1e6:.0f} MB"


def test_light_predict_with_heatmaps_matches_the_full_install(light: Installed) -> None:
    images = shutil.copytree(ASSETS, light.home / "xrays-light", ignore=shutil.ignore_patterns("*.md"))
    cams = light.home / "cams"
    done = light.pneumo("predict", str(images), "--cam", str(cams), "--format", "json")
    assert done.returncode == 0, done.stderr
    rows = {Path(r["path"]).name: r for r in json.loads(done.stdout)}
    reference = Predictor.load("default", backend="torch")  # the full install's own PyTorch path
    for result in reference.predict_many(sorted(str(p) for p in images.glob("*.jpeg"))):
        row = rows[Path(result.path).name]
        assert row["error"] is None and row["label"] == result.label, (row, result)
        assert row["probability"] == pytest.approx(result.probability, abs=1e-4)
    heatmaps = sorted(cams.glob("*.png"))
    assert len(heatmaps) == len(rows)
    for image in images.glob("*.jpeg"):
        (heatmap,) = [h for h in heatmaps if h.name.startswith(image.stem + "-")]
        assert heatmap.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _post_image(url: str, image: Path) -> dict:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.jpeg\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + image.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 (loopback only)
        return json.loads(response.read())


def test_light_serve_answers_with_a_heatmap(light: Installed) -> None:
    server, base = _serve(light)
    try:
        image = sorted(ASSETS.glob("person*.jpeg"))[0]
        answer = _post_image(f"{base}/api/v1/predict", image)
        assert answer["label"] == Predictor.load("default").predict(image).label
        assert answer["heatmap"] and answer["heatmap"].startswith("iVBORw0KGgo")  # base64 of a PNG signature
        status, page = _get(f"{base}/")
        assert status == 200 and b"/static/app.js" in page
    finally:
        server.terminate()
        server.wait(timeout=30)
