"""Model ladders of `make demo`: the MNIST CNN and all-MiniLM-L6-v2, each quantized many ways.

Each rung starts from the same float model; "worst layer" is the quantized
layer whose output has the lowest SQNR against the float model's.  Peer
workflows (torch.ao) run in the same process on the same data.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

import lowbit.model as lm
from lowbit import PerGroup, PerTensor
from lowbit.zoo import embed, evaluate_accuracy, load_minilm, load_mnist_cnn, mnist_split, sentences

QAT_STEPS = 300


def _static(calibration: list[Any], method: str = "minmax", smoothquant: float | str | None = None,
            **options: Any):
    def apply(model: nn.Module) -> None:
        data = {} if smoothquant is None else {"batches": calibration, "progress": False}
        lm.quantize_(model, lm.Static(method=method, method_options=options, smoothquant=smoothquant), **data)
        lm.calibrate(model.eval(), calibration, progress=False)
        lm.convert(model)

    return apply


def _with_data(config: Any, calibration: list[Any]):
    """A data-driven config (GPTQ, AWQ, SmoothQuant) applied with calibration batches."""
    return lambda model: lm.quantize_(model, config, batches=calibration, progress=False)


class _TorchAOWrapper(nn.Module):
    """The MNIST CNN between QuantStub/DeQuantStub, as torch.ao's eager workflow needs."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        import torch.ao.quantization as tq

        self.quant, self.features, self.classifier, self.dequant = (
            tq.QuantStub(), net.features, net.classifier, tq.DeQuantStub()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dequant(self.classifier(self.features(self.quant(x)).flatten(1)))


def _torch_ao_static(calibration: list[torch.Tensor]):
    def apply(model: nn.Module) -> nn.Module:
        import torch.ao.quantization as tq

        wrapped = _TorchAOWrapper(model).eval()
        wrapped.qconfig = tq.get_default_qconfig("x86")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tq.prepare(wrapped, inplace=True)
            with torch.no_grad():
                for batch in calibration:
                    wrapped(batch)
            tq.convert(wrapped, inplace=True)
        return wrapped

    return apply


def _torch_dynamic(model: nn.Module) -> nn.Module:
    import torch.ao.quantization as tq

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tq.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)


def _qat(train_batches: list[tuple[torch.Tensor, torch.Tensor]], qtype: str, steps: int):
    def apply(model: nn.Module) -> None:
        lm.quantize_(model, lm.QAT(lm.WeightOnly(qtype), step="prepare"))
        lm.train(model, train_batches, nn.functional.cross_entropy, steps=steps, lr=1e-3)
        lm.quantize_(model, lm.QAT(lm.WeightOnly(qtype), step="convert"))

    return apply


def mnist_ladder(qat_steps: int = QAT_STEPS) -> list[lm.Rung]:
    """Accuracy of the MNIST CNN on the 10,000 test images under each scheme."""
    torch.manual_seed(0)
    model = load_mnist_cnn()
    test_x, test_y = mnist_split("test")
    train_x, train_y = mnist_split("train")
    calibration = [train_x[i : i + 250] for i in range(0, 2500, 250)]
    order = torch.randperm(train_x.shape[0], generator=torch.Generator().manual_seed(0))
    train_batches = [(train_x[order[i : i + 128]], train_y[order[i : i + 128]]) for i in range(0, 128 * qat_steps, 128)]

    def accuracy(m: nn.Module) -> dict[str, float]:
        return {"accuracy %": 100 * evaluate_accuracy(m, test_x, test_y)}

    steps = [
        ("W8 channel", lambda m: lm.quantize_(m, lm.WeightOnly("int8"))),
        ("W8 tensor", lambda m: lm.quantize_(m, lm.WeightOnly("int8", PerTensor()))),
        ("W4 channel", lambda m: lm.quantize_(m, lm.WeightOnly("int4"))),
        ("W3 channel", lambda m: lm.quantize_(m, lm.WeightOnly("int3"))),
        ("W2 channel", lambda m: lm.quantize_(m, lm.WeightOnly("int2"))),
        (f"W2 channel QAT ({qat_steps} steps)", _qat(train_batches, "int2", qat_steps)),
        ("W8A8 dynamic (lowbit)", lambda m: lm.quantize_(m, lm.Dynamic())),
        ("W8A8 static (lowbit)", _static(calibration)),
        ("W8A8 static (torch.ao x86)", _torch_ao_static(calibration)),
        ("W8A8 dynamic Linear (torch.ao)", _torch_dynamic),
    ]
    return lm.run_ladder(model, steps, accuracy, [test_x[:500]])


