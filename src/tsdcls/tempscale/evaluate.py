"""Run one (model, TempScale variant) through mteb 2.x on every configured task.

``mteb.evaluate`` gets an explicit ``ResultCache`` under ``results/tempscale/mteb`` and
``overwrite_strategy="always"``, one task at a time: mteb never reuses a result on its own. The
variant is written into the mteb ModelMeta (name = base model + variant, revision = hash of the
variant settings), so results of different tau never share a folder.

Resumable: beside each finished task's mteb result file a record (``tsdcls-resume/``) keeps the
task's key (task name, dataset revision, splits, its config settings, model variant, revision,
encode settings, mteb version, a hash of this stage's code), a hash of mteb's file and the
per-item scores. An interrupted job started again reuses every task whose key and file still
match and computes only the rest.

Outputs (verb ``tempscale-evaluate``):

* ``scores``: one row per task x split x subset with the task's main score; a long-context split
  longer than the model can read is a row with ``status`` "skipped: exceeds ..." and no score.
* ``per_item``: per-query / per-pair / per-experiment scores for the paired tests.
* ``row_taus``: temperature laws only (other variants: the header alone): per task x split x
  subset x prompt type (the ``prompt_type`` mteb passes to ``encode``: query, document, or none
  for symmetric tasks) the number of encoded rows, their token counts (mean/min/max, special
  tokens included: what the law reads) and the taus the law gave them (mean/min/max).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tsdcls.common.config import ConfigError, config_hash
from tsdcls.common.io import write_text
from tsdcls.tempscale.ablation import Variant, job_variant, model_slugs
from tsdcls.tempscale.tasks import SCORED

logger = logging.getLogger(__name__)

ITEM_METRIC = {"STS": "cosine_similarity"}  # task type -> per-item metric when it differs from main
RESUME_DIR = "tsdcls-resume"
# local task -> its section of 'tempscale.tasks' (the settings its data and scores depend on)
TASK_SECTIONS = {
    "TsdclsPasskeyRetrieval": "passkey", "TsdclsNeedleRetrieval": "needle", "TsdclsWikiLongDocRetrieval": "longdoc",
    "TsdclsLeeSTS": "lee_sts", "TsdclsPolarityClassification": "polarity", "TsdclsNewsgroupsClustering": "newsgroups",
}  # fmt: skip


def variant_revision(model: str, variant: Variant, settings: Mapping[str, Any]) -> str:
    """Revision string for mteb: a hash of everything that changes the variant's embeddings."""
    blob = json.dumps({"model": model, "variant": variant.slug, **settings}, sort_keys=True, default=str)
    return "tempscale-" + hashlib.sha256(blob.encode()).hexdigest()[:12]


def load_variant(model_name: str, variant: Variant, config: Mapping[str, Any], device: str, seed: int = 0,
                 alpha: float | None = None) -> tuple[Any, str, dict[str, Any]]:
    """The SentenceTransformer with the variant applied, its mteb name, and its settings.

    The input length is raised to the model's position limit (MiniLM/MPNet: 512, not the 256
    or 384 their sentence-transformers configs truncate at) or ``tempscale.tasks.max_seq_length``.
    ``alpha``: the theory stage's measured exponent, for the law 'power-measured'.
    """
    from tsdcls.tempscale import patch

    fixed_tau = 1.0 if variant.mode == "law" else variant.tau
    try:
        revision = patch.model_revision(config, model_name)
        model = patch.load_encoder(model_name, tau=fixed_tau, layers=variant.layers, device=device, revision=revision,
                                   scale_position_bias=variant.scale_position_bias)
    except patch.UnsupportedArchitectureError as err:
        raise ConfigError(f"config key 'tempscale.ablation.models': model '{model_name}' is unsupported: {err}") from err
    except (OSError, ValueError) as err:
        raise ConfigError(f"config key 'tempscale.ablation.models': cannot load model '{model_name}': {err}") from err
    if not variant.scale_position_bias and model.tempscale["position_bias"] == "none":
        raise ConfigError(f"config key 'tempscale.ablation.position_bias.models': model '{model_name}' "
                          f"({patch.architecture(model)}) has no relative position bias to leave unscaled")
    limit = patch.position_limit(model) or model.max_seq_length
    max_length = int(min(limit, config["tasks"].get("max_seq_length") or limit))
    model.max_seq_length = max_length
    settings: dict[str, Any] = {"max_seq_length": max_length}
    name = patch.variant_name(model_name, variant.tau, variant.layers, variant.scale_position_bias)
    if variant.mode == "law":
        name = _apply_law(model, model_name, variant, config["ablation"]["tau_laws"], alpha, settings)
    if variant.fix:
        name = _apply_fix(model, name, variant, config["ablation"]["fixes"], seed, int(config["tasks"]["batch_size"]), settings)
    model.model_card_data.model_name = name
    return model, name, settings


