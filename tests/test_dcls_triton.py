"""The Triton depthwise kernels: dispatch logic here, kernels under Triton's interpreter.

The interpreted cases (tests/triton_interpreted_cases.py: outputs and all gradients vs F.conv2d
and vs dcls 0.1.1, fp32 / bf16 / fp16, odd shapes) need TRITON_INTERPRET=1 before ``triton`` is
first imported (Triton jits its own library at import), which a shared pytest process cannot
promise; so one test reruns that file in a fresh pytest process with the variable set.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tsdcls.dcls.kernels import choose_algorithm

triton_dw = pytest.importorskip("tsdcls.dcls.triton_dw")
CASES_FILE = Path(__file__).with_name("triton_interpreted_cases.py")


@pytest.mark.slow  # a real end-to-end subprocess run (make test-fast skips it; make test runs it)
def test_triton_kernels_under_the_interpreter() -> None:
    if triton_dw.triton is None:
        pytest.skip("triton is not importable")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    cmd = [sys.executable, "-m", "pytest", str(CASES_FILE), "-q", "-p", "no:cacheprovider", "-x"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=CASES_FILE.parents[1])
    assert out.returncode == 0, f"interpreted Triton tests failed:\n{out.stdout[-6000:]}\n{out.stderr[-2000:]}"
    assert " passed" in out.stdout and "skipped" not in out.stdout and "failed" not in out.stdout, out.stdout[-2000:]


# --------------------------------------------------------------------------- dispatch
def test_auto_picks_triton_on_cuda_only_when_it_can_run() -> None:
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert choose_algorithm(cuda, 289, 1, 3136, "auto", triton_reason=None) == "triton"
    assert choose_algorithm(cuda, 289, 1, 3136, "auto", triton_reason="stride (2, 2) (only stride 1)") == "direct"
    assert choose_algorithm(cuda, 289, 1, 3136, "cudnn", triton_reason=None) == "direct"
    assert choose_algorithm(cuda, 289, 1, 3136, "triton", triton_reason="triton is not importable") == "direct"
    # the CPU default stays the crop/FFT/matmul path, even where the interpreter could run Triton
    assert choose_algorithm(cpu, 289, 1, 3136, "auto", triton_reason=None) == "fft"
    assert choose_algorithm(cpu, 289, 1, 49, "auto", triton_reason=None) == "matmul"


def test_unsupported_reasons_name_the_cause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # only the device check reads it
    x, k = torch.randn(1, 4, 8, 8), torch.randn(4, 1, 5, 5)
    assert triton_dw.unsupported_reason(x, k, (1, 1), 4) is None
    assert "stride" in triton_dw.unsupported_reason(x, k, (2, 2), 4)
    assert "depthwise" in triton_dw.unsupported_reason(x, torch.randn(8, 1, 5, 5), (1, 1), 4)
    assert "depthwise" in triton_dw.unsupported_reason(x, torch.randn(4, 2, 5, 5), (1, 1), 2)
    assert "larger than 31" in triton_dw.unsupported_reason(x, torch.randn(4, 1, 33, 5), (1, 1), 4)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert "device cpu" in triton_dw.unsupported_reason(x, k, (1, 1), 4)  # no interpreter here
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert triton_dw.available(torch.device("cpu"))


POINTERS = {"inp": "*bf16", "out": "*bf16", "w": "*fp32", "bias": "*fp32", "sup": "*i32",
            "x": "*bf16", "dy": "*bf16", "part": "*fp32"}


@pytest.mark.parametrize(("name", "constexprs"), [
    ("corr", {"SIGN": 1, "HAS_BIAS": True, "BLOCK_P": 64, "BLOCK_C": 32}),
    ("grad_w", {"BLOCK_P": 128, "BLOCK_C": 4}),
])
def test_kernels_compile_for_a_gpu_without_one(name: str, constexprs: dict) -> None:
    """The interpreter does not type-check like the compiler does: compile both kernels to PTX
    for sm_90 (H100/H200), which needs Triton's bundled ptxas but no GPU."""
    if triton_dw.triton is None:
        pytest.skip("triton is not importable")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    kernel = getattr(triton_dw._jitted(False), name)
    signature = {arg: "constexpr" if arg in constexprs else POINTERS.get(arg, "i32") for arg in kernel.arg_names}
    compiled = triton_dw.triton.compile(ASTSource(kernel, signature, constexprs=constexprs), target=GPUTarget("cuda", 90, 32))
    assert ".entry" in compiled.asm["ptx"]
