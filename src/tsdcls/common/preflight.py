"""Checks of the config against the file system, run by the workflow before any job starts.

Standard library only: ``workflow/rules/common.smk`` calls ``problems(config)`` at parse time,
also under a Python that has nothing but Snakemake. Each problem is one line naming the config
key, the value and what to do; the stage code keeps its own checks for direct CLI use.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tsdcls.common import mteb_names
from tsdcls.common.variants import (
    OFFLINE_MODEL_ALIASES,
    OFFLINE_MODEL_TYPES,
    POSITION_BIAS_MODEL_TYPES,
)

FASHION_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                       "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def fashion_mnist_problems(root: str) -> list[str]:
    folder = Path(root)
    missing = [name for name in FASHION_MNIST_FILES
               if not (folder / name).is_file() and not (folder / f"{name}.gz").is_file()]
    if not missing:
        return []
    if not folder.is_dir():
        where = f"{root} is not a folder"
    else:
        where = f"{root} lacks {', '.join(m + '[.gz]' for m in missing)}"
    hint = (" (Debian: apt-get install dataset-fashion-mnist)"
            if root.rstrip("/") == "/usr/share/datasets/fashion-mnist" else "")
    return [f"config key 'dcls.data.root': {where}; point it at the folder holding the four "
            f"Fashion-MNIST IDX files{hint}"]


def image_folder_problems(root: str) -> list[str]:
    if not root:
        return ["config key 'dcls.data.root' is empty; set it to the ImageNet folder holding train/ and val/"]
    out = []
    for split in ("train", "val"):
        folder = Path(root) / split
        if not folder.is_dir():
            out.append(f"config key 'dcls.data.root': {folder} does not exist; the ImageFolder layout is "
                       f"{root}/{{train,val}}/<class>/<image>")
        elif not any(child.is_dir() for child in folder.iterdir()):
            out.append(f"config key 'dcls.data.root': {folder} holds no class folders (<class>/<image>)")
    return out


def dcls_data_problems(data: Mapping[str, Any]) -> list[str]:
    dataset = data.get("dataset")
    out = (fashion_mnist_problems(str(data.get("root") or "")) if dataset == "fashion_mnist"
           else image_folder_problems(str(data.get("root") or "")) if dataset == "imagefolder" else [])
    for name, path in (data.get("robustness") or {}).items():
        if not Path(str(path)).is_dir():
            out.append(f"config key 'dcls.data.robustness.{name}': {path} is not a folder; fix the path "
                       "or remove the entry")
    return out


def dcls_official_checkpoint_problems(dcls: Mapping[str, Any]) -> list[str]:
    """A published checkpoint to evaluate must be a file, and its 1000-class head needs ImageNet."""
    path = (dcls.get("evaluate") or {}).get("official_checkpoint")
    if not path:
        return []
    key = "config key 'dcls.evaluate.official_checkpoint'"
    if not Path(str(path)).is_file():
        return [f"{key}: {path} is not a file; download the ConvNeXt-dcls checkpoint (.pth) there or set it to null"]
    if (dcls.get("data") or {}).get("dataset") != "imagefolder":
        return [f"{key} is set, but 'dcls.data.dataset' is {dcls['data'].get('dataset')!r}: the published "
                "checkpoints classify ImageNet-1k; set dataset: imagefolder and root: the ImageNet folder"]
    return []


def model_problems(key: str, name: str) -> list[str]:
    """An offline alias, an existing folder, or a well-formed hub id (its existence is the
    staging step's business)."""
    if name in OFFLINE_MODEL_ALIASES or Path(name).is_dir() or HUB_ID.match(name):
        return []
    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1
    what = "folder does not exist" if looks_like_path else "is neither an offline model nor an org/name hub id"
    return [f"config key '{key}': model {name!r} {what}; use one of "
            f"{', '.join(OFFLINE_MODEL_ALIASES[::3])}, a sentence-transformers folder or a hub id"]


def _model_type(name: str) -> str | None:
    """transformers model_type of an offline alias or a folder's config.json; None when it is not
    known before a job (a hub id: the evaluation job checks it when the model has loaded)."""
    if name in OFFLINE_MODEL_TYPES:
        return OFFLINE_MODEL_TYPES[name]
    config = Path(name) / "config.json"
    try:
        return str(json.loads(config.read_text(encoding="utf-8")).get("model_type")) if config.is_file() else None
    except (OSError, ValueError):
        return None


def position_bias_problems(ablation: Mapping[str, Any]) -> list[str]:
    """Models asked for the unscaled-position-bias ablation must have a relative position bias."""
    key = "tempscale.ablation.position_bias.models"
    out = []
    for name in map(str, (ablation.get("position_bias") or {}).get("models") or []):
        model_type = _model_type(name)
        if model_type is not None and model_type not in POSITION_BIAS_MODEL_TYPES:
            out.append(f"config key '{key}': model {name!r} (model_type {model_type}) has no relative position "
                       f"bias to leave unscaled; list only models with one ({', '.join(POSITION_BIAS_MODEL_TYPES)})")
    return out


def device_problems(config: Mapping[str, Any]) -> list[str]:
    if config.get("device") != "cpu":
        return []
    gpu_rules = {rule: res.get("gpus") for rule, res in (config["resources"].get("rules") or {}).items()}
    gpu_rules["defaults.gpu"] = config["resources"]["defaults"].get("gpu", {}).get("gpus")
    return [f"config key 'resources.{'rules.' if rule != 'defaults.gpu' else ''}{rule}.gpus' asks for "
            f"{gpus} GPU(s) while 'device' is cpu; set device: cuda or gpus: 0"
            for rule, gpus in gpu_rules.items() if gpus]


def hub_task_problems(hub: Mapping[str, Any]) -> list[str]:
    """Hub task and benchmark names against mteb's registry (the committed list, see
    tsdcls.common.mteb_names), so a typo fails now and not after a model has loaded."""
    tasks, benchmarks = list(hub.get("tasks") or []), list(hub.get("benchmarks") or [])
    if not tasks and not benchmarks:
        return []
    known, installed = mteb_names.committed_names(), mteb_names.installed_mteb_version()
    return (mteb_names.unknown_name_problems("tempscale.tasks.hub.tasks", "task", tasks, known["tasks"],
                                             known["mteb"], installed)
            + mteb_names.unknown_name_problems("tempscale.tasks.hub.benchmarks", "benchmark", benchmarks,
                                               known["benchmarks"], known["mteb"], installed))


def problems(config: Mapping[str, Any]) -> list[str]:
    """Every problem that can be known before the first job, one line each."""
    out = device_problems(config)
    if config["dcls"]["enabled"]:
        out += dcls_data_problems(config["dcls"]["data"])
        out += dcls_official_checkpoint_problems(config["dcls"])
    if config["tempscale"]["enabled"]:
        section = config["tempscale"]
        out += [p for m in section["models"] for p in model_problems("tempscale.models", str(m))]
        out += [p for m in section["ablation"]["models"] for p in model_problems("tempscale.ablation.models", str(m))]
        out += position_bias_problems(section["ablation"])
        effect = section.get("position_bias_effect") or {}
        if effect.get("enabled"):
            out += model_problems("tempscale.position_bias_effect.model", str(effect["model"]))
            out += [p.replace(".ablation.position_bias.models", ".position_bias_effect.model")
                    for p in position_bias_problems({"position_bias": {"models": [effect["model"]]}})]
        out += hub_task_problems(section["tasks"].get("hub") or {})
    if config["theory"]["enabled"]:
        out += model_problems("theory.real_attention.model", str(config["theory"]["real_attention"]["model"]))
    return out
