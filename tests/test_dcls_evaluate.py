"""dcls-evaluate: the folded model evaluates to the DCLS model's results (and a wrong fold is
caught), a published-layout checkpoint evaluates through the same code to what an independent
reference forward gives, and the checkpoint path is checked before any job."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from tests.conftest import REPO, copy_workflow, run_snakemake
from tests.test_config_validation import _merged
from tests.test_dcls_data import imagefolder  # noqa: F401  (fixture: tiny ImageNet-style tree)
from tests.test_ddp import tiny_config
from tsdcls.common.config import ConfigError, InputError
from tsdcls.common.io import write_json
from tsdcls.common.job import Job
from tsdcls.common.preflight import problems
from tsdcls.dcls.evaluate import EvaluateConfig, fold_agreement, run_evaluate
from tsdcls.dcls.fold import fold_dcls
from tsdcls.dcls.layers import Dcls2d, dcls_modules
from tsdcls.dcls.train import RunSpec, save_weights, train_run

SPEC = RunSpec("convnext", "dcls_v0", 6, 9, 0)
EVAL = {"batch_size": 50, "use_ema": False, "throughput_batch": 4, "throughput_iterations": 1}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict[str, Path]]:
    """A two-step training of the tiny ConvNeXt, its taps then spread over the whole 9x9 grid
    (trained-like: the CPU path crops nothing and takes FFT / matmul), as the trainer writes it."""
    folder = tmp_path_factory.mktemp("trained")
    config = tiny_config(train_size=64, epochs=1, batch_size=32)
    torch.set_num_threads(1)
    result = train_run(config, SPEC, "cpu", checkpoint_dir=None)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in dcls_modules(result.model):
            layer.P.copy_((torch.rand(layer.P.shape, generator=generator) * 2 - 1) * 4)
    inputs = {"weights": folder / "weights.pt", "train": folder / "train.json"}
    save_weights(inputs["weights"], result, SPEC, {})
    write_json(inputs["train"], result.record, {})
    return config, inputs


def _evaluate(config: dict, inputs: dict[str, Path], outputs: Path, params: dict | None = None) -> dict:
    job = Job("dcls", config, seed=0, inputs=inputs, params=params or {},
              outputs={"metrics": outputs / "metrics.json", "kernels": outputs / "kernels.json"})
    run_evaluate(job)
    return {name: json.loads(path.read_text()) for name, path in job.outputs.items()}


def test_folded_evaluation_equals_the_dcls_models(trained: tuple[dict, dict[str, Path]], tmp_path: Path) -> None:
    config, inputs = trained
    params = {"family": SPEC.family, "variant": SPEC.variant, "kernel_count": SPEC.kernel_count, "dks": SPEC.dks}
    results = {}
    for fold in (True, False):
        run_config = {**config, "evaluate": {**EVAL, "fold": fold}}
        results[fold] = _evaluate(run_config, inputs, tmp_path / str(fold), params)
    folded, plain = results[True]["metrics"], results[False]["metrics"]
    assert folded["folded"] is True and plain["folded"] is False and plain["fold_check"] is None
    check = folded["fold_check"]
    print(f"fold check: max rel diff {check['max_rel_diff']:.2e} on {check['images']} images")
    assert check["images"] == 32 and 0 <= check["max_rel_diff"] <= 1e-5  # fp32 rounding only
    for key in ("top1", "top5", "per_class_top1", "val_images", "robustness"):
        assert folded[key] == plain[key], key
    assert math.isclose(folded["val_loss"], plain["val_loss"], rel_tol=1e-5)
    assert folded["img_per_s"] > 0 and folded["img_per_s_unfolded"] > 0 and plain["img_per_s_unfolded"] is None
    # the folded model runs the full 9x9 dense kernels (the papers' MAC count); DCLS on CPU its crops
    assert folded["gmacs"] >= plain["gmacs"] > 0
    assert results[True]["kernels"]["layers"] == results[False]["kernels"]["layers"] != []


def test_a_wrong_fold_is_caught() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(Dcls2d(4, 4, 5, 9, groups=4), torch.nn.Flatten())
    folded = fold_dcls(model)
    images = torch.randn(3, 4, 12, 12)
    assert fold_agreement(model, folded, images)["max_rel_diff"] < 1e-5
    with torch.no_grad():
        folded[0].weight[1, 0, 4, 4] += 0.05 * float(folded[0].weight.abs().max())  # one cell off
    with pytest.raises(RuntimeError, match="folded model's logits differ"):
        fold_agreement(model, folded, images)


def test_evaluate_config_rejects_unknown_keys() -> None:
    assert EvaluateConfig.from_config({"fold": False}).fold is False
    with pytest.raises(ConfigError, match="dcls.evaluate.folded"):
        EvaluateConfig.from_config({"folded": True})


# --- the published checkpoints -------------------------------------------------------------------


def _official_checkpoint(path: Path, num_classes: int) -> dict[str, torch.Tensor]:
    """A file in the released checkpoints' layout (ConvNeXt-T: shared/dcls key list): 'model',
    'model_ema' and the training script's argparse 'args'; the EMA state dict is returned."""
    from tests.test_dcls_official import _random_state_dict

    states = []
    for seed in (0, 1):
        state = _random_state_dict("tiny", seed)
        generator = torch.Generator().manual_seed(seed + 10)
        state["head.weight"] = torch.randn(num_classes, 768, generator=generator)
        state["head.bias"] = torch.zeros(num_classes)
        states.append(state)
    torch.save({"model": states[1], "model_ema": states[0], "epoch": 299,
                "args": argparse.Namespace(model="convnext_dcls_tiny")}, path)
    return states[0]


