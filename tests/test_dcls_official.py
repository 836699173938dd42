"""Loading the authors' ConvNeXt-dcls state dicts, tested against their exact key/shape layouts
(shared/dcls/*.tsv, recorded from the released models) without the checkpoint files."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F

from tsdcls.dcls.official import load_official_checkpoint, timm_key, unwrap_checkpoint

LAYOUTS = Path("/work/shared/dcls")
DEPTHS = {"tiny": (3, 3, 9, 3), "small": (3, 3, 27, 3), "base": (3, 3, 27, 3)}
PARAMS = {"tiny": 28_587_688, "small": 50_217_064, "base": 88_582_632}  # shared/dcls/README.md


def _layout(size: str) -> list[tuple[str, tuple[int, ...]]]:
    path = LAYOUTS / f"convnext_dcls_{size}_state_dict_keys.tsv"
    if not path.exists():
        pytest.skip(f"{path} not present")
    rows = []
    for line in path.read_text().splitlines()[1:]:
        key, shape = line.split("\t")
        rows.append((key, tuple(int(s) for s in shape.strip("()").split(",") if s.strip())))
    return rows


def _random_state_dict(size: str, seed: int) -> dict[str, torch.Tensor]:
    """Random tensors with exactly the official keys and shapes; one P per stage, repeated under
    each block's key as in the released state dicts; spread positions (+-8 in the 17x17 grid)."""
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    stage_p: dict[str, torch.Tensor] = {}
    for key, shape in _layout(size):
        if key.endswith("dwconv.P"):
            stage = key.split(".")[1]
            state[key] = stage_p.setdefault(stage, (torch.rand(shape, generator=gen) * 2 - 1) * 8)
        elif ".norm." in key or key.startswith("norm.") or (key.startswith("downsample_layers") and len(shape) == 1 and key.endswith("weight")):
            state[key] = 1 + 0.1 * torch.randn(shape, generator=gen)
        else:
            state[key] = 0.05 * torch.randn(shape, generator=gen)
    return state


def _ln_channels_first(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), w, b, 1e-6).permute(0, 3, 1, 2)


def _reference_forward(sd: dict[str, torch.Tensor], depths: tuple[int, ...], x: torch.Tensor) -> torch.Tensor:
    """The authors' ConvNeXt-dcls forward, written from their code's structure on the raw state
    dict, with dcls 0.1.1's own Dcls2d for the depthwise layers (independent of our model)."""
    reference = pytest.importorskip("DCLS.construct.modules")
    x = F.conv2d(x, sd["downsample_layers.0.0.weight"], sd["downsample_layers.0.0.bias"], stride=4)
    x = _ln_channels_first(x, sd["downsample_layers.0.1.weight"], sd["downsample_layers.0.1.bias"])
    for i, depth in enumerate(depths):
        if i > 0:
            x = _ln_channels_first(x, sd[f"downsample_layers.{i}.0.weight"], sd[f"downsample_layers.{i}.0.bias"])
            x = F.conv2d(x, sd[f"downsample_layers.{i}.1.weight"], sd[f"downsample_layers.{i}.1.bias"], stride=2)
        for j in range(depth):
            p = f"stages.{i}.{j}."
            channels = x.shape[1]
            dw = reference.Dcls2d(channels, channels, kernel_count=sd[p + "dwconv.weight"].shape[-1], dilated_kernel_size=17,
                                  padding=8, groups=channels, version="v0", use_implicit_gemm=False)
            dw.load_state_dict({k: sd[p + "dwconv." + k] for k in ("weight", "P", "bias")})
            y = dw(x).permute(0, 2, 3, 1)
            y = F.layer_norm(y, (channels,), sd[p + "norm.weight"], sd[p + "norm.bias"], 1e-6)
            y = F.linear(F.gelu(F.linear(y, sd[p + "pwconv1.weight"], sd[p + "pwconv1.bias"])), sd[p + "pwconv2.weight"], sd[p + "pwconv2.bias"])
            x = x + (sd[p + "gamma"] * y).permute(0, 3, 1, 2)
    x = F.layer_norm(x.mean((-2, -1)), (x.shape[1],), sd["norm.weight"], sd["norm.bias"], 1e-6)
    return F.linear(x, sd["head.weight"], sd["head.bias"])


def test_tiny_checkpoint_loads_and_reproduces_the_reference_forward() -> None:
    logging.getLogger().setLevel(logging.ERROR)  # dcls warns about its CUDA kernel on every init
    ema = _random_state_dict("tiny", seed=0)
    plain = _random_state_dict("tiny", seed=1)
    model = load_official_checkpoint({"model": plain, "model_ema": ema, "epoch": 299}).eval()
    assert sum(p.numel() for p in model.parameters()) == PARAMS["tiny"]
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours = model(x)
        expected = _reference_forward(ema, DEPTHS["tiny"], x)
        other = _reference_forward(plain, DEPTHS["tiny"], x)
    scale = expected.abs().max()
    print(f"official forward: rel err {float((ours - expected).abs().max() / scale):.2e}")
    assert float((ours - expected).abs().max() / scale) < 1e-4
    assert float((other - expected).abs().max() / scale) > 1e-2  # EMA, not 'model', was loaded


@pytest.mark.parametrize("size", ["tiny", "small", "base"])
def test_every_official_key_lands_on_a_model_tensor_of_its_shape(size: str) -> None:
    layout = _layout(size)
    with torch.device("meta"):
        model = timm.create_model(f"convnext_{size}_dcls")
    target = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    mapped = {timm_key(k): shape for k, shape in layout}
    assert mapped == target  # a bijection onto the model's keys with equal shapes
    assert sum(p.numel() for p in model.parameters()) == PARAMS[size]


def test_bare_state_dicts_and_bad_checkpoints() -> None:
    ema = _random_state_dict("tiny", seed=3)
    model = load_official_checkpoint({f"module.{k}": v for k, v in ema.items()})
    assert torch.equal(model.stages[2].blocks[4].conv_dw.weight, ema["stages.2.4.dwconv.weight"])
    assert unwrap_checkpoint({"model": ema, "model_ema": {}}) is not ema  # empty EMA: falls back
    with pytest.raises(ValueError, match="'model_ema'/'model'"):
        unwrap_checkpoint({"optimizer": {"state": {}}, "epoch": 3})
    broken = dict(ema)
    broken["stages.1.2.dwconv.P"] = broken["stages.1.2.dwconv.P"] + 1
    with pytest.raises(ValueError, match="shares P per stage"):
        load_official_checkpoint(broken, model=model)
    del broken["stages.1.2.dwconv.P"]
    with pytest.raises(ValueError, match="lacks 1"):
        load_official_checkpoint(broken, model=model)
