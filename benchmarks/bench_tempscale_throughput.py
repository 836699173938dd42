"""Encode throughput of TempScale vs the unpatched encoder vs an eager softmax-temperature patch.

    .venv/bin/python benchmarks/bench_tempscale_throughput.py [--lengths 128 256 512] [--rounds 5]

Texts are real (Wikipedia and Shakespeare windows of exactly N tokens), tokenised ONCE per length
and reused by every variant (tsdcls.tempscale.collapse.pretokenize). Variants are timed in
interleaved rounds (the order rotates each round) and compared by their medians, so machine
noise hits all of them alike. Variants:

* plain      - the unpatched model (SDPA kernel); "plain-A/A" runs it again as a second
               variant, so its ratio to plain shows how much of a ratio is machine noise
* tempscale  - tsdcls TempScale, tau = 0.8 on every layer (SDPA kept; only SDPA's scale changes)
* adaptive   - tsdcls length-adaptive TempScale (per-row tau: one multiply on the query)
* eager-ref  - what the paper's official code does: every self-attention replaced by a copy of
               the transformers 4.x eager attention computing softmax((QK^T/sqrt d + mask)/tau),
               on a model loaded with eager attention (implemented below, for this benchmark only)

It also checks that sentence-transformers sorts its batches by length (it sorts by characters,
a proxy) and prints the padding that proxy costs against exact token-count sorting.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


def eager_temperature_forward(module: nn.Module, tau: float):
    """The official code's attention: scores = (QK^T/sqrt(d) + mask) / tau, softmax, dropout, @V."""

    def forward(hidden_states, attention_mask=None, *args, **kwargs):
        batch, length, _ = hidden_states.shape
        head_dim = module.attention_head_size

        def heads(x):
            return x.view(batch, length, -1, head_dim).transpose(1, 2)

        query, key, value = heads(module.query(hidden_states)), heads(module.key(hidden_states)), heads(module.value(hidden_states))
        scores = torch.matmul(query, key.transpose(-1, -2)) / math.sqrt(head_dim)
        if attention_mask is not None:
            if attention_mask.dtype == torch.bool:
                attention_mask = torch.zeros(attention_mask.shape, dtype=scores.dtype).masked_fill(
                    ~attention_mask, torch.finfo(scores.dtype).min
                )
            scores = scores + attention_mask
        probs = nn.functional.softmax(scores / tau, dim=-1)
        probs = module.dropout(probs)
        context = torch.matmul(probs, value).transpose(1, 2).reshape(batch, length, -1)
        return context, None

    return forward


def build_texts(tokenizer: Any, length: int, count: int, seed: int) -> list[str]:
    """``count`` real texts of exactly ``length`` tokens (incl. [CLS]/[SEP]) where decoding allows."""
    from tsdcls.tempscale.collapse import LengthBin, window_texts

    texts = window_texts(tokenizer, [LengthBin(length - 1, length + 1)], ["wikipedia", "shakespeare"], count, seed)
    return [t.text for t in texts]


def padding_fraction(lengths: list[int], order: list[int], batch_size: int) -> float:
    """Share of padded positions when batches follow ``order``."""
    padded = real = 0
    for start in range(0, len(order), batch_size):
        chunk = [lengths[i] for i in order[start : start + batch_size]]
        padded += max(chunk) * len(chunk)
        real += sum(chunk)
    return 1.0 - real / padded


