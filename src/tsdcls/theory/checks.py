"""Verbs `theory-synthetic` and `theory-summary`: run the checks, write results, fail loudly.

A violated check makes the verb raise :class:`CheckFailed` (non-zero exit) before its checks
file is written, so Snakemake never sees a checks.json that hides a broken claim.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from tsdcls.common.config import ConfigError, require
from tsdcls.common.io import read_json, write_csv, write_json
from tsdcls.common.job import Job
from tsdcls.theory import bounds
from tsdcls.theory.record import Check, CheckFailed, blas_threads, failed

if TYPE_CHECKING:
    from tsdcls.theory.synthetic import BoundFn

LOG = logging.getLogger("tsdcls.theory")


def run_synthetic_checks(job: Job, bound_fn: BoundFn = bounds.bounded_logit_gain_bound) -> None:
    """Checks (a)-(c) on synthetic logits -> gains/bounds/slopes/tau_restore CSVs + checks JSON.

    ``bound_fn`` is the closed-form bound under test (a parameter so a test can feed a wrong
    one and see the job fail).
    """
    from tsdcls.theory.synthetic import SyntheticSettings, run_all  # torch: not for the summary

    settings = SyntheticSettings.from_config(dict(require(job.config, "synthetic")))
    with blas_threads(job.threads):
        frames, checks = run_all(settings, job.seed, bound_fn)
    provenance = job.prov(scale=job.config.get("scale"))
    for name, frame in frames.items():
        if name in job.outputs:
            write_csv(job.output(name), frame, provenance)
    write_checks(job, checks, provenance)


def write_checks(job: Job, checks: list[Check] | list[dict[str, Any]], provenance: dict[str, Any]) -> None:
    """Write ``checks`` to the rule's `checks` output, or raise CheckFailed (writing nothing)."""
    records = [c.as_dict() if isinstance(c, Check) else c for c in checks]
    broken = failed(records)
    for record in records:
        LOG.info("check %-26s holds=%s worst_margin=%.3g", record["name"], record["holds"], record["worst_margin"])
    if broken:
        for record in broken:
            LOG.error("VIOLATED %s", json.dumps(record, default=str, indent=1))
        names = ", ".join(record["name"] for record in broken)
        raise CheckFailed(f"{len(broken)} theory check(s) violated: {names} (details in this log)")
    write_json(job.output("checks"), {"all_hold": True, "checks": records}, provenance)


def run_summary(job: Job) -> None:
    """Merge every stage check file into results/theory/checks.json; fail if any is violated."""
    records: list[dict[str, Any]] = []
    sources = {}
    for name, path in sorted(job.inputs.items()):
        payload = read_json(path)
        if "checks" not in payload:
            raise ConfigError(f"{path}: no 'checks' list (input '{name}' of the summary rule)")
        for record in payload["checks"]:
            missing = {"name", "holds", "worst_margin", "details"} - set(record)
            if missing:
                raise ConfigError(f"{path}: check {record.get('name', '?')!r} lacks {sorted(missing)}")
            records.append({**record, "source": name})
        sources[name] = {"path": str(path), "provenance": payload.get("provenance", {})}
    write_checks(job, records, job.prov(scale=job.config.get("scale"), sources=sources))