def minilm_ladder() -> list[lm.Rung]:
    """Embedding cosine of all-MiniLM-L6-v2 against its float embeddings under each scheme.

    GPTQ, AWQ and SmoothQuant calibrate on 128 other sentences of the corpus than the 96 scored.
    """
    model, tokenizer = load_minilm()
    texts = sentences()
    reference = embed(model, tokenizer, texts)
    batches = [dict(tokenizer(texts[i : i + 32], padding=True, truncation=True, return_tensors="pt"))
               for i in range(0, len(texts), 32)]
    other = sentences(len(texts) + 128)[len(texts):]
    calibration = [dict(tokenizer(other[i : i + 32], padding=True, truncation=True, return_tensors="pt"))
                   for i in range(0, len(other), 32)]

    def cosine(m: nn.Module) -> dict[str, float]:
        cos = (embed(m, tokenizer, texts) * reference).sum(dim=1)
        return {"mean cos": float(cos.mean()), "min cos": float(cos.min())}

    steps = [
        ("W8 channel", lambda m: lm.quantize_(m, lm.WeightOnly("int8"))),
        ("W8 tensor", lambda m: lm.quantize_(m, lm.WeightOnly("int8", PerTensor()))),
        ("W4 group:32 (uint4 affine)", lambda m: lm.quantize_(m, lm.WeightOnly("uint4", PerGroup(32)))),
        ("W4 group:32 (uint4 HQQ)", lambda m: lm.quantize_(m, lm.WeightOnly("uint4", PerGroup(32), algorithm="hqq"))),
        ("W4 group:32 (int4 sym)", lambda m: lm.quantize_(m, lm.WeightOnly("int4", PerGroup(32)))),
        ("W4 group:64 (nf4, double8 scales)",
         lambda m: lm.quantize_(m, lm.WeightOnly("nf4", PerGroup(64), scale_format="double8"))),
        ("W4 mxfp4 (blocks of 32, e8m0)", lambda m: lm.quantize_(m, lm.WeightOnly("mxfp4"))),
        ("W4 channel (uint4 affine)", lambda m: lm.quantize_(m, lm.WeightOnly("uint4"))),
        ("W4 channel (int4 sym)", lambda m: lm.quantize_(m, lm.WeightOnly("int4"))),
        ("W4 channel (int4 GPTQ)", _with_data(lm.WeightOnly("int4", algorithm="gptq"), calibration)),
        ("W4 channel (int4 AWQ)", _with_data(lm.WeightOnly("int4", algorithm="awq"), calibration)),
        ("W3 group:32 (int3 sym)", lambda m: lm.quantize_(m, lm.WeightOnly("int3", PerGroup(32)))),
        ("W3 group:32 (int3 GPTQ)", _with_data(lm.WeightOnly("int3", PerGroup(32), algorithm="gptq"), calibration)),
        ("W3 group:32 (int3 AWQ)", _with_data(lm.WeightOnly("int3", PerGroup(32), algorithm="awq"), calibration)),
        ("W8A8 dynamic per-token (lowbit)", lambda m: lm.quantize_(m, lm.Dynamic(act_granularity="token"))),
        ("W8A8 dynamic per-tensor (lowbit)", lambda m: lm.quantize_(m, lm.Dynamic())),
        ("W8A8 dynamic per-tensor + SmoothQuant", _with_data(lm.Dynamic(smoothquant="auto"), calibration)),
        ("W8A8 static (lowbit)", _static(calibration)),
        ("W8A8 static + SmoothQuant", _static(calibration, smoothquant="auto")),
        ("W8A8 static percentile (lowbit)", _static(calibration, "percentile", percentile=99.99)),
        ("W8A8 dynamic Linear (torch.ao)", _torch_dynamic),
    ]
    return lm.run_ladder(model, steps, cosine, batches[:1])


def main() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the demo prints tables, not loading bars
    torch.set_num_threads(2)
    print(lm.render_ladder(mnist_ladder(), "MNIST CNN (ccexam) on the 10,000 MNIST test images"))
    print()
    print(lm.render_ladder(minilm_ladder(), f"all-MiniLM-L6-v2 embeddings of {len(sentences())} sentences vs fp32"))


if __name__ == "__main__":
    main()
