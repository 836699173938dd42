"""The papers' published numbers beside this run's, each row stating the setup that produced it.

Published numbers are data (``data/published_numbers.yaml``, validated here with errors that
name the key); this run's numbers come from the stages' aggregated CSVs
(``results/dcls/ablation.csv``, ``results/tempscale/ablation.csv``). A stage that did not run
gives "not run" cells, never a crash, so a laptop run is never mistaken for an ImageNet run and
a missing stage is never mistaken for a zero.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from tsdcls.common.config import ConfigError
from tsdcls.common.io import read_csv, write_table, write_text
from tsdcls.common.schema import schema_problems
from tsdcls.common.variants import BIAS_UNSCALED_SUFFIX
from tsdcls.figures.tables import html_page, latex_escape, to_html, to_latex, to_markdown

NOT_RUN = "not run"
SIGNIFICANCE_LEVEL = 0.05

# --- validation of data/published_numbers.yaml ----------------------------------------------

# its structure; the cross-references a schema cannot state are checked in load_published
PUBLISHED_SCHEMA = Path(__file__).resolve().parents[3] / "workflow/schemas/published_numbers.schema.yaml"


def _fail(path: Path, key: str, message: str) -> ConfigError:
    return ConfigError(f"{path}: key '{key}': {message}")


def load_published(path: str | Path, schema: str | Path = PUBLISHED_SCHEMA) -> dict[str, Any]:
    """Read and validate the published-numbers file; every error names the offending key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: published-numbers file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    problems = schema_problems(data, schema)
    if isinstance(data, Mapping):
        problems += _reference_problems(data)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigError(f"{path}: {problems[0]}{more}; fix the file (schema: {Path(schema).name})")
    return dict(data)


def _reference_problems(data: Mapping[str, Any]) -> list[str]:
    """Every `source` names an entry of `sources`; every LongEmbed row has one number per column."""
    sources = data.get("sources") if isinstance(data.get("sources"), Mapping) else {}
    out = []
    for key in ("dcls_convnext", "tempscale_average_gain"):
        for index, row in enumerate(data.get(key) or []):
            if isinstance(row, Mapping) and row.get("source") not in sources:
                out.append(f"key '{key}[{index}].source': unknown source {row.get('source')!r} (have {sorted(sources)})")
    baselines = data.get("longembed_baselines")
    if isinstance(baselines, Mapping):
        if baselines.get("source") not in sources:
            out.append(f"key 'longembed_baselines.source': unknown source {baselines.get('source')!r}")
        columns = baselines.get("columns") or []
        for model, values in (baselines.get("rows") or {}).items():
            if isinstance(values, list) and len(values) != len(columns):
                out.append(f"key 'longembed_baselines.rows.{model}': expected {len(columns)} numbers (one per "
                           f"column), got {values!r}")
    return out


# --- describing what a run actually ran ------------------------------------------------------


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, Mapping):
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: node}


def _find(flat: Mapping[str, Any], *patterns: str) -> Any:
    """First config value whose dotted key ends with one of ``patterns`` (in pattern order)."""
    for pattern in patterns:
        for key, value in flat.items():
            matches = key == pattern or key.endswith("." + pattern)
            if matches and value not in (None, "", [], {}):
                return value
    return None