def law_exponent(law: str, alpha: float | None) -> float:
    """The exponent of a power law ('power0.5' -> 0.5; 'power-measured' -> the measured alpha)."""
    if law == "power-measured":
        if alpha is None or not math.isfinite(alpha) or alpha <= 0:
            raise ConfigError(f"tau law {law}: the theory stage's alpha ({alpha}) is not a positive number "
                              "(results/theory/tau_law.csv); drop the law from 'tempscale.ablation.tau_laws.laws'")
        return float(alpha)
    return float(law[len("power"):]) if law.startswith("power") else math.nan


def _apply_law(model: Any, model_name: str, variant: Variant, laws: Mapping[str, Any], alpha: float | None,
               settings: dict[str, Any]) -> str:
    """Length-adaptive tau(n) on the variant's layers; returns the variant's mteb model name."""
    from tsdcls.tempscale import patch

    form = "log" if variant.law == "log" else "power"
    exponent = law_exponent(variant.law, alpha)
    n_ref, tau_min = int(laws["n_ref"]), float(laws["tau_min"])
    patch.apply_length_adaptive_tempscale(model, n_ref=n_ref, exponent=1.0 if form == "log" else exponent,
                                          tau_min=tau_min, layers=variant.layers, law=form,
                                          scale_position_bias=variant.scale_position_bias)
    settings.update(tau_law={"law": variant.law, "form": form, "exponent": exponent, "n_ref": n_ref, "tau_min": tau_min})
    name = patch.law_variant_name(model_name, form, n_ref, exponent, tau_min)
    name = name if variant.layers == "all" else f"{name}-{variant.layers}"
    return name if variant.scale_position_bias else name + patch.BIAS_UNSCALED_SUFFIX


def _apply_fix(model: Any, name: str, variant: Variant, fixes: Mapping[str, Any], seed: int, batch_size: int,
               settings: dict[str, Any]) -> str:
    """Fit the variant's post-hoc fix on the held-out corpus and append it; returns the mteb name."""
    from tsdcls.tempscale import fixes as posthoc

    fit = {k: fixes[k] for k in posthoc.FIT_KEYS}
    posthoc.apply_fix(model, variant.fix, fit, seed, batch_size)
    settings.update(fix={"method": variant.fix, **fit})
    return fix_name(name, variant.fix, fit["whiten_dims"])


def fix_name(name: str, fix: str, whiten_dims: int | None) -> str:
    """mteb model name of a post-hoc fix on the model called ``name``."""
    label = f"whiten{whiten_dims or ''}" if fix == "whiten" else fix.replace("_", "")
    return f"{name}-posthoc-{label}"


def token_counter(model: Any) -> Any:
    """Count a text's tokens with the model's own tokenizer, special tokens excluded."""
    tokenizer = model.tokenizer

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    return count


def mteb_wrapper(model: Any, name: str, revision: str) -> Any:
    """mteb's SentenceTransformer wrapper with the variant in its ModelMeta (name + revision).

    Under a temperature law every ``encode`` call tags the rows it encodes with (task, split,
    subset, prompt type), so the law's taus are summarised for queries and documents apart.
    """
    from mteb.models import SentenceTransformerEncoderWrapper

    from tsdcls.tempscale import patch

    wrapper = SentenceTransformerEncoderWrapper(model)
    wrapper.mteb_model_meta = wrapper.mteb_model_meta.model_copy(update={"name": name, "revision": revision})
    handle = patch.active_handle(model)
    if handle is not None and handle.adaptive is not None:
        encode = wrapper.encode

        @functools.wraps(encode)
        def tagged_encode(inputs: Any, *, task_metadata: Any, hf_split: str, hf_subset: str,
                          prompt_type: Any = None, **kwargs: Any) -> Any:
            role = getattr(prompt_type, "value", prompt_type) or NO_PROMPT_TYPE
            with handle.tagged(task_metadata.name, hf_split, hf_subset, role):
                return encode(inputs, task_metadata=task_metadata, hf_split=hf_split, hf_subset=hf_subset,
                              prompt_type=prompt_type, **kwargs)

        wrapper.encode = tagged_encode
    return wrapper