def test_official_checkpoint_evaluates_to_the_reference_forward(imagefolder: Path, tmp_path: Path) -> None:  # noqa: F811
    from tests.test_dcls_official import DEPTHS, _reference_forward
    from tsdcls.dcls.data import build_source

    checkpoint = tmp_path / "convnext_dcls_tiny.pth"
    ema = _official_checkpoint(checkpoint, num_classes=4)
    data = {"dataset": "imagefolder", "root": str(imagefolder), "image_size": 32}
    config = {"scale": "test", "data": data, "evaluate": {**EVAL, "use_ema": True, "fold": True}}
    torch.set_num_threads(1)
    out = _evaluate(config, {"checkpoint": checkpoint}, tmp_path)["metrics"]
    assert out["run"]["arch"] == "convnext_tiny_dcls" and out["weights"] == "ema" and out["folded"] is True
    assert out["params"] == 28_587_688 - 1000 * 769 + 4 * 769 and out["dcls_layers"] == 18
    assert out["fold_check"]["max_rel_diff"] <= 1e-5

    import timm

    source = build_source(data, 0, model=timm.create_model("convnext_tiny_dcls", num_classes=4))
    val = source.dataset("val")
    images = torch.stack([val[i][0] for i in range(len(val))])
    labels = torch.tensor([val[i][1] for i in range(len(val))])
    with torch.no_grad():
        logits = _reference_forward(ema, DEPTHS["tiny"], images)
    assert out["val_images"] == len(val) == 12
    assert out["top1"] == pytest.approx(100.0 * float((logits.argmax(1) == labels).float().mean()))
    assert out["val_loss"] == pytest.approx(float(F.cross_entropy(logits, labels)), rel=1e-4)


def test_official_checkpoint_with_another_class_count_is_an_input_error(imagefolder: Path, tmp_path: Path) -> None:  # noqa: F811
    checkpoint = tmp_path / "convnext_dcls_tiny.pth"
    _official_checkpoint(checkpoint, num_classes=10)
    config = {"scale": "test", "data": {"dataset": "imagefolder", "root": str(imagefolder), "image_size": 32},
              "evaluate": EVAL}
    with pytest.raises(InputError, match="'dcls.evaluate.official_checkpoint': .* 10-class head .* 4 classes"):
        _evaluate(config, {"checkpoint": checkpoint}, tmp_path)
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="bad.pth is not a loadable ConvNeXt-dcls checkpoint"):
        _evaluate(config, {"checkpoint": tmp_path / "bad.pth"}, tmp_path)


def test_preflight_checks_the_official_checkpoint(tmp_path: Path) -> None:
    smoke = yaml.safe_load((REPO / "workflow/presets/smoke.yaml").read_text())
    missing = _merged(smoke, {"dcls": {"evaluate": {"official_checkpoint": str(tmp_path / "none.pth")}}})
    assert problems(missing) == [f"config key 'dcls.evaluate.official_checkpoint': {tmp_path / 'none.pth'} is not "
                                 "a file; download the ConvNeXt-dcls checkpoint (.pth) there or set it to null"]
    (tmp_path / "ckpt.pth").write_bytes(b"x")
    on_mnist = _merged(smoke, {"dcls": {"evaluate": {"official_checkpoint": str(tmp_path / "ckpt.pth")}}})
    assert len(problems(on_mnist)) == 1 and "ImageNet-1k" in problems(on_mnist)[0]