def _words(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "/".join(str(v) for v in value)
    return str(value)


def describe_dcls_run(config: Mapping[str, Any], frame: pd.DataFrame | None) -> str:
    """E.g. 'fashion_mnist 32px, convnext/resnet, 3 epochs, 2 seeds' from config and results."""
    flat = _flatten(config)
    parts = []
    dataset = _find(flat, "data.dataset", "data.name", "dataset", "data.kind")
    size = _find(flat, "data.image_size", "image_size", "img_size", "resolution", "data.size")
    if dataset is not None:
        parts.append(f"{_words(dataset)}" + (f" {_words(size)}px" if size is not None else ""))
    train_size = _find(flat, "data.train_size", "train_size")
    if train_size is not None:
        parts.append(f"{train_size} train images")
    models = None
    if frame is not None and "family" in frame.columns:
        models = sorted({str(v) for v in frame["family"].dropna()})
    families = config.get("families", {}) if isinstance(config.get("families"), Mapping) else {}
    if models:
        parts.append(", ".join(_family_words(name, families.get(name)) for name in models))
    else:
        found = _find(flat, "families", "family", "models", "model", "arch")
        if found:
            parts.append(_words(found))
    epochs = _find(flat, "train.epochs", "epochs")
    if epochs is not None:
        parts.append(f"{_words(epochs)} epoch{'s' if epochs != 1 else ''}")
    if frame is not None and "n_seeds" in frame.columns and frame["n_seeds"].notna().any():
        seeds = int(frame["n_seeds"].max())
        parts.append(f"{seeds} seed{'s' if seeds != 1 else ''}")
    return ", ".join(parts) if parts else "setup not recorded in config"


def _family_words(name: str, family: Any) -> str:
    """'convnext (convnext_atto, dims 16-128)' from the config's family entry, if any."""
    if not isinstance(family, Mapping):
        return name
    bits = [str(family["arch"])] if family.get("arch") else []
    kwargs = family.get("kwargs") if isinstance(family.get("kwargs"), Mapping) else {}
    widths = kwargs.get("dims") or kwargs.get("channels")
    if isinstance(widths, list) and widths:
        bits.append(f"widths {widths[0]}-{widths[-1]}")
    depths = kwargs.get("depths") or kwargs.get("layers")
    if isinstance(depths, list) and depths:
        bits.append("depths " + "-".join(str(d) for d in depths))
    return f"{name} ({', '.join(bits)})" if bits else name


def describe_tempscale_run(config: Mapping[str, Any], frame: pd.DataFrame | None) -> str:
    """E.g. 'minilm on 6 local offline tasks' from config and results."""
    flat = _flatten(config)
    parts = []
    models = None
    if frame is not None and "model" in frame.columns:
        models = sorted({str(v) for v in frame["model"].dropna()})
    models = models or _find(flat, "models", "model")
    if models:
        parts.append(_words(models))
    if frame is not None and "task" in frame.columns:
        tasks = frame["task"].dropna().unique()
        hub = [t for t in tasks if not str(t).lower().startswith("tsdcls")]
        kind = "hub" if hub and len(hub) == len(tasks) else "local offline" if not hub else "local + hub"
        parts.append(f"{len(tasks)} {kind} task{'s' if len(tasks) != 1 else ''}")
    return " on ".join(parts) if parts else "setup not recorded in config"


# --- this run's numbers --------------------------------------------------------------------


def _percent_scale(values: pd.Series) -> float:
    """100 when scores are fractions (0-1), else 1: the papers report 0-100."""
    finite = values.dropna().abs()
    return 100.0 if len(finite) and float(finite.max()) <= 1.0 else 1.0


def _fmt(value: Any, digits: int = 1, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return NOT_RUN
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _mean_std(mean: float, std: float | None, digits: int = 1) -> str:
    if std is None or not math.isfinite(std):
        return _fmt(mean, digits)
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _count(value: float) -> str:
    """Parameter count as 28M / 12.3k."""
    if not math.isfinite(value):
        return NOT_RUN
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.0f}"


def _col(frame: pd.DataFrame, *names: str) -> str | None:
    for name in names:
        if name in frame.columns:
            return name
    return None


@dataclass
class Section:
    """One table of the comparison: a title, the rows, and notes printed under it."""

    key: str
    title: str
    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def dcls_section(published: Mapping[str, Any], frame: pd.DataFrame | None, scale: str, setup: str) -> Section:
    paper_setup = published["setups"]["dcls"]
    rows = []
    for item in published["dcls_convnext"]:
        rows.append({
            "Run": f"paper ({item['source']})",
            "Setup": paper_setup,
            "Model": item["model"],
            "Variant": "DCLS",
            "Params": f"{item['params_m']:g}M",
            "FLOPs": f"{item['flops_g_dense']:.1f}G → {item['flops_g_dcls']:.1f}G",
            "Top-1 dense (%)": _fmt(item["top1_dense"]),
            "Top-1 DCLS (%)": _fmt(item["top1_dcls"]),
            "Δ (pp)": _fmt(item["top1_dcls"] - item["top1_dense"], signed=True),
        })
    run_label = f"this run ({scale})"
    notes = []
    if frame is None:
        rows.append({"Run": run_label, "Setup": setup, "Model": NOT_RUN, "Variant": NOT_RUN,
                     "Params": NOT_RUN, "FLOPs": NOT_RUN, "Top-1 dense (%)": NOT_RUN,
                     "Top-1 DCLS (%)": NOT_RUN, "Δ (pp)": NOT_RUN})
        notes.append("DCLS stage disabled or produced no results/dcls/ablation.csv: not run.")
    else:
        rows += _dcls_run_rows(frame, run_label, setup)
        notes.append(
            "This run's top-1 is mean ± std over seeds on its own small dataset: compare the sign "
            "and size of Δ with the paper's, never the absolute accuracy."
        )
    return Section("dcls", "DCLS: ConvNeXt top-1, dense vs DCLS at equal parameter count",
                   pd.DataFrame(rows), notes)


def _dcls_run_rows(frame: pd.DataFrame, run_label: str, setup: str) -> list[dict[str, str]]:
    for needed in ("family", "variant"):
        if needed not in frame.columns:
            raise ConfigError(f"results/dcls/ablation.csv: column '{needed}' missing (has {list(frame.columns)})")
    top1 = _col(frame, "top1_mean", "top1")
    if top1 is None:
        raise ConfigError(f"results/dcls/ablation.csv: column 'top1_mean' missing (has {list(frame.columns)})")
    std = _col(frame, "top1_std")
    flops = _col(frame, "gmacs")  # dcls/ablation.csv: G multiply-accumulates (the papers' "FLOPs")
    scale = _percent_scale(frame[top1])
    rows = []
    for family, group in frame.groupby("family", sort=True):
        dense = group[group["variant"] == "dense"]
        dense_top1 = float(dense[top1].iloc[0]) * scale if len(dense) else math.nan
        dense_std = float(dense[std].iloc[0]) * scale if len(dense) and std else None
        others = group[group["variant"] != "dense"]
        if others.empty:
            others = dense
        shapes = others[[c for c in ("kernel_count", "dks") if c in others.columns]].drop_duplicates()
        for _, row in others.iterrows():
            variant = str(row["variant"])
            if len(shapes) > 1:
                bits = [f"{c}={row[c]:g}" if isinstance(row[c], float) else f"{c}={row[c]}" for c in shapes.columns
                        if pd.notna(row[c])]
                variant += f" ({', '.join(bits)})" if bits else ""
            value = float(row[top1]) * scale
            value_std = float(row[std]) * scale if std and pd.notna(row[std]) else None
            params = f"{_count(float(dense['params'].iloc[0]))} → {_count(float(row['params']))}" \
                if "params" in row and len(dense) else _count(float(row.get("params", math.nan)))
            flop_text = "n/a"
            if flops and pd.notna(row[flops]):
                flop_text = f"{float(row[flops]):.3g}G"
                if len(dense) and pd.notna(dense[flops].iloc[0]):
                    flop_text = f"{float(dense[flops].iloc[0]):.3g}G → {flop_text}"
            rows.append({
                "Run": run_label,
                "Setup": setup,
                "Model": str(family),
                "Variant": variant,
                "Params": params,
                "FLOPs": flop_text,
                "Top-1 dense (%)": _mean_std(dense_top1, dense_std) if math.isfinite(dense_top1) else NOT_RUN,
                "Top-1 DCLS (%)": _mean_std(value, value_std),
                "Δ (pp)": _fmt(value - dense_top1, signed=True),
            })
    return rows


def _tempscale_columns(frame: pd.DataFrame) -> tuple[str, str, str]:
    for needed in ("task", "model", "variant"):
        if needed not in frame.columns:
            raise ConfigError(
                f"results/tempscale/ablation.csv: column '{needed}' missing (has {list(frame.columns)})"
            )
    score = _col(frame, "score", "main_score")
    delta = _col(frame, "delta_vs_tau1", "delta")
    if score is None or delta is None:
        raise ConfigError(
            "results/tempscale/ablation.csv: columns 'score' and 'delta_vs_tau1' are needed "
            f"(has {list(frame.columns)})"
        )
    return score, delta, _col(frame, "p_value") or ""


def _variant_gains(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean Δ over tasks (and lengths) per model x variant, baseline rows left out."""
    score, delta, p_value = _tempscale_columns(frame)
    if "status" in frame:  # splits longer than a model reads carry no score
        frame = frame[~frame["status"].astype(str).str.startswith("skipped")]
    scale = _percent_scale(frame[score])
    records = []
    for (model, variant), group in frame.groupby(["model", "variant"], sort=True):
        deltas = group[delta].astype(float)
        is_baseline = bool((deltas.fillna(0.0) == 0.0).all()) and (
            "tau" not in group.columns or bool((group["tau"].astype(float) == 1.0).all())
        )
        if is_baseline:
            continue
        significant_up = significant_down = 0
        if "significant" in group.columns or p_value:
            sig = (group["significant"].astype(str).str.lower() == "true") if "significant" in group.columns \
                else group[p_value].astype(float) < SIGNIFICANCE_LEVEL
            significant_up = int((sig & (deltas > 0)).sum())
            significant_down = int((sig & (deltas < 0)).sum())
        records.append({
            "model": str(model), "variant": str(variant), "tasks": int(group["task"].nunique()),
            "rows": len(group), "gain": float(deltas.mean()) * scale,
            "up": significant_up, "down": significant_down,
        })
    return pd.DataFrame(records)


def tempscale_gain_section(published: Mapping[str, Any], frame: pd.DataFrame | None, scale: str, setup: str) -> Section:
    setups = published["setups"]
    rows = []
    for item in published["tempscale_average_gain"]:
        version = published["sources"][item["source"]]["arxiv_version"]
        rows.append({
            "Run": f"paper ({item['source']})",
            "Setup": setups["tempscale_mteb" if item["benchmark"] == "MTEB" else "tempscale_longembed"],
            "Benchmark": f"{item['benchmark']} ({version})",
            "Variant": "TempScale",
            "Tasks": str(item["datasets"]),
            "Avg gain (pp)": _fmt(item["gain_pct"], 2, signed=True),
            "Significant +/−": "n/a",
        })
    run_label = f"this run ({scale})"
    notes = []
    gains = _variant_gains(frame) if frame is not None else pd.DataFrame()
    if frame is None or gains.empty:
        rows.append({"Run": run_label, "Setup": setup, "Benchmark": NOT_RUN, "Variant": NOT_RUN,
                     "Tasks": NOT_RUN, "Avg gain (pp)": NOT_RUN, "Significant +/−": NOT_RUN})
        notes.append("TempScale stage disabled or its ablation.csv holds no TempScale variant: not run.")
    else:
        for record in gains.sort_values(["model", "gain"], ascending=[True, False]).to_dict("records"):
            rows.append({
                "Run": run_label,
                "Setup": setup,
                "Benchmark": f"{record['model']}: this run's tasks",
                "Variant": record["variant"],
                "Tasks": str(record["tasks"]),
                "Avg gain (pp)": _fmt(record["gain"], 2, signed=True),
                "Significant +/−": f"{record['up']}/{record['down']} of {record['rows']}",
            })
        notes.append(
            "This run's gain is the mean of delta_vs_tau1 (x100 when scores are 0-1) over every task "
            "and length of results/tempscale/ablation.csv; 'Significant +/−' counts the rows whose "
            "paired test is significant (the stage's alpha) with a gain / a loss. Every variant is listed: picking the best one on the same data "
            "overstates it."
        )
    return Section("tempscale_gain", "TempScale: average gain over τ = 1", pd.DataFrame(rows), notes)


_LONGEMBED_PATTERNS = {
    "Passkey": "passkey", "Needle": "needle", "NarrativeQA": "narrativeqa", "QMSum": "qmsum",
    "SummScreenFD": "summscreen", "2WikimQA": "wikimqa",
}


def longembed_section(published: Mapping[str, Any], frame: pd.DataFrame | None, scale: str, setup: str) -> Section:
    baselines = published["longembed_baselines"]
    columns = list(baselines["columns"])
    rows = []
    for model, values in baselines["rows"].items():
        row = {"Run": f"paper ({baselines['source']})", "Setup": published["setups"]["longembed_baselines"],
               "Model": model, "Variant": "τ = 1"}
        row.update({column: _fmt(value) for column, value in zip(columns, values, strict=True)})
        rows.append(row)
    run_label = f"this run ({scale})"
    notes = [
        "This run's Passkey/Needle are the local offline re-creations (real filler/haystacks, "
        "model context <= 512 tokens), not the LongEmbed files; hub LongEmbed tasks appear only "
        "when the paper preset ran them."
    ]
    added = False
    if frame is not None:
        score, _, _ = _tempscale_columns(frame)
        factor = _percent_scale(frame[score])
        frame = frame.assign(_column=frame["task"].map(_longembed_column))
        matched = frame[frame["_column"].notna()]
        gains = _variant_gains(frame)
        for model, group in matched.groupby("model", sort=True):
            chosen = [(v, "τ = 1") for v in _baseline_variants(group)]
            model_gains = gains[gains["model"] == str(model)] if not gains.empty else gains
            if not model_gains.empty:
                best = model_gains.sort_values("gain", ascending=False).iloc[0]["variant"]
                chosen.append((best, f"{best} (best on this run's tasks)"))
            for variant, label in chosen:
                subset = group[group["variant"] == variant]
                per_column = subset.groupby("_column")[score].mean() * factor
                row = {"Run": run_label, "Setup": setup, "Model": str(model), "Variant": label}
                row.update({c: _fmt(per_column.get(c, math.nan)) if c in per_column else NOT_RUN
                            for c in columns if c != "Average"})
                if "Average" in columns:
                    row["Average"] = (f"{per_column.mean():.1f} (of {len(per_column)})"
                                      if len(per_column) else NOT_RUN)
                rows.append(row)
                added = True
    if not added:
        row = {"Run": run_label, "Setup": setup, "Model": NOT_RUN, "Variant": NOT_RUN}
        row.update(dict.fromkeys(columns, NOT_RUN))
        rows.append(row)
    return Section("longembed", "LongEmbed scores (0-100) of base models", pd.DataFrame(rows), notes)


def _longembed_column(task: Any) -> str | None:
    name = re.sub(r"[^a-z0-9]", "", str(task).lower())
    for column, pattern in _LONGEMBED_PATTERNS.items():
        if pattern in name:
            return column
    return None


def tempscale_variants_only(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    """Rows of TempScale itself (fixed tau and temperature laws): the post-hoc fixes are other
    methods, compared in the fixes table, not TempScale results; the position-bias ablation
    (``-biasunscaled``, bias B not scaled) is in the ablation table only."""
    if frame is None:
        return frame
    if "variant" in frame.columns:
        frame = frame[~frame["variant"].astype(str).str.endswith(BIAS_UNSCALED_SUFFIX)]
    if "fix" not in frame.columns:
        return frame
    return frame[frame["fix"].astype(object).fillna("").astype(str) == ""]


def _baseline_variants(group: pd.DataFrame) -> list[str]:
    if "tau" in group.columns:
        taus = pd.to_numeric(group["tau"], errors="coerce")
        base = group[taus == 1.0]
        if "layers" in base.columns and base["variant"].nunique() > 1:
            base = base[base["layers"].astype(str) == "all"] if (base["layers"].astype(str) == "all").any() else base
        if len(base):
            return sorted(base["variant"].astype(str).unique())[:1]
    return []


# --- the job -------------------------------------------------------------------------------


def _read_optional(job: Any, name: str) -> pd.DataFrame | None:
    path = job.inputs.get(name)
    if path is None:
        return None
    if not Path(path).is_file():
        raise ConfigError(f"input '{name}' ({path}) does not exist")
    return read_csv(path)


def _document(sections: Iterable[Section], header: list[str], sources: Mapping[str, Any],
              render: Callable[..., str], markdown: bool) -> str:
    parts = []
    if markdown:
        parts += ["# Paper vs reproduced", "", *header, ""]
        for section in sections:
            parts += [f"## {section.title}", "", render(section.frame, notes=section.notes)]
        parts += ["## Sources", ""]
        for name, source in sources.items():
            checked = "" if source["table_checked"] else " (table reference not yet checked against the PDF)"
            parts.append(
                f"- `{name}`: {source['authors']}, *{source['title']}*, {source['venue']}, "
                f"arXiv {source['arxiv']}{source['arxiv_version']}, {source['table']}{checked}. {source['url']}"
            )
        return "\n".join(parts) + "\n"
    parts += [f"% {line}" for line in header]
    for section in sections:
        parts.append(render(section.frame, caption=section.title, label=f"tab:paper-vs-{section.key}",
                            notes=section.notes))
    parts.append("% Sources:")
    for name, source in sources.items():
        parts.append(f"% {name}: {source['title']}, {source['venue']}, arXiv {source['arxiv']}"
                     f"{source['arxiv_version']}, {source['table']}")
    parts.append(r"\noindent{\footnotesize Sources: " + "; ".join(
        latex_escape(f"{source['title']} ({source['venue']}, arXiv {source['arxiv']}{source['arxiv_version']})")
        for source in sources.values()) + "}")
    return "\n".join(parts) + "\n"


def run_paper_vs_reproduced(job: Any) -> None:
    """Write results/tables/paper_vs_reproduced.{md,tex} from the published data and this run."""
    published = load_published(job.input("published"), job.inputs.get("published_schema", PUBLISHED_SCHEMA))
    scale = str(job.config.get("scale", "unknown"))
    runs = job.config.get("runs", {})
    dcls_frame = _read_optional(job, "dcls")
    tempscale_frame = tempscale_variants_only(_read_optional(job, "tempscale"))
    dcls_setup = (describe_dcls_run(runs.get("dcls", {}), dcls_frame) if dcls_frame is not None
                  else "DCLS stage not run")
    ts_setup = (describe_tempscale_run(runs.get("tempscale", {}), tempscale_frame)
                if tempscale_frame is not None else "TempScale stage not run")
    sections = [
        dcls_section(published, dcls_frame, scale, f"{dcls_setup} (scale {scale})"),
        tempscale_gain_section(published, tempscale_frame, scale, f"{ts_setup} (scale {scale})"),
        longembed_section(published, tempscale_frame, scale, f"{ts_setup} (scale {scale})"),
    ]
    prov = job.prov(scale=scale)
    header = [
        f"This run: scale **{scale}**, commit `{str(prov.get('git_commit', 'unknown'))[:12]}`, "
        f"device {prov.get('device', '?')}.",
        f"DCLS setup of this run: {dcls_setup}. TempScale setup of this run: {ts_setup}.",
        "Published numbers come from `data/published_numbers.yaml` (sources below). Unless the scale "
        "is `paper`, this run used small offline data and models: read its numbers as a check of "
        "direction (sign of Δ), not as a reproduction of the papers' absolute values.",
    ]
    md_header = header
    tex_header = [line.replace("**", "").replace("`", "") for line in header]
    write_table(job.output("markdown"),
                _document(sections, md_header, published["sources"], to_markdown, markdown=True), prov)
    write_table(job.output("latex"),
                _document(sections, tex_header, published["sources"], to_latex, markdown=False), prov)
    if "html" in job.outputs:
        write_text(job.output("html"), html_page("Paper vs reproduced",
                                                 _html_body(sections, tex_header, published["sources"]), prov))


def _html_body(sections: Iterable[Section], header: list[str], sources: Mapping[str, Any]) -> str:
    from html import escape

    parts = ["<h1>Paper vs reproduced</h1>", *(f"<p>{escape(line)}</p>" for line in header)]
    for section in sections:
        parts.append(to_html(section.frame, caption=section.title, notes=section.notes))
    parts.append("<h2>Sources</h2><ul>")
    for name, source in sources.items():
        parts.append(f"<li><code>{escape(name)}</code>: {escape(source['authors'])}, "
                     f"<i>{escape(source['title'])}</i>, {escape(source['venue'])}, arXiv "
                     f"{escape(source['arxiv'] + source['arxiv_version'])}, {escape(source['table'])}.</li>")
    parts.append("</ul>")
    return "\n".join(parts) + "\n"
