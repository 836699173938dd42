"""Run one (model, TempScale variant) through mteb 2.x on every configured task.

``mteb.evaluate`` gets an explicit ``ResultCache`` under ``results/tempscale/mteb`` and
``overwrite_strategy="always"``: Snakemake alone decides what is out of date, mteb never reuses
a stale result. The variant is written into the mteb ModelMeta (name = base model + variant,
revision = hash of the variant settings), so results of different tau never share a folder.

Outputs (verb ``tempscale-evaluate``):

* ``scores``: one row per task x split x subset with the task's main score.
* ``per_item``: per-query / per-pair / per-experiment scores for the paired tests.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tsdcls.common.config import ConfigError
from tsdcls.tempscale.ablation import Variant, model_slugs, parse_variant

logger = logging.getLogger(__name__)

ITEM_METRIC = {"STS": "cosine_similarity"}  # task type -> per-item metric when it differs from main


def variant_revision(model: str, variant: Variant, settings: Mapping[str, Any]) -> str:
    """Revision string for mteb: a hash of everything that changes the variant's embeddings."""
    blob = json.dumps({"model": model, "variant": variant.slug, **settings}, sort_keys=True, default=str)
    return "tempscale-" + hashlib.sha256(blob.encode()).hexdigest()[:12]


def load_variant(model_name: str, variant: Variant, config: Mapping[str, Any], device: str) -> tuple[Any, str, dict[str, Any]]:
    """The SentenceTransformer with the variant applied, its mteb name, and its settings.

    The input length is raised to the model's position limit (MiniLM/MPNet: 512, not the 256
    or 384 their sentence-transformers configs truncate at) or ``tempscale.tasks.max_seq_length``.
    """
    from tsdcls.tempscale import patch

    fixed_tau = 1.0 if variant.mode == "adaptive" else variant.tau
    try:
        revision = patch.model_revision(config, model_name)
        model = patch.load_encoder(model_name, tau=fixed_tau, layers=variant.layers, device=device, revision=revision)
    except patch.UnsupportedArchitectureError as err:
        raise ConfigError(f"config key 'tempscale.ablation.models': model '{model_name}' is unsupported: {err}") from err
    except (OSError, ValueError) as err:
        raise ConfigError(f"config key 'tempscale.ablation.models': cannot load model '{model_name}': {err}") from err
    limit = patch._position_limit(model) or model.max_seq_length
    max_length = int(min(limit, config["tasks"].get("max_seq_length") or limit))
    model.max_seq_length = max_length
    settings: dict[str, Any] = {"max_seq_length": max_length}
    if variant.mode == "adaptive":
        adaptive = config["ablation"]["adaptive"]
        n_ref, exponent, tau_min = int(adaptive["n_ref"]), float(adaptive["exponent"]), float(adaptive["tau_min"])
        patch.apply_length_adaptive_tempscale(model, n_ref=n_ref, exponent=exponent, tau_min=tau_min, layers=variant.layers)
        name = patch.adaptive_variant_name(model_name, n_ref, exponent, tau_min)
        if variant.layers != "all":
            name += f"-{variant.layers}"
        model.model_card_data.model_name = name
        settings.update(adaptive={"n_ref": n_ref, "exponent": exponent, "tau_min": tau_min})
    else:
        name = patch.variant_name(model_name, variant.tau, variant.layers)
    return model, name, settings


def token_counter(model: Any) -> Any:
    """Count a text's tokens with the model's own tokenizer, special tokens excluded."""
    tokenizer = model.tokenizer

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    return count


def mteb_wrapper(model: Any, name: str, revision: str) -> Any:
    """mteb's SentenceTransformer wrapper with the variant in its ModelMeta (name + revision)."""
    from mteb.models import SentenceTransformerEncoderWrapper

    wrapper = SentenceTransformerEncoderWrapper(model)
    wrapper.mteb_model_meta = wrapper.mteb_model_meta.model_copy(update={"name": name, "revision": revision})
    return wrapper


def _capture_hub_per_query(task: Any) -> None:
    """Hub retrieval tasks keep per-query scores too (same hook the local tasks override)."""
    from mteb.abstasks.retrieval import AbsTaskRetrieval

    from tsdcls.tempscale.tasks.local import PER_ITEM_METRICS

    if hasattr(task, "per_item") or not isinstance(task, AbsTaskRetrieval):
        return
    task.per_item, task.gold = {}, {}

    def capture(scores: dict, qrels: Any, results: Any, hf_split: str, hf_subset: str) -> dict:
        task.per_item[(hf_split, hf_subset)] = {
            m: {q: float(v[m.replace("_at_", "_cut_")]) for q, v in scores.items()} for m in PER_ITEM_METRICS
        }
        return {}

    task.task_specific_scores = capture