NO_PROMPT_TYPE = "none"  # prompt_type of symmetric tasks (STS, classification, clustering)
ROW_TAU_KEYS = ["task", "split", "subset", "prompt_type"]
ROW_TAU_STATS = ["n_rows", "tokens_mean", "tokens_min", "tokens_max", "tau_mean", "tau_min", "tau_max"]


def row_tau_rows(model: Any, task_name: str) -> list[dict[str, Any]]:
    """The law's per-row summary of one task's encode calls (and a reset): one row per split x
    subset x prompt type; [] for a fixed tau."""
    from tsdcls.tempscale import patch

    handle = patch.active_handle(model)
    if handle is None or handle.adaptive is None:
        return []
    summary = handle.row_tau_summary(reset=True)
    rows = []
    for tag, entry in sorted(summary.items()):
        if len(tag) != len(ROW_TAU_KEYS) or tag[0] != task_name:  # rows encoded outside mteb's encode calls
            logger.warning("row taus of %d rows outside task %s's encode calls (tag %s)", entry.n_rows, task_name, tag)
            continue
        rows.append({**dict(zip(ROW_TAU_KEYS, tag, strict=True)), **entry.as_dict()})
    return rows


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


@dataclass
class TaskOutcome:
    """One finished task: mteb's TaskResult and the per-item scores the paired tests need."""

    result: Any
    per_item: dict[tuple[str, str], dict[str, dict[Any, float]]]
    gold: dict[tuple[str, str], dict[Any, float]]
    row_taus: list[dict[str, Any]] = field(default_factory=list)  # temperature laws: row_tau_rows()


def task_key(task: Any, meta: Any, tasks_cfg: Mapping[str, Any], encode_kwargs: Mapping[str, Any]) -> str:
    """What a finished task's scores depend on; a stored result is reused only under the same key."""
    import mteb

    name = task.metadata.name
    section = TASK_SECTIONS.get(name)
    return config_hash({
        "task": name, "dataset": dict(task.metadata.dataset), "splits": list(task.eval_splits),
        "subsets": list(task.hf_subsets or []), "settings": tasks_cfg.get(section) if section else "hub",
        "model": meta.name, "revision": meta.revision, "encode": dict(encode_kwargs), "mteb": mteb.__version__,
        "code": stage_code_hash(),
    })


@functools.cache
def stage_code_hash() -> str:
    """Hash of this stage's source (tasks, patch, evaluation): edited code never reuses old scores."""
    digest = hashlib.sha256()
    root = Path(__file__).parent
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class TaskResume:
    """Finished tasks of one (model, variant) in the job's cache folder."""

    def __init__(self, cache: Any, meta: Any) -> None:
        self.cache, self.meta = cache, meta

    def result_path(self, task_name: str) -> Path:
        return Path(self.cache.get_task_result_path(task_name, self.meta))

    def record_path(self, task_name: str) -> Path:
        folder = Path(self.cache.cache_path) / RESUME_DIR / self.meta.model_name_as_path() / str(self.meta.revision)
        return folder / f"resume-{task_name}.json"

    def load(self, task_name: str, key: str) -> TaskOutcome | None:
        """The stored outcome when its key and mteb's file match; None: compute the task."""
        from mteb.results import TaskResult

        record_path, result_path = self.record_path(task_name), self.result_path(task_name)
        if not record_path.is_file() or not result_path.is_file():
            return None
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
            if record.get("key") != key or record.get("result_sha256") != _sha256(result_path):
                return None
            return TaskOutcome(TaskResult.from_disk(result_path), _unpack_per_item(record["per_item"]),
                               _unpack_gold(record["gold"]), list(record["row_taus"]))
        except (OSError, ValueError, KeyError, TypeError) as err:  # a damaged record: compute the task again
            logger.warning("not reusing %s (%s): the task is computed again", record_path, err)
            return None

    def save(self, task_name: str, key: str, outcome: TaskOutcome) -> None:
        """Record a task as finished (after mteb wrote its result file)."""
        record = {"key": key, "result_sha256": _sha256(self.result_path(task_name)),
                  "per_item": _pack_per_item(outcome.per_item), "gold": _pack_gold(outcome.gold),
                  "row_taus": outcome.row_taus}
        write_text(self.record_path(task_name), json.dumps(record))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pairs(mapping: Mapping[Any, Any]) -> list[list[Any]]:
    """A dict as [key, value] pairs: JSON keeps int item ids as ints (dict keys become strings)."""
    return [[key, value] for key, value in mapping.items()]


