"""The saved form of a compiled model: a folder with the IR as text, the weights, and a JSON manifest.

    model.gir            the optimized graph (constants printed as `external`)
    weights.safetensors  the constants by name (weights.npz where safetensors lacks the dtype); mostly-zero ones
                         (unstructured pruning) as indices + values where that is smaller; int8 constants whose
                         values fit 4 bits (int4 weight-only codes) two per byte
    manifest.json        format version, target, pipeline, input/output types, sha256 of every file
    forward.py           the generated cpu code, for people to read; never executed by `load`

Saving writes a sibling temporary folder and renames it into place, so a crash never leaves half an artifact,
and an existing non-empty folder is only replaced with `overwrite=True`. Loading uses no pickle: the IR is
parsed, the weights read by safetensors (or numpy with allow_pickle=False), hashes checked, code regenerated.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from graphopt.errors import GraphoptError, ModelLoadError
from graphopt.ir.binding import SYMBOL_BOUNDS

__all__ = ["save", "load", "check_destination", "FORMAT", "VERSION"]

FORMAT = "graphopt-artifact"
VERSION = 1
ARTIFACT_FILES = frozenset({"manifest.json", "model.gir", "weights.safetensors", "weights.npz", "forward.py",
                            "report.json", "layers.png"})  # what `graphopt compile` adds: its report, the layer chart


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_weights(folder: Path, consts: dict[str, np.ndarray]) -> str:
    try:
        from safetensors.numpy import save_file

        save_file({k: np.ascontiguousarray(v) for k, v in consts.items()}, str(folder / "weights.safetensors"))
        return "weights.safetensors"
    except (ImportError, ValueError, TypeError, KeyError):  # a dtype safetensors.numpy cannot store
        (folder / "weights.safetensors").unlink(missing_ok=True)
        with (folder / "weights.npz").open("wb") as f:
            np.savez(f, **{f"c{i}": v for i, v in enumerate(consts.values())},
                     names=np.array(list(consts), dtype=str))
        return "weights.npz"


_SPARSE_MIN = 4096  # elements: below this the indices' bookkeeping is not worth it


def _sparse_form(consts: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Constants that are mostly zeros (unstructured pruning) stored as flat int32 indices + values where that is
    smaller than dense: nonzeros · (4 + itemsize) < size · itemsize."""
    out, sparse = dict(consts), []
    for name, a in consts.items():
        if a.size < _SPARSE_MIN or a.dtype.kind != "f" or a.size >= 2**31:
            continue
        nz = np.flatnonzero(a)
        keys = (f"{name}/sparse-indices", f"{name}/sparse-values")
        if nz.size * (4 + a.itemsize) < a.size * a.itemsize and not any(k in consts for k in keys):
            del out[name]
            out[keys[0]], out[keys[1]] = nz.astype(np.int32), np.ascontiguousarray(a.ravel()[nz])
            sparse.append(name)
    return out, sparse


def _nibble_form(consts: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[str]]:
    """int8 constants whose values all lie in -8..7 (the IR keeps int4 codes one per byte) stored two per byte:
    low nibble first, as ONNX packs INT4. Lossless for any such array, whatever it means."""
    out, packed = dict(consts), []
    for name, a in consts.items():
        key = f"{name}/int4"
        if a.dtype != np.int8 or a.size < _SPARSE_MIN or key in consts or a.min() < -8 or a.max() > 7:
            continue
        u = (a.ravel().astype(np.int16) & 0xF).astype(np.uint8)
        u = np.concatenate([u, np.zeros(u.size % 2, np.uint8)])
        del out[name]
        out[key] = u[0::2] | (u[1::2] << 4)
        packed.append(name)
    return out, packed


def _unpacked(consts: dict[str, np.ndarray], manifest: dict[str, Any]) -> dict[str, np.ndarray]:
    names, shapes = manifest.get("int4", []), manifest.get("shapes", {})
    if not isinstance(names, list) or not all(isinstance(n, str) and isinstance(shapes.get(n), list) for n in names):
        raise ModelLoadError("manifest key 'int4' must list constants whose shapes the manifest gives")
    for name in names:
        b = consts.pop(f"{name}/int4")
        size = int(np.prod(shapes[name]))
        if b.dtype != np.uint8 or b.ndim != 1 or b.size != (size + 1) // 2:
            raise ModelLoadError(f"int4 constant {name!r}: {b.size} bytes do not hold its shape {shapes[name]}")
        u = np.empty(2 * b.size, np.uint8)
        u[0::2], u[1::2] = b & 0xF, b >> 4
        consts[name] = ((u[:size].astype(np.int8) ^ 8) - 8).reshape(shapes[name])  # sign-extend the nibble
    return consts


def _dense_form(consts: dict[str, np.ndarray], manifest: dict[str, Any]) -> dict[str, np.ndarray]:
    sparse, shapes = manifest.get("sparse", []), manifest.get("shapes", {})
    if not isinstance(sparse, list) or not all(isinstance(n, str) and isinstance(shapes.get(n), list) for n in sparse):
        raise ModelLoadError("manifest key 'sparse' must list constants whose shapes the manifest gives")
    for name in sparse:
        idx, val = consts.pop(f"{name}/sparse-indices"), consts.pop(f"{name}/sparse-values")
        size = int(np.prod(shapes[name]))
        if idx.ndim != 1 or idx.shape != val.shape or idx.dtype != np.int32 or (idx.size and (
                idx.min() < 0 or idx.max() >= size)):
            raise ModelLoadError(f"sparse constant {name!r}: indices do not fit its shape {shapes[name]}")
        dense = np.zeros(size, val.dtype)
        dense[idx] = val
        consts[name] = dense.reshape(shapes[name])
    return consts


