"""int8 against bf16 and fp32 for the generator on this CPU, side by side in one process.

int8 is PyTorch's PT2E static quantization with the X86 Inductor quantizer (torchao,
calibrated on the evaluation set's degraded crops), lowered by torch.compile with
freezing. Two graph passes make the generator quantizable: a scalar added to a conv's
output becomes a tensor (the quantizer's conv+add fusion expects two nodes), and each
call of a conv the recurrent net reuses at every step is named apart (the quantizer
refuses one partition with several outputs). Times are per 256x256 crop, batch 4, 2
threads; quality is each kind's PSNR against fp32 on other crops.

    pip install torchao && python benchmarks/int8.py [--model lite]
"""
from __future__ import annotations

import argparse
import importlib.util
import time

import numpy as np
import torch

from stream_denoise.metrics import psnr
from stream_denoise.models.generator import Generator
from stream_denoise.models.weights import load_generator
from stream_denoise.train.evaluate import held_out_eval_set

KINDS = ["raindrops", "snow", "gaussian", "dust"]


class Image(torch.nn.Module):
    """The image output alone: what the Denoiser uses."""

    def __init__(self, generator: Generator) -> None:
        super().__init__()
        self.g = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.g(x).image


def scalars_to_tensors(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and node.target is torch.ops.aten.add.Tensor:
            args = list(node.args)
            for i, a in enumerate(args):
                if isinstance(a, (int, float)):
                    name = f"_scalar_{node.name}_{i}"
                    gm.register_buffer(name, torch.tensor(float(a)))
                    with gm.graph.inserting_before(node):
                        args[i] = gm.graph.get_attr(name)
            node.args = tuple(args)
    gm.graph.lint()
    gm.recompile()
    return gm


def split_recurrent_calls(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    for node in gm.graph.nodes:
        if node.op != "call_function" or node.target is not torch.ops.aten.conv2d.default:
            continue
        if "torch_fn" in node.meta:
            fqn, fn = node.meta["torch_fn"]
            node.meta["torch_fn"] = (f"{fqn}__{node.name}", fn)
        stack = dict(node.meta.get("nn_module_stack") or {})
        if stack:
            key, (fqn, cls) = list(stack.items())[-1]
            del stack[key]
            stack[f"{key}__{node.name}"] = (f"{fqn}__{node.name}", cls)
            node.meta["nn_module_stack"] = stack
    return gm


def ms_per_crop(f, x: torch.Tensor, rounds: int = 4) -> float:
    with torch.no_grad():
        f(x)
        f(x)
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            f(x)
            times.append((time.perf_counter() - t) / x.shape[0] * 1000)
    return sorted(times)[len(times) // 2]


def batch(samples) -> torch.Tensor:
    return torch.stack([torch.from_numpy(s.noisy).permute(2, 0, 1).float() / 255 for s in samples])


def main() -> None:
    if importlib.util.find_spec("torchao") is None:
        raise SystemExit("benchmarks/int8.py needs torchao, which stream-denoise does not: pip install torchao")
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="lite")
    args = p.parse_args()
    torch.set_num_threads(2)
    loaded, _ = load_generator(args.model)
    generator = Generator(loaded.config)
    generator.load_state_dict(loaded.state_dict())
    fp32 = Image(generator.float().eval()).eval()
    x = torch.rand(4, 3, 256, 256)
    calib = batch([s for v in held_out_eval_set("builtin", KINDS, samples=8).values() for s in v])

    exported = torch.export.export(fp32, (calib[:4],)).module()
    quantizer = X86InductorQuantizer()
    quantizer.set_global(get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(split_recurrent_calls(scalars_to_tensors(exported)), quantizer)
    with torch.no_grad():
        for i in range(0, len(calib), 4):
            prepared(calib[i:i + 4])
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    int8 = torch.compile(convert_pt2e(prepared))
    bf16 = Image(Generator(generator.config)).eval()
    bf16.g.load_state_dict(generator.state_dict())
    bf16 = bf16.to(torch.bfloat16).to(memory_format=torch.channels_last)
    xb = x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    rows = [("fp32, eager", ms_per_crop(fp32, x)), ("fp32, torch.compile", ms_per_crop(torch.compile(fp32), x)),
            ("bf16, eager", ms_per_crop(bf16, xb)), ("bf16, torch.compile", ms_per_crop(torch.compile(bf16), xb)),
            ("int8 (PT2E, X86 Inductor)", ms_per_crop(int8, x))]
    print(f"model {args.model}: ms per 256x256 crop (batch 4, 2 threads)\n")
    print("| precision | ms per crop |\n|---|---|")
    for name, ms in rows:
        print(f"| {name} | {ms:.1f} |")
    print("\n| kind | fp32 PSNR | int8 PSNR | int8 - fp32 |\n|---|---|---|---|")
    to8 = lambda t: (t.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()  # noqa: E731
    for kind, samples in held_out_eval_set("builtin", KINDS, samples=8, seed=5).items():
        xi = batch(samples)
        with torch.no_grad():
            a = to8(fp32(xi))
            b = to8(torch.cat([int8(xi[i:i + 4]) for i in range(0, len(xi), 4)]))
        pa = np.mean([psnr(o, s.clean) for o, s in zip(a, samples)])
        pb = np.mean([psnr(o, s.clean) for o, s in zip(b, samples)])
        print(f"| {kind} | {pa:.2f} | {pb:.2f} | {pb - pa:+.2f} dB |")


if __name__ == "__main__":
    main()