def _dict(pairs: list[list[Any]]) -> dict[Any, Any]:
    return {tuple(key) if isinstance(key, list) else key: value for key, value in pairs}


def _pack_per_item(per_item: Mapping[tuple[str, str], Mapping[str, Mapping[Any, float]]]) -> list[Any]:
    return [[split, subset, [[m, _pairs(v)] for m, v in metrics.items()]] for (split, subset), metrics in per_item.items()]


def _unpack_per_item(rows: list[Any]) -> dict[tuple[str, str], dict[str, dict[Any, float]]]:
    return {(split, subset): {m: _dict(v) for m, v in metrics} for split, subset, metrics in rows}


def _pack_gold(gold: Mapping[tuple[str, str], Mapping[Any, float]]) -> list[Any]:
    return [[split, subset, _pairs(values)] for (split, subset), values in gold.items()]


def _unpack_gold(rows: list[Any]) -> dict[tuple[str, str], dict[Any, float]]:
    return {(split, subset): _dict(values) for split, subset, values in rows}


def evaluate_variant(
    model_name: str, variant: Variant, config: Mapping[str, Any], seed: int, device: str, cache_dir: Path, allow_network: bool,
    alpha: float | None = None,
) -> tuple[Any, Any, Any]:
    """Evaluate one variant on every configured task; returns (scores, per_item, row_taus) DataFrames.

    Tasks finished by an earlier (interrupted) run of the same job are reused, see module doc.
    """
    import mteb
    import pandas as pd

    from tsdcls.tempscale import patch
    from tsdcls.tempscale.tasks import build_tasks, skip_reason, skipped_splits

    model, name, settings = load_variant(model_name, variant, config, device, seed, alpha)
    tasks_cfg = config["tasks"]
    tasks = build_tasks(tasks_cfg, token_counter(model), settings["max_seq_length"], seed, allow_network)
    revision = variant_revision(model_name, variant, {**settings, "seed": seed})
    wrapper = mteb_wrapper(model, name, revision)
    cache = mteb.ResultCache(cache_path=cache_dir)
    resume = TaskResume(cache, wrapper.mteb_model_meta)
    encode_kwargs = {"batch_size": int(tasks_cfg["batch_size"]), "show_progress_bar": False}
    common = {
        "model": model_name, "variant": variant.slug, "tau": variant.tau, "layers": variant.layers,
        "tau_mode": variant.mode, "tau_law": variant.law, "fix": variant.fix,
        "position_bias": patch.active_handle(model).position_bias,
        "mteb_model_name": name, "mteb_model_revision": revision,
    }  # fmt: skip
    score_rows: list[dict[str, Any]] = []
    item_rows: list[dict[str, Any]] = []
    tau_rows: list[dict[str, Any]] = []
    for task in tasks:
        key = task_key(task, wrapper.mteb_model_meta, tasks_cfg, encode_kwargs)
        outcome = resume.load(task.metadata.name, key)
        if outcome is None:
            row_tau_rows(model, task.metadata.name)  # reset: count this task's rows only
            outcome = _run_task(wrapper, task, cache, encode_kwargs)
            outcome.row_taus = row_tau_rows(model, task.metadata.name)
            resume.save(task.metadata.name, key, outcome)
        else:
            logger.info("reusing finished task %s (%s)", task.metadata.name, resume.result_path(task.metadata.name))
        _task_rows(task, outcome, common, score_rows, item_rows)
        tau_rows += [{**common, **row} for row in outcome.row_taus]
    reason = skip_reason(settings["max_seq_length"], patch.position_limit(model))
    score_rows += [{**common, **split, "subset": "default", "score": math.nan, "item_metric": split["metric"],
                    "revision": "", "evaluation_time_s": math.nan, "status": reason}
                   for split in skipped_splits(tasks_cfg, settings["max_seq_length"])]
    row_taus = pd.DataFrame(tau_rows, columns=[*common, *ROW_TAU_KEYS, *ROW_TAU_STATS])
    return pd.DataFrame(score_rows), pd.DataFrame(item_rows), row_taus


