"""The CUDA path: parity with Hugging Face on the GPU, training steps in each precision, CUDA graphs
(compile='reduce-overhead') against eager, and resume on the GPU. Marked `gpu`: skipped without CUDA;
`pytest -m gpu` runs them (benchmarks/gpu_check.sh does, on the lent GPU machine).

Models: random-weight checkpoints written on the spot (tools/random_checkpoint.py: MiniLM's and bert-base's sizes,
a character-level vocabulary), so nothing needs downloading; the real task files (data/) for the training tests.
$MTBERT_GPU_CHECKPOINT may name a real checkpoint folder (e.g. MiniLM) to check for parity too.

Tolerances of 16-bit autocast. A format with p significand bits rounds to a relative error of u = 2**-p:
bf16 p = 8, u = 3.9e-3; fp16 p = 11, u = 4.9e-4. Measured on the CPU (bf16/fp16 autocast against fp32 HF):
MiniLM on real SST sentences, pooler 1.3e-3 to 1.75e-3 (0.33-0.45 u) in bf16 and 2.1e-4 (0.43 u) in fp16; the
random-weight bert-base of these tests, pooler 2.6e-2 (6.6 u) in bf16 and 3.2e-3 (6.5 u) in fp16, last hidden state
2.7 u to 3 u of its largest value. The error scales with u, as it must. So:
  * absolute: pooler (tanh, |x| <= 1) within 16 u, last hidden state within 16 u x max|h| (2.4x the worst measured);
  * comparative, the sharper one: our error against HF in fp32 at most 2x HF's own error in the same autocast
    (+ u/16 for near-zero cases); measured ratios 0.95 to 1.2 on the CPU: same rounding points, other op order.
"""
import os

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS (resume test); before CUDA starts

import math
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from engine_helpers import REPO_ROOT, data_env, resolve_data_dir

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

if str(REPO_ROOT / "tools") not in sys.path:
    sys.path.insert(0, str(REPO_ROOT / "tools"))

U = {"bf16": 2.0 ** -8, "fp16": 2.0 ** -11}
DTYPE = {"bf16": torch.bfloat16, "fp16": torch.float16}
TOL_FP32 = 1e-5  # fp32: pooler (|x| <= 1) within this; last hidden state within this x max(1, max|h|) (cuBLAS picks
                 # other reduction orders for other shapes: random bert-base, max|h| about 4, measured 1.02e-5 on an H100)


def native_bf16_card():
    return torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 0)


def amp_params(*precisions):
    """bf16 is only run where the card has bf16 units (compute capability >= 8.0)."""
    return [pytest.param(p, marks=pytest.mark.skipif(p == "bf16" and not native_bf16_card(),
                                                     reason="no native bf16 on this card")) for p in precisions]


def quiet(*_):
    pass


# ------------------------------------------------------------------------------------------------ parity with HF

@pytest.fixture(scope="module")
def hf_models():
    """name -> (HF BertModel on CUDA in eval mode, a function attn_impl -> our BertModel with the same weights).
    Every tensor of the random models is perturbed, so a mis-mapped bias or LayerNorm shows."""
    transformers = pytest.importorskip("transformers")
    transformers.utils.logging.set_verbosity_error()
    from mtbert_lib.model import BertConfig, BertModel
    from random_checkpoint import SIZES
    out = {}
    for i, size in enumerate(("minilm", "bert-base")):
        torch.manual_seed(1234 + i)
        hf = transformers.BertModel(transformers.BertConfig(**SIZES[size], attn_implementation="sdpa")).eval()
        with torch.no_grad():
            for p in hf.parameters():
                p.add_(torch.randn_like(p) * 0.02)
        ours = lambda impl, hf=hf, size=size: BertModel(BertConfig(**SIZES[size], attn_impl=impl)).load_hf_state_dict(  # noqa: E731
            hf.state_dict()).cuda().eval()
        out[f"random-{size}"] = (hf.cuda(), ours)
    extra = os.environ.get("MTBERT_GPU_CHECKPOINT")
    if extra:
        hf = transformers.BertModel.from_pretrained(extra, attn_implementation="sdpa").float().eval()
        out[f"checkpoint-{Path(extra).name}"] = (hf.cuda(), lambda impl: BertModel.from_pretrained(extra, attn_impl=impl).cuda().eval())
    return out