def test_official_checkpoint_gets_its_own_job_and_the_grid_never_reads_its_path(tmp_path: Path) -> None:
    """Setting the path adds one job (same verb) and changes no trained run's evaluation params."""
    workdir = copy_workflow(tmp_path / "wf")
    root = workdir / "imagenet-skeleton"
    for split in ("train", "val"):
        (root / split / "n01440764").mkdir(parents=True)
    (workdir / "ckpt.pth").write_bytes(b"x")
    commands = {}
    for name, checkpoint in (("without", None), ("with", str(workdir / "ckpt.pth"))):
        overlay = workdir / f"{name}.yaml"
        overlay.write_text(yaml.safe_dump({"dcls": {"data": {"dataset": "imagefolder", "root": str(root)},
                                                    "evaluate": {"official_checkpoint": checkpoint}}}))
        proc = run_snakemake(workdir, "-n", "-p", configfiles=("workflow/presets/smoke.yaml", str(overlay)),
                             timeout=300)
        commands[name] = [line for line in proc.stdout.splitlines() if "dcls-evaluate" in line]
    official = [line for line in commands["with"] if "results/dcls/official/metrics.json" in line]
    assert len(official) == 1 and "--input checkpoint=" in official[0] and '"official_checkpoint": ' in official[0]
    grid = [line for line in commands["with"] if line not in official]
    assert sorted(grid) == sorted(commands["without"]) != [] and not any('"official_checkpoint": ' in line for line in grid)


def _stage_means(current: dict[str, torch.Tensor], initial: dict[str, torch.Tensor]) -> dict[str, float]:
    """Independent reference: mean |P - P_init| per 'stages.<i>' over the state dict's position keys."""
    parts: dict[str, list[torch.Tensor]] = {}
    for key, value in current.items():
        if key.rsplit(".", 1)[-1] == "P" or key.endswith("_P"):
            stage = ".".join(key.split(".")[:2])
            parts.setdefault(stage, []).append((value - initial[key]).abs().flatten())
    return {stage: float(torch.cat(p).mean()) for stage, p in parts.items()}


def test_tap_shift_is_measured_from_the_runs_own_init(trained: tuple[dict, dict[str, Path]], tmp_path: Path) -> None:
    from tsdcls.dcls.train import build_run_model, load_weights

    config, inputs = trained
    params = {"family": SPEC.family, "variant": SPEC.variant, "kernel_count": SPEC.kernel_count, "dks": SPEC.dks}
    shifts = _evaluate({**config, "evaluate": EVAL}, inputs, tmp_path, params)["metrics"]["position_shift"]
    init, _ = build_run_model(config, SPEC, 10)
    expected = _stage_means(load_weights(inputs["weights"])["model"], init.state_dict())
    assert set(shifts) == {*expected, "all"} and len(expected) == 4
    for stage, value in expected.items():
        assert math.isclose(shifts[stage], value, rel_tol=1e-6), stage
    assert 0.5 < shifts["all"] < 4.5  # the fixture moved every tap to a uniform draw in [-4, 4]


def test_frozen_positions_do_not_move(tmp_path: Path) -> None:
    spec = RunSpec("convnext", "dcls_frozen", 6, 9, 0)
    config = tiny_config(train_size=64, epochs=1, batch_size=32)
    torch.set_num_threads(1)
    result = train_run(config, spec, "cpu", checkpoint_dir=None)
    inputs = {"weights": tmp_path / "weights.pt", "train": tmp_path / "train.json"}
    save_weights(inputs["weights"], result, spec, {})
    write_json(inputs["train"], result.record, {})
    params = {"family": spec.family, "variant": spec.variant, "kernel_count": spec.kernel_count, "dks": spec.dks}
    shifts = _evaluate({**config, "evaluate": EVAL}, inputs, tmp_path / "out", params)["metrics"]["position_shift"]
    assert shifts and all(value == 0.0 for value in shifts.values())