def _length_of(split: str) -> float:
    prefix, _, tail = split.rpartition("_")
    return float(tail) if prefix and tail.isdigit() else math.nan


def evaluate_variant(
    model_name: str, variant: Variant, config: Mapping[str, Any], seed: int, device: str, cache_dir: Path, allow_network: bool
) -> tuple[Any, Any]:
    """Evaluate one variant on every configured task; returns (scores, per_item) DataFrames."""
    import mteb
    import pandas as pd

    from tsdcls.tempscale.tasks import build_tasks

    model, name, settings = load_variant(model_name, variant, config, device)
    tasks_cfg = config["tasks"]
    tasks = build_tasks(tasks_cfg, token_counter(model), settings["max_seq_length"], seed, allow_network)
    for task in tasks:
        _capture_hub_per_query(task)
    revision = variant_revision(model_name, variant, {**settings, "seed": seed})
    wrapper = mteb_wrapper(model, name, revision)
    result = mteb.evaluate(
        wrapper,
        tasks,
        cache=mteb.ResultCache(cache_path=cache_dir),
        overwrite_strategy="always",
        encode_kwargs={"batch_size": int(tasks_cfg["batch_size"]), "show_progress_bar": False},
        co2_tracker=False,
        show_progress_bar=True,
        raise_error=True,
    )
    by_name = {task.metadata.name: task for task in tasks}
    common = {
        "model": model_name, "variant": variant.slug, "tau": variant.tau, "layers": variant.layers,
        "tau_mode": variant.mode, "mteb_model_name": name, "mteb_model_revision": revision,
    }  # fmt: skip
    score_rows, item_rows = [], []
    for task_result in result.task_results:
        task = by_name[task_result.task_name]
        main = task.metadata.main_score
        task_type = task.metadata.type
        item_metric = ITEM_METRIC.get(task_type, main)
        for split, subsets in task_result.scores.items():
            for entry in subsets:
                subset = entry["hf_subset"]
                score_rows.append(
                    {
                        **common,
                        "task": task_result.task_name, "task_type": task_type, "split": split,
                        "length": _length_of(split), "subset": subset, "metric": main,
                        "score": float(entry["main_score"]), "item_metric": item_metric,
                        "revision": task.metadata.dataset["revision"],
                        "evaluation_time_s": task_result.evaluation_time,
                    }  # fmt: skip
                )
                per_metric = getattr(task, "per_item", {}).get((split, subset), {})
                gold = getattr(task, "gold", {}).get((split, subset), {})
                for metric, values in per_metric.items():
                    for item, value in values.items():
                        item_rows.append(
                            {**common, "task": task_result.task_name, "split": split, "subset": subset,
                             "metric": metric, "item": item, "value": value, "gold": gold.get(item, math.nan)}
                        )  # fmt: skip
    if result.exceptions:
        raise RuntimeError(f"mteb reported task errors: {result.exceptions}")
    return pd.DataFrame(score_rows), pd.DataFrame(item_rows)


def run_evaluation(job: Any) -> None:
    """Verb ``tempscale-evaluate``: one model x variant (job params 'model', 'variant')."""
    from tsdcls.common.io import write_csv
    from tsdcls.common.offline import is_offline
    from tsdcls.tempscale.tasks.hub import check_hub_access

    slugs = model_slugs(job.config)
    model_slug = str(job.params.get("model", ""))
    if model_slug not in slugs:
        raise ConfigError(f"model '{model_slug}' is not in config key 'tempscale.ablation.models' ({sorted(slugs)})")
    variant = parse_variant(str(job.params.get("variant", "")), job.config)
    cache_dir = Path(job.params.get("mteb_cache", "results/tempscale/mteb"))
    allow_network = not is_offline()  # the CLI sets the hub's offline switches unless --allow-network
    hub = job.config["tasks"].get("hub", {})
    check_hub_access(hub.get("tasks", []), allow_network, hub.get("benchmarks", []))  # before any model load
    scores, per_item = evaluate_variant(
        slugs[model_slug], variant, job.config, job.seed, job.device, cache_dir, allow_network
    )
    prov = job.prov(model=slugs[model_slug], variant=variant.slug)
    write_csv(job.output("per_item"), per_item, prov)
    write_csv(job.output("scores"), scores, prov)