def padded_batch(vocab_size, B=8, T=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab_size, (B, T), generator=g)
    mask = torch.zeros(B, T, dtype=torch.long)
    for i, n in enumerate([64, 50, 40, 33, 20, 12, 7, 3][:B]):
        mask[i, :n] = 1
    ids = ids * mask
    types = torch.zeros_like(ids)
    types[:, T // 2:] = 1
    return {k: v.cuda() for k, v in dict(input_ids=ids, attention_mask=mask, token_type_ids=types * mask).items()}


def diffs(a, b, mask):
    m = mask.bool()
    return ((a.last_hidden_state.float() - b.last_hidden_state.float())[m].abs().max().item(),
            (a.pooler_output.float() - b.pooler_output.float()).abs().max().item())


@pytest.fixture
def no_tf32():
    """fp32 means fp32: no TF32 matmuls (PyTorch's default, made explicit)."""
    was = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(was)


@pytest.mark.parametrize("attn_impl", ["sdpa", "manual"])
def test_fp32_parity_with_hf_on_cuda(hf_models, attn_impl, no_tf32, measure):
    for name, (hf, make_ours) in hf_models.items():
        ours = make_ours(attn_impl)
        b = padded_batch(hf.config.vocab_size)
        with torch.no_grad():
            hidden, pool = diffs(ours(**b), hf(**b), b["attention_mask"])
        measure(f"gpu parity fp32 {name:22s} attn={attn_impl:6s} ({torch.cuda.get_device_name()}): "
                f"last hidden {hidden:.2e}, pooler {pool:.2e}")
        scale = max(1.0, hf(**b).last_hidden_state[b["attention_mask"].bool()].abs().max().item())
        assert hidden <= TOL_FP32 * scale and pool <= TOL_FP32, (name, hidden, pool, scale)


@pytest.mark.parametrize("precision", amp_params("bf16", "fp16"))
def test_autocast_parity_with_hf_on_cuda(hf_models, precision, no_tf32, measure):
    u = U[precision]
    for name, (hf, make_ours) in hf_models.items():
        ours = make_ours("sdpa")
        b = padded_batch(hf.config.vocab_size)
        with torch.no_grad():
            ref = hf(**b)
            with torch.autocast("cuda", dtype=DTYPE[precision]):
                low_ours, low_hf = ours(**b), hf(**b)
        assert low_ours.pooler_output.dtype == DTYPE[precision]  # autocast really ran (LayerNorm outputs stay fp32)
        ours_h, ours_p = diffs(low_ours, ref, b["attention_mask"])
        hf_h, hf_p = diffs(low_hf, ref, b["attention_mask"])
        scale = ref.last_hidden_state[b["attention_mask"].bool()].abs().max().item()
        measure(f"gpu parity {precision} {name:22s} vs HF fp32: ours hidden {ours_h:.2e} pooler {ours_p:.2e} | HF's own "
                f"{precision}: hidden {hf_h:.2e} pooler {hf_p:.2e} | pooler/u ours {ours_p / u:.2f}")
        assert ours_p <= 16 * u and ours_h <= 16 * u * scale, (name, ours_h, ours_p)
        assert ours_p <= 2 * hf_p + u / 16 and ours_h <= 2 * hf_h + u / 16 * scale, (name, ours_h, hf_h, ours_p, hf_p)


# ------------------------------------------------------------------------------------------------ training on the GPU

@pytest.fixture(scope="module")
def gpu_checkpoints(tmp_path_factory):
    """Random-weight checkpoints (character-level vocabulary): MiniLM-sized with dropout, and a tiny one without
    dropout for comparing compiled and eager runs (their dropout masks come from different random streams; a small
    graph also compiles fast)."""
    from random_checkpoint import write_random_checkpoint
    base = tmp_path_factory.mktemp("gpu-ckpt")
    return {"dropout": write_random_checkpoint(base / "dropout", "minilm"),
            "tiny-no-dropout": write_random_checkpoint(base / "tiny-no-dropout", "tiny", dropout=False)}


CFG = dict(name="gpu", tasks=("sst", "quora", "sts"), eval_tasks=("sst", "quora", "sts"), schedule="balanced",
           batch_size=8, train_limit=32, dev_limit=32, train_eval_limit=16, epochs=1, consistency="kl", pooling="mean",
           max_length=64, lr=1e-4, device="cuda")


def gpu_cfg(checkpoint, **changes):
    from mtbert_lib.training import TrainConfig
    return replace(TrainConfig(**CFG, model=str(checkpoint)), **changes)


def test_auto_precision_on_this_card(measure):
    from mtbert_lib.training import resolve_precision
    cc = torch.cuda.get_device_capability()
    picked = resolve_precision("auto", "cuda")
    measure(f"gpu {torch.cuda.get_device_name()} compute capability {cc[0]}.{cc[1]}: auto -> {picked} "
            f"(torch.cuda.is_bf16_supported() says {torch.cuda.is_bf16_supported()})")
    assert picked == ("bf16" if cc >= (8, 0) else "fp16")


@pytest.mark.parametrize("precision", amp_params("fp32", "bf16", "fp16"))
def test_training_steps_per_precision(request, tmp_path, gpu_checkpoints, precision, measure):
    from mtbert_lib.training import read_checkpoint, run_name, train
    cfg = gpu_cfg(gpu_checkpoints["dropout"], precision=precision)
    with data_env(resolve_data_dir(request)):
        result = train(cfg, tmp_path / "runs", tmp_path / "results", progress=False, log=quiet)
    e = result["epochs"][0]
    assert e["step"] == 12  # balanced: 32 per task, batch 8 -> 4 rounds x 3 tasks
    assert all(math.isfinite(v) for v in e["train_loss"].values()), e["train_loss"]
    assert set(e["dev"]) == {"sst", "quora", "sts"} and all(math.isfinite(v) for v in e["dev"].values())
    assert result["provenance"]["precision"].split()[0] == precision
    assert "compute capability" in result["provenance"]["hardware"]
    if precision == "fp16":
        assert e["fp16"]["skipped_steps"] < e["step"], e["fp16"]  # the scale settles; most steps are taken
    last = read_checkpoint(tmp_path / "runs" / run_name(cfg) / "last.safetensors")
    assert (last["scaler"] != {}) == (precision == "fp16")  # the loss scaler is checkpointed under fp16
    measure(f"gpu train {precision}: 12 steps, train loss {e['train_loss']}, "
            f"dev {({k: round(v, 3) for k, v in e['dev'].items()})}, {result['wall_s']} s"
            + (f", fp16 {e['fp16']}" if precision == "fp16" else ""))


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_cuda_graphs_give_the_losses_of_eager(request, tmp_path, gpu_checkpoints, precision, measure):
    """compile='reduce-overhead' (torch.compile + CUDA graphs) against eager: same schedule, same weights, no dropout.
    Compiled kernels fuse and reorder arithmetic, so the runs agree to rounding: fp32 1e-4 relative on the losses;
    in 16 bits 16 u relative (u of the format, see the module docstring); dev metrics as close, accuracies within
    one example of 32."""
    from mtbert_lib.training import resolve_precision, train
    cfg = gpu_cfg(gpu_checkpoints["tiny-no-dropout"], precision=precision, dropout=0.0, epochs=2)
    resolved = resolve_precision(precision, "cuda")
    rel = 1e-4 if resolved == "fp32" else 16 * U[resolved]
    runs = {}
    with data_env(resolve_data_dir(request)):
        for mode in ("none", "reduce-overhead"):
            torch._dynamo.reset()
            runs[mode] = train(replace(cfg, compile=mode), tmp_path / mode, tmp_path / mode, progress=False, log=quiet)
    eager, graphs = runs["none"]["epochs"], runs["reduce-overhead"]["epochs"]
    for a, b in zip(eager, graphs):
        measure(f"gpu compile={precision}->{resolved} epoch {a['epoch']}: train loss eager {a['train_loss']} | "
                f"cuda graphs {b['train_loss']}; wall eager {a['wall_s']} s, cuda graphs {b['wall_s']} s (compiling included)")
        for t in a["train_loss"]:
            assert b["train_loss"][t] == pytest.approx(a["train_loss"][t], rel=rel), (t, a["train_loss"], b["train_loss"])
        for t in a["dev"]:
            tol = 1 / 32 + 1e-9 if t in ("sst", "quora") else max(rel, 1e-3)
            assert abs(a["dev"][t] - b["dev"][t]) <= tol, (t, a["dev"], b["dev"])


@pytest.mark.parametrize("precision", ["auto", "fp16"])
def test_resume_on_gpu_equals_uninterrupted(request, tmp_path, gpu_checkpoints, precision, monkeypatch, measure):
    """Killed in epoch 2, resumed: the same losses, metrics and weights as the uninterrupted run. Deterministic
    kernels (torch.use_deterministic_algorithms, cuBLAS workspace config, SDPA's math backend) so that the two runs'
    arithmetic is identical, as on the CPU."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from mtbert_lib.multitask import MultitaskBERT
    from mtbert_lib.training import read_checkpoint, run_name, train
    cfg = gpu_cfg(gpu_checkpoints["dropout"], precision=precision, epochs=2, tasks=("sst", "sts"), eval_tasks=("sst", "sts"))
    steps_per_epoch = 8  # 32 per task, batch 8 -> 4 rounds x 2 tasks
    A, B = tmp_path / "A", tmp_path / "B"
    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with data_env(resolve_data_dir(request)), sdpa_kernel([SDPBackend.MATH]):
            result_a = train(cfg, A / "runs", A / "results", progress=False, log=quiet)
            real, calls = MultitaskBERT.loss, {"n": 0}

            def loss(self, task, outputs, labels):
                calls["n"] += 1
                if calls["n"] == steps_per_epoch + 3:  # the 4th step of epoch 2
                    raise KeyboardInterrupt
                return real(self, task, outputs, labels)

            with monkeypatch.context() as mp:
                mp.setattr(MultitaskBERT, "loss", loss)
                with pytest.raises(KeyboardInterrupt):
                    train(cfg, B / "runs", B / "results", progress=False, log=quiet)
            result_b = train(cfg, B / "runs", B / "results", resume=True, progress=False, log=quiet)
    finally:
        torch.use_deterministic_algorithms(was)
    name = run_name(cfg)
    la = read_checkpoint(A / "runs" / name / "last.safetensors")
    lb = read_checkpoint(B / "runs" / name / "last.safetensors")
    worst = max((la["model"][k].double() - lb["model"][k].double()).abs().max().item() for k in la["model"])
    measure(f"gpu resume {precision}: max |weight difference| resumed vs uninterrupted {worst:.2e}; "
            f"dev A {result_a['best_dev']} B {result_b['best_dev']}")
    strip = lambda eps: [{k: v for k, v in e.items() if k != "wall_s"} for e in eps]  # noqa: E731
    assert strip(result_a["epochs"]) == strip(result_b["epochs"])
    assert worst == 0.0
    assert la["scaler"] == lb["scaler"]
    for k in la["teacher"]:
        assert torch.equal(la["teacher"][k], lb["teacher"][k]), k


@pytest.mark.parametrize("precision", amp_params("fp32", "bf16", "fp16"))
def test_pretrain_mlm_runs_on_the_gpu(request, tmp_path, gpu_checkpoints, precision, measure):
    """Further MLM pretraining (notebook 11) on CUDA: the model is moved there, the losses are finite, the masked
    accuracy is measured there, and the folder it writes loads back on the CPU (what `--model PATH` does)."""
    from mtbert_lib.beyond import pretrain_mlm
    from mtbert_lib.model import BertModel
    with data_env(resolve_data_dir(request)):
        r = pretrain_mlm(str(gpu_checkpoints["dropout"]), tmp_path / "mlm", steps=6, batch_size=8, heldout=16,
                         warmup=1, limit=400, precision=precision, log=quiet)
    assert (r["device"], r["precision"]) == ("cuda", precision)
    assert r["steps"] == 6 and all(math.isfinite(x) for x in r["loss"]), r["loss"]
    assert 0 <= r["accuracy_after"] <= 1
    enc = BertModel.from_pretrained(str(tmp_path / "mlm"))
    assert next(enc.parameters()).device.type == "cpu"
    measure(f"gpu pretrain-mlm {precision}: losses {[round(x, 3) for x in r['loss']]}, accuracy "
            f"{r['accuracy_before']:.3f} -> {r['accuracy_after']:.3f}, {r['wall_s']} s")