def _run_task(wrapper: Any, task: Any, cache: Any, encode_kwargs: Mapping[str, Any]) -> TaskOutcome:
    """One task through the real ``mteb.evaluate`` (result file written by mteb's cache)."""
    import mteb

    _capture_hub_per_query(task)
    result = mteb.evaluate(
        wrapper, [task], cache=cache, overwrite_strategy="always", encode_kwargs=dict(encode_kwargs),
        co2_tracker=False, show_progress_bar=True, raise_error=True,
    )
    if result.exceptions:
        raise RuntimeError(f"mteb reported task errors: {result.exceptions}")
    return TaskOutcome(result.task_results[0], dict(getattr(task, "per_item", {})), dict(getattr(task, "gold", {})))


def _task_rows(task: Any, outcome: TaskOutcome, common: Mapping[str, Any], score_rows: list[dict[str, Any]],
               item_rows: list[dict[str, Any]]) -> None:
    """Rows of scores.csv (task x split x subset) and per_item.csv (one per item and metric)."""
    task_result = outcome.result
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
                    "evaluation_time_s": task_result.evaluation_time, "status": SCORED,
                }  # fmt: skip
            )
            gold = outcome.gold.get((split, subset), {})
            for metric, values in outcome.per_item.get((split, subset), {}).items():
                for item, value in values.items():
                    item_rows.append(
                        {**common, "task": task_result.task_name, "split": split, "subset": subset,
                         "metric": metric, "item": item, "value": value, "gold": gold.get(item, math.nan)}
                    )  # fmt: skip


def measured_alpha(path: str | Path, model: str) -> float:
    """``model``'s alpha of tau(n) = (n_ref/n)^alpha pooled over layers, from the theory stage's
    tau_law.csv (one model's alpha is never applied to another)."""
    from tsdcls.common.io import read_csv

    law = read_csv(path)
    row = law[(law["layer"].astype(str) == "all") & (law["quantity"] == "alpha") & (law["model"].astype(str) == model)]
    if row.empty:
        raise ConfigError(f"{path}: no pooled alpha of model {model!r} (has {sorted(set(law['model'].astype(str)))}); "
                          "add it to config key 'theory.real_attention.alpha_models' or drop 'power-measured'")
    return float(row["estimate"].iloc[0])


def run_evaluation(job: Any) -> None:
    """Verb ``tempscale-evaluate``: one model x variant (job params 'model', 'variant')."""
    from tsdcls.common.io import write_csv
    from tsdcls.common.offline import is_offline
    from tsdcls.tempscale.tasks.hub import check_hub_access

    slugs = model_slugs(job.config)
    model_slug = str(job.params.get("model", ""))
    if model_slug not in slugs:
        raise ConfigError(f"model '{model_slug}' is not in config key 'tempscale.ablation.models' ({sorted(slugs)})")
    variant = job_variant(job.config)
    cache_dir = Path(job.params.get("mteb_cache", "results/tempscale/mteb"))
    allow_network = not is_offline()  # the CLI sets the hub's offline switches unless --allow-network
    hub = job.config["tasks"].get("hub", {})
    check_hub_access(hub.get("tasks", []), allow_network, hub.get("benchmarks", []))  # before any model load
    alpha = measured_alpha(job.input("tau_law"), slugs[model_slug]) if variant.needs_measured_alpha else None
    scores, per_item, row_taus = evaluate_variant(
        slugs[model_slug], variant, job.config, job.seed, job.device, cache_dir, allow_network, alpha
    )
    prov = job.prov(model=slugs[model_slug], variant=variant.slug, **({"alpha": alpha} if alpha else {}))
    if "row_taus" in job.outputs:  # the rule declares it; direct CLI calls may leave it out
        write_csv(job.output("row_taus"), row_taus, prov)
    write_csv(job.output("per_item"), per_item, prov)
    write_csv(job.output("scores"), scores, prov)
