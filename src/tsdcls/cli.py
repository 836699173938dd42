"""Thin command line that Snakemake rules call: one verb = one stage function.

    python -m tsdcls.cli VERB --config JSON [--seed N] [--threads N] [--device D]
                              [--input name=path ...] [--output name=path ...] [--param k=json ...]

Stage modules are imported lazily so that `--help` and the theory stage never pay for torch
model libraries they do not use.

Exit status: 0 done; 78 (``USER_ERROR_EXIT``) a config value or an input file is wrong, one line
on stderr and rerunning cannot help (no retry); 128 + N stopped by signal N (SIGTERM: 143), no
final output written; 1 any other failure (traceback; a retry may help).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tsdcls.common.config import USER_ERROR_EXIT, ConfigError, InputError, parse_stage_config
from tsdcls.common.job import Job
from tsdcls.common.offline import enforce_offline
from tsdcls.common.seeding import seed_everything
from tsdcls.common.signals import Terminated

# verb -> (stage, "module:function"). Each stage registers its verbs here, one line each.
VERBS: dict[str, tuple[str, str]] = {
    # theory
    "theory-synthetic": ("theory", "tsdcls.theory.checks:run_synthetic_checks"),
    "theory-real-attention": ("theory", "tsdcls.theory.real_attention:run_real_attention"),
    "theory-summary": ("theory", "tsdcls.theory.checks:run_summary"),
    # tempscale
    "tempscale-collapse": ("tempscale", "tsdcls.tempscale.collapse:run_collapse"),
    "tempscale-evaluate": ("tempscale", "tsdcls.tempscale.evaluate:run_evaluation"),
    "tempscale-ablation": ("tempscale", "tsdcls.tempscale.ablation:run_aggregate"),
    "tempscale-fix-collapse": ("tempscale", "tsdcls.tempscale.fix_collapse:run_fix_collapse"),
    "tempscale-position-bias": ("tempscale", "tsdcls.tempscale.position_bias:run_position_bias_effect"),
    "hub-stage": ("tempscale", "tsdcls.tempscale.stage:run_stage"),
    "figure-tempscale-passkey-needle": ("figures", "tsdcls.figures.tempscale_tasks:run_passkey_needle_figure"),
    "figure-tempscale-tau-sweep": ("figures", "tsdcls.figures.tempscale_tasks:run_tau_sweep_figure"),
    "table-tempscale-ablation": ("figures", "tsdcls.figures.tempscale_tasks:run_ablation_table"),
    "figure-tempscale-fixes": ("figures", "tsdcls.figures.tempscale_fixes:run_fixes_figure"),
    # dcls
    "dcls-train": ("dcls", "tsdcls.dcls.train:run_train"),
    "dcls-evaluate": ("dcls", "tsdcls.dcls.evaluate:run_evaluate"),
    "dcls-ablation": ("dcls", "tsdcls.dcls.ablation:run_ablation"),
    "figure-dcls-accuracy": ("figures", "tsdcls.figures.dcls:run_accuracy_figure"),
    "figure-dcls-kernels": ("figures", "tsdcls.figures.dcls:run_kernel_figure"),
    "figure-dcls-throughput": ("figures", "tsdcls.figures.dcls:run_throughput_figure"),
    # figures
    "figure-theory-attenuation": ("figures", "tsdcls.figures.theory:plot_attenuation"),
    "figure-tempscale-collapse": ("figures", "tsdcls.figures.tempscale_collapse:run_collapse_figure"),
    "table-paper-vs-reproduced": ("figures", "tsdcls.figures.paper_compare:run_paper_vs_reproduced"),
    "claims": ("figures", "tsdcls.figures.claims:run_claims"),
}


def _pairs(items: Sequence[str] | None, flag: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"{flag} expects name=value, got {item!r}")
        result[name] = value
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tsdcls", description=__doc__.splitlines()[0])
    parser.add_argument("verb", choices=sorted(VERBS), help="stage function to run")
    parser.add_argument("--config", default="{}", help="the stage's config section as JSON")
    parser.add_argument("--seed", type=int, default=None, help="default: the config's seed, else 0")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--input", action="append", metavar="NAME=PATH")
    parser.add_argument("--output", action="append", metavar="NAME=PATH")
    parser.add_argument("--param", action="append", metavar="KEY=JSON")
    parser.add_argument("--allow-network", action="store_true", help="paper scale: hub access")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("fontTools", "matplotlib", "PIL", "urllib3", "httpx"):  # library chatter, not our log
        logging.getLogger(noisy).setLevel(logging.WARNING)
    enforce_offline(allow_network=args.allow_network)
    stage, target = VERBS[args.verb]
    try:
        config = parse_stage_config(args.config)
        job = Job(
            stage=stage,
            config=config,
            seed=int(config.get("seed", 0)) if args.seed is None else args.seed,
            threads=args.threads,
            device=_resolve_device(args.device),
            inputs={k: Path(v) for k, v in _pairs(args.input, "--input").items()},
            outputs={k: Path(v) for k, v in _pairs(args.output, "--output").items()},
            params={k: json.loads(v) for k, v in _pairs(args.param, "--param").items()},
        )
        uses_torch = stage != "figures"  # plots read CSV/JSON only: skip torch's slow import
        if uses_torch:
            _set_threads(job.threads)
        seed_everything(job.seed, with_torch=uses_torch)
        module_name, func_name = target.split(":")
        func = getattr(importlib.import_module(module_name), func_name)
        start = time.perf_counter()
        func(job)
        logging.getLogger("tsdcls").info("%s done in %.1f s", args.verb, time.perf_counter() - start)
    except ConfigError as err:
        kind = "input error" if isinstance(err, InputError) else "config error"
        print(f"tsdcls {args.verb}: {kind}: {' '.join(str(err).split())}", file=sys.stderr)
        return USER_ERROR_EXIT
    except Terminated as err:
        print(f"tsdcls {args.verb}: {err}", file=sys.stderr)
        return err.exit_code
    return 0


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, threads))


if __name__ == "__main__":
    sys.exit(main())
