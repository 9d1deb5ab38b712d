"""Model files are data, never code: no pickle is ever executed when a bundle or a checkpoint loads."""

from __future__ import annotations

import ast
import hashlib
import json
import pickle
from pathlib import Path

import pytest
import torch

import pneumo
from pneumo.bundle import META_FILE, WEIGHTS_FILE, BundleError
from pneumo.inference.loading import load_bundle
from pneumo.models import create_model
from pneumo.training.state import STATE_FILE, load_state

from pneumo_testsupport.corpus import CodeRunningPickle

SRC = Path(pneumo.__file__).parent


def _rehash(bundle: Path) -> None:
    """Record the current weights' checksum, so only the loader's own format check stands in the way."""
    meta_path = bundle / META_FILE
    document = json.loads(meta_path.read_text())
    document["files"][WEIGHTS_FILE] = hashlib.sha256((bundle / WEIGHTS_FILE).read_bytes()).hexdigest()
    meta_path.write_text(json.dumps(document))


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_bundle_with_pickled_weights_is_refused_without_running_it(tiny_bundle: Path, tmp_path: Path,
                                                                    writer: str) -> None:
    marker = tmp_path / "pwned"
    state = create_model("simple_cnn", classes=2).state_dict()
    state["evil"] = CodeRunningPickle(marker)
    with (tiny_bundle / WEIGHTS_FILE).open("wb") as handle:
        torch.save(state, handle) if writer == "torch.save" else pickle.dump(state, handle)
    _rehash(tiny_bundle)
    with pytest.raises(BundleError, match=WEIGHTS_FILE):
        load_bundle(tiny_bundle)
    assert not marker.exists(), "loading a bundle executed a pickle"


def test_training_state_pickle_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / STATE_FILE
    torch.save({"progress": {}, "optimizer": CodeRunningPickle(marker)}, path)
    model = create_model("simple_cnn", classes=2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=2)
    with pytest.raises(ValueError, match="never loaded as a general pickle"):
        load_state(path, optimizer, scheduler)
    assert not marker.exists(), "resuming executed a pickle from train_state.pt"


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "not_safetensors"])
def test_damaged_weights_are_refused(tiny_bundle: Path, damage: str) -> None:
    weights = tiny_bundle / WEIGHTS_FILE
    data = weights.read_bytes()
    if damage == "truncate":
        weights.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        weights.write_bytes(data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:])
    elif damage == "empty":
        weights.write_bytes(b"")
    else:
        weights.write_bytes(b'{"not": "safetensors"}')
        _rehash(tiny_bundle)
    with pytest.raises(BundleError):
        load_bundle(tiny_bundle)


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    if isinstance(node, ast.Name):
        return node.id
    return "?"


FORBIDDEN_IMPORTS = {"pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
FORBIDDEN_CALLS = {"pickle.load", "pickle.loads", "torch.jit.load", "pd.read_pickle", "pandas.read_pickle",
                   "numpy.load", "np.load"}


def test_source_never_unpickles() -> None:
    """Static check over src/: ``torch.load`` only with ``weights_only=True``; no pickle-family loaders."""
    problems = []
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 20
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                bad = {n.split(".")[0] for n in names if n} & FORBIDDEN_IMPORTS
                if bad:
                    problems.append(f"{path}:{node.lineno} imports {sorted(bad)}")
        for call in _calls(tree):
            name = _name(call.func)
            keywords = {k.arg: k.value for k in call.keywords}
            if name.endswith("torch.load") or name == "load" and "weights_only" in keywords:
                flag = keywords.get("weights_only")
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    problems.append(f"{path}:{call.lineno} {name}() without weights_only=True")
            elif name in FORBIDDEN_CALLS:
                allow = keywords.get("allow_pickle")
                if name.endswith("np.load") or name.endswith("numpy.load"):
                    # numpy refuses pickled arrays unless allow_pickle=True is passed (its default since 1.16.3)
                    if allow is None or isinstance(allow, ast.Constant) and allow.value is False:
                        continue
                problems.append(f"{path}:{call.lineno} calls {name}()")
    assert not problems, "\n".join(problems)