def _read_weights(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        return load_file(str(path))
    with np.load(path, allow_pickle=False) as z:
        names = [str(n) for n in z["names"]]
        return {n: z[f"c{i}"] for i, n in enumerate(names)}


_MANIFEST_KEYS = {"format": str, "version": int, "target": str, "pipeline": str, "graph": str, "weights": str,
                  "sha256": dict}


def _read_manifest(path: Path) -> dict[str, Any]:
    """The manifest, checked for shape: a dict with every key of the right type (else ModelLoadError)."""
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{path}: not JSON ({e})") from None
    if not isinstance(manifest, dict):
        raise ModelLoadError(f"{path}: the manifest is a {type(manifest).__name__}, not a JSON object")
    if manifest.get("format") != FORMAT:
        raise ModelLoadError(f"{path}: format is {manifest.get('format')!r}, expected {FORMAT!r}")
    if manifest.get("version") != VERSION:
        raise ModelLoadError(f"{path}: artifact version {manifest.get('version')} is not {VERSION}")
    for key, kind in _MANIFEST_KEYS.items():
        if not isinstance(manifest.get(key), kind):
            raise ModelLoadError(f"{path}: manifest key {key!r} is missing or not a {kind.__name__}")
    if not isinstance(manifest.get("shapes", {}), dict):
        raise ModelLoadError(f"{path}: manifest key 'shapes' is not an object")
    return manifest


def check_destination(path: Path, *, overwrite: bool) -> None:
    """Raise FileExistsError unless `save` may write `path`: absent, empty, or (with overwrite) an artifact.

    overwrite replaces an artifact, never a folder of the user's: a mistyped path must not lose their work."""
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} exists and is not a folder")
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{path} is not empty; pass overwrite=True (--overwrite) to replace it")
        foreign = sorted(p.name for p in path.iterdir() if p.name not in ARTIFACT_FILES)
        if foreign or not (path / "manifest.json").is_file():
            what = f"holds {', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''}" if foreign else \
                "has no manifest.json"
            raise FileExistsError(f"{path} is not a graphopt artifact ({what}); overwrite=True replaces only an "
                                  "artifact folder. Choose another path or empty it yourself")


def save(model: Any, path: Path, *, overwrite: bool = False) -> Path:
    """Write `model` (a CompiledModel) to the folder `path`. Returns the path."""
    import graphopt

    check_destination(path, overwrite=overwrite)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        g = model.graph
        (tmp / "model.gir").write_text(g.format(max_inline=-1) + "\n")
        consts, sparse = _sparse_form({name: v.const for name, v in g.constants.items()})
        consts, nibbles = _nibble_form(consts)
        weights = _write_weights(tmp, consts)
        files = ["model.gir", weights]
        if model.source:
            (tmp / "forward.py").write_text(model.source)
            files.append("forward.py")
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "graphopt": graphopt.__version__,
            "target": model.target,
            "pipeline": model.pipeline,
            "graph": "model.gir",
            "weights": weights,
            "inputs": [{"name": v.name, "type": str(v.type)} for v in g.inputs],
            "outputs": [{"name": v.name, "type": str(v.type)} for v in g.outputs],
            "sha256": {f: _sha256(tmp / f) for f in files},
            # safetensors stores 0-d tensors as [1]; the shapes put them back exactly
            "shapes": {name: list(v.const.shape) for name, v in g.constants.items()},
            "symbol_bounds": g.metadata.get(SYMBOL_BOUNDS, {}),
            "sparse": sparse,
            "int4": nibbles,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if path.exists():
            old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old)
        else:
            tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load(path: Path, *, target: str | None = None) -> Any:
    """Read a folder written by `save` and compile it again for its target (or `target`)."""
    from graphopt.api import CompiledModel
    from graphopt.backends import get_backend
    from graphopt.ir import parse

    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise ModelLoadError(f"{path}: not a graphopt artifact (no manifest.json)")
    try:
        manifest = _read_manifest(manifest_path)
        files = {name: path / name for name in (manifest["graph"], manifest["weights"])}
        for name, file in files.items():
            if file.resolve().parent != path.resolve() or not file.is_file():
                raise ModelLoadError(f"{path}: manifest names {name!r}, which is not a file in the folder")
            if _sha256(file) != manifest["sha256"].get(name):
                raise ModelLoadError(f"{file}: sha256 does not match the manifest (file changed or corrupt)")
        consts = _unpacked(_dense_form(_read_weights(files[manifest["weights"]]), manifest), manifest)
        for name, shape in manifest.get("shapes", {}).items():
            if name in consts and consts[name].size == int(np.prod(shape)):
                consts[name] = consts[name].reshape(shape)
        graph = parse(files[manifest["graph"]].read_text(), constants=consts)
        bounds = manifest.get("symbol_bounds") or {}
        if not isinstance(bounds, dict) or not all(isinstance(b, list) and len(b) == 2 and
                                                   all(x is None or isinstance(x, int) for x in b)
                                                   for b in bounds.values()):
            raise ModelLoadError(f"{manifest_path}: symbol_bounds must map symbols to [min or null, max or null]")
        if bounds:
            graph.metadata[SYMBOL_BOUNDS] = bounds
    except ModelLoadError:
        raise
    except GraphoptError as e:
        raise ModelLoadError(f"{path}: {e}") from None
    except Exception as e:  # noqa: BLE001 - any reader's failure (safetensors, zip, json) is a bad artifact
        raise ModelLoadError(f"{path}: cannot read the artifact ({type(e).__name__}: {e})") from None
    target = target or manifest["target"]
    exe = get_backend(target).compile(graph)
    return CompiledModel(graph, exe, target=target, pipeline=manifest["pipeline"])