def check_length_sorting(model: Any, seed: int, batch_size: int) -> None:
    """sentence-transformers sorts by character length: how much padding does that proxy cost?"""
    from tsdcls.tempscale.collapse import LengthBin, natural_texts

    tokenizer = model.tokenizer
    texts = [t.text for t in natural_texts(tokenizer, [LengthBin(8, 512)], 256, seed)]
    tokens = [min(len(ids), model.max_seq_length) for ids in tokenizer(texts)["input_ids"]]
    proxy = getattr(model, "_input_length", len)  # what SentenceTransformer.encode sorts by
    by_chars = list(np.argsort([-proxy(t) for t in texts], kind="stable"))
    by_tokens = sorted(range(len(texts)), key=lambda i: -tokens[i])
    unsorted = list(range(len(texts)))
    rho = float(np.corrcoef(np.argsort(np.argsort([len(t) for t in texts])), np.argsort(np.argsort(tokens)))[0, 1])
    print(f"\nlength sorting over {len(texts)} natural Wikipedia paragraphs, batch {batch_size}:")
    print(f"  Spearman(characters, tokens) = {rho:.3f}")
    print(f"  padding: unsorted {padding_fraction(tokens, unsorted, batch_size):.1%}, "
          f"sentence-transformers (chars) {padding_fraction(tokens, by_chars, batch_size):.1%}, "
          f"exact token sort {padding_fraction(tokens, by_tokens, batch_size):.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--texts", type=int, default=32, help="texts per length")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tau", type=float, default=0.8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--texts-file", help="JSON {length: [texts]} to use instead of the corpora")
    parser.add_argument("--dump-texts", help="write the texts as JSON here and stop (for a machine without gensim)")
    args = parser.parse_args()

    from sentence_transformers import SentenceTransformer

    from tsdcls.common.assets import model_path
    from tsdcls.common.offline import enforce_offline
    from tsdcls.tempscale.collapse import encode_pretokenized, pretokenize
    from tsdcls.tempscale.patch import (
        apply_length_adaptive_tempscale,
        apply_tempscale,
        load_encoder,
        remove_tempscale,
    )

    enforce_offline()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = load_encoder(args.model, device=args.device, max_seq_length=max(args.lengths))
    eager = SentenceTransformer(model_path(args.model), device=args.device, model_kwargs={"attn_implementation": "eager"})
    eager.max_seq_length = model.max_seq_length
    eager.eval()
    eager_layers = [m for m in eager.modules() if type(m).__name__ == "BertSelfAttention"]
    if not eager_layers:
        raise SystemExit(f"the eager reference patch is written for BERT-family models; {args.model} has none")
    import sentence_transformers
    import transformers

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"sentence-transformers {sentence_transformers.__version__}")
    print(f"model {args.model}: {model[0].auto_model.config._attn_implementation} attention, "
          f"{args.threads} threads, device {args.device}, {args.rounds} interleaved rounds, tau {args.tau}")

    def patch_eager() -> None:
        for layer in eager_layers:
            layer.forward = eager_temperature_forward(layer, args.tau)

    def unpatch_eager() -> None:
        for layer in eager_layers:
            del layer.forward

    # name -> (patch, model to run, unpatch): patching happens outside the timed region.
    handles: dict[str, Any] = {}
    variants = {
        "plain": (lambda: None, model, lambda: None),
        "plain-A/A": (lambda: None, model, lambda: None),  # same as plain: the noise floor of a ratio
        "tempscale": (lambda: handles.update(t=apply_tempscale(model, args.tau)), model, lambda: handles["t"].remove()),
        "adaptive": (
            lambda: handles.update(a=apply_length_adaptive_tempscale(model, n_ref=64, tau_min=0.5)),
            model,
            lambda: handles["a"].remove(),
        ),
        "eager-ref": (patch_eager, eager, unpatch_eager),
    }

    def encode_with(name: str, pre: Any) -> tuple[torch.Tensor, float]:
        patch, target, unpatch = variants[name]
        patch()
        try:
            start = time.perf_counter()
            embeddings = encode_pretokenized(target, pre, args.device)  # returns on CPU: synchronised
            return embeddings, time.perf_counter() - start
        finally:
            unpatch()

    given = json.loads(Path(args.texts_file).read_text()) if args.texts_file else {}
    if args.dump_texts:
        dump = {str(n): build_texts(model.tokenizer, n, args.texts, args.seed) for n in args.lengths}
        Path(args.dump_texts).write_text(json.dumps(dump))
        return
    rows = []
    for length in args.lengths:
        texts = given[str(length)] if given else build_texts(model.tokenizer, length, args.texts, args.seed)
        t0 = time.perf_counter()
        pre = pretokenize(model, texts, args.batch_size)
        tokenize_s = time.perf_counter() - t0
        # the same embeddings from both TempScale paths (the eager reference is the exactness witness)
        diff = (encode_with("tempscale", pre)[0] - encode_with("eager-ref", pre)[0]).abs().max().item()
        apply_tempscale(model, 1.0)
        identical = torch.equal(encode_pretokenized(model, pre, args.device), encode_with("plain", pre)[0])
        remove_tempscale(model)
        times: dict[str, list[float]] = {name: [] for name in variants}
        names = list(variants)
        for name in names:  # warm-up: first calls allocate and pick kernels
            encode_with(name, pre)
        for round_index in range(args.rounds):
            for name in names[round_index % len(names) :] + names[: round_index % len(names)]:
                times[name].append(encode_with(name, pre)[1])
        base = statistics.median(times["plain"])
        for name in names:
            med = statistics.median(times[name])
            rows.append((length, name, len(texts) / med, base / med, med))
        print(f"  {length} tokens: {len(texts)} texts, tokenising once took {tokenize_s:.2f} s; "
              f"max |TempScale - eager reference| = {diff:.2e}; tau=1 bit-identical: {identical}")

    print(f"\n{'tokens':>6}  {'variant':<11} {'texts/s':>9} {'vs plain':>9} {'median s':>9}")
    for length, name, rate, ratio, med in rows:
        print(f"{length:>6}  {name:<11} {rate:>9.1f} {ratio:>8.3f}x {med:>9.3f}")
    if not given:
        check_length_sorting(model, args.seed, args.batch_size)
    remove_tempscale(model)


if __name__ == "__main__":
    main()
