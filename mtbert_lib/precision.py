"""What a run computes in (fp32, bf16, or fp16 with loss scaling), resolved once per run from the device, and what
goes with it: autocast around the forward pass, the gradient scaler, the optimizer step through it.

Hand-written (not generated from a notebook), like experiments.py: notebook 07, section 4 teaches the rule and shows
this file. It sits below the training loop (notebook 07) and notebook 11's MLM pretraining, which both use it, and
imports neither: the library's import graph has no circle (tests/test_import_graph.py).
"""
import torch

__all__ = ['AUTOCAST_DTYPES', 'cpu_has_native_bf16', 'auto_precision', 'resolve_precision', 'native_bf16', 'use_bf16',
           'autocast', 'grad_scaler', 'optimizer_step']


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX among the CPU's flags (Linux: /proc/cpuinfo)."""
    try:
        flags = next((l for l in open("/proc/cpuinfo") if l.startswith("flags")), "")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def auto_precision(device_type: str, cuda_capability: tuple | None = None, cpu_bf16: bool = False) -> str:
    """The rule behind precision='auto', from plain facts: 'bf16' | 'fp16' | 'fp32'."""
    if device_type == "cuda":
        return "bf16" if tuple(cuda_capability) >= (8, 0) else "fp16"
    return "bf16" if device_type == "cpu" and cpu_bf16 else "fp32"


def resolve_precision(precision: str, device) -> str:
    """What a run computes in ('fp32' | 'bf16' | 'fp16'): `precision` itself, or for 'auto' the rule above applied
    to this device (a CUDA card's compute capability; a CPU's flags)."""
    if precision != "auto":
        return precision
    device = torch.device(device)
    if device.type == "cuda":
        return auto_precision("cuda", torch.cuda.get_device_capability(device))
    return auto_precision(device.type, cpu_bf16=device.type == "cpu" and cpu_has_native_bf16())


def native_bf16(device) -> bool:
    """Does this device multiply bf16 matrices natively? (CUDA: compute capability ≥ 8.0; CPU: AVX512-BF16 or AMX.)"""
    return resolve_precision("auto", device) == "bf16"


def use_bf16(precision: str, device) -> bool:
    return resolve_precision(precision, device) == "bf16"


# Plumbing: precision switches (autocast, fp16 loss scaling and skipped steps)
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device, precision="fp32"):
    """Autocast to bf16 or fp16 (matmuls in 16 bits; weights, optimizer and EMA stay fp32), or a no-op for fp32.
    `precision` is a resolved name ('fp32' | 'bf16' | 'fp16'); True / False still mean bf16 / fp32."""
    precision = {True: "bf16", False: "fp32"}.get(precision, precision)
    return torch.autocast(torch.device(device).type, dtype=AUTOCAST_DTYPES.get(precision, torch.bfloat16),
                          enabled=precision in AUTOCAST_DTYPES)


def grad_scaler(precision: str, device):
    """Loss scaling for fp16; a disabled scaler (scale(loss) is loss, step is a plain step) for fp32 and bf16."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=precision == "fp16")


def optimizer_step(opt, scaler):
    """One optimizer step through the scaler; returns whether it stepped. Without loss scaling: True. Under fp16: a
    bool tensor on the device, False when the scaler skipped the step (inf or NaN gradients: weights and optimizer
    state left alone, the loss scale halved). A tensor, not a Python bool, so the step never waits for the device:
    with AdamW's fused path the scaler hands the optimizer its scale and inf flag (notebook 04) and reads neither."""
    if not scaler.is_enabled():
        opt.step()
        return True
    before = scaler._get_scale_async().clone()
    scaler.step(opt)  # unscales the gradients, then steps unless one of them is inf or NaN
    scaler.update()  # halves the scale after a skipped step, doubles it after growth_interval clean ones
    return scaler._get_scale_async() >= before
