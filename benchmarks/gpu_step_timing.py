#!/usr/bin/env python
"""Training-step throughput of the best recipe's loop at a given model size, eager against torch.compile modes
(on a GPU: compile='reduce-overhead' = CUDA graphs), in examples per second.

    python benchmarks/gpu_step_timing.py [--size bert-base|minilm|tiny] [--steps 300] [--warmup 30]
        [--batch-size 8] [--modes none,reduce-overhead] [--device cuda] [--precision auto] [--vocab vocab.txt]
        [--experiment rr-balanced-specialized-mt] [--json OUT]

The model is random-weight (tools/random_checkpoint.py; no download): at --size bert-base it has bert-base's sizes
(hidden 768, 12 layers, 12 heads, intermediate 3072; with --vocab a 30,522-word vocabulary such as MiniLM's, which
is bert-base-uncased's, the embeddings are bert-base's too). The steps are the library's training steps of the
experiment (default the paper's best recipe: balanced round-robin over SST, Quora and STS, one optimizer step per
task batch, Mean Teacher with symmetric KL), built from mtbert_lib.training's own pieces — build_model, param_groups,
AdamW(fused), resolve_precision/autocast/grad_scaler/optimizer_step, compile_encoder/step_begin, the EMA teacher — on
real length-bucketed batches of the task files, with the per-step loss.item() and finiteness check train() makes.
The first --warmup steps of each mode (compilation, CUDA-graph recording of the first shapes) are timed apart;
shapes met later still get recorded inside the timed steps, as they would be in a real epoch.
"""
import argparse, json, sys, tempfile, time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "tools"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from mtbert_lib.experiments import get_experiment  # noqa: E402
from mtbert_lib.optim import AdamW  # noqa: E402
from mtbert_lib.tasks import collate, encode_split  # noqa: E402
from mtbert_lib.tokenizer import load_tokenizer  # noqa: E402
from mtbert_lib.training import (autocast, build_model, compile_encoder, grad_scaler, optimizer_step,  # noqa: E402
                                 param_groups, resolve_precision, step_begin, to_device)
from random_checkpoint import write_random_checkpoint  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_mode(cfg, mode, steps_list, sets, tok, device, precision, warmup, log):
    """Run warmup + timed steps of the library's training step; returns timings and loss trace."""
    from mtbert_lib.mean_teacher import MeanTeacher
    torch.manual_seed(cfg.seed)
    torch._dynamo.reset()
    model = build_model(cfg).to(device)
    teacher = None
    if cfg.consistency != "none":
        teacher = MeanTeacher(model, cfg.consistency, cfg.ema_decay, cfg.ema_warmup, cfg.consistency_weight,
                              cfg.consistency_rampup, sts_head=cfg.sts_head)
    compile_encoder(model, mode)
    opt = AdamW(param_groups(model, cfg.weight_decay, cfg.head_lr), lr=cfg.lr, fused=cfg.optimizer_impl == "fused",
                foreach=cfg.optimizer_impl == "foreach")
    scaler = grad_scaler(precision, device)
    model.train()
    losses, skipped, t_start = [], 0, time.perf_counter()
    t_warm = t0 = None
    n_examples = 0
    for i, (task, idx) in enumerate(steps_list):
        if i == warmup:
            sync(device)
            t0 = time.perf_counter()
            t_warm = t0 - t_start
        opt.zero_grad(set_to_none=True)
        step_begin(mode)
        batch = to_device(collate(sets[task], idx, tok), device)
        with autocast(device, precision):
            out = model(task, batch)
            loss = model.loss(task, out.float(), batch["labels"])
            if teacher is not None:
                loss = loss + teacher.weight(i) * teacher.consistency(task, out.float(), batch)
        finite = bool(torch.isfinite(loss))  # train() checks every loss (a device sync, as there)
        scaler.scale(loss).backward()
        losses.append(loss.item() if finite else float("nan"))
        stepped = optimizer_step(opt, scaler)
        skipped += not stepped
        if teacher is not None and stepped:
            teacher.update(model, i + 1)
        if i >= warmup:
            n_examples += len(idx)
    sync(device)
    dt = time.perf_counter() - t0
    n_timed = len(steps_list) - warmup
    log(f"  compile={mode:16s} warm-up {warmup} steps {t_warm:6.1f} s | {n_timed} timed steps {dt:6.2f} s = "
        f"{1e3 * dt / n_timed:6.1f} ms/step, {n_examples / dt:7.1f} examples/s | fp16 skipped {skipped}")
    del model, teacher, opt
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"mode": mode, "warmup_steps": warmup, "warmup_s": round(t_warm, 2), "timed_steps": n_timed,
            "timed_s": round(dt, 3), "ms_per_step": round(1e3 * dt / n_timed, 2), "examples": n_examples,
            "examples_per_s": round(n_examples / dt, 1), "skipped_steps": skipped,
            "loss_first_timed": losses[warmup:warmup + 5]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="bert-base", choices=["tiny", "minilm", "bert-base"])
    p.add_argument("--vocab", help="vocab.txt for the random model (default: character-level)")
    p.add_argument("--experiment", default="rr-balanced-specialized-mt")
    p.add_argument("--steps", type=int, default=300, help="timed steps per mode")
    p.add_argument("--warmup", type=int, default=30, help="untimed steps per mode first (compilation)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--modes", default="none,reduce-overhead", help="compile modes to time, comma separated")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", default="auto")
    p.add_argument("--json", help="write the figures here")
    a = p.parse_args(argv)
    device = torch.device(a.device)
    log = lambda m: print(m, flush=True)  # noqa: E731
    precision = resolve_precision(a.precision, device)
    folder = write_random_checkpoint(Path(tempfile.mkdtemp()) / f"random-{a.size}", a.size, a.vocab)
    cfg = replace(get_experiment(a.experiment), model=str(folder), device=str(device), batch_size=a.batch_size,
                  max_length=a.max_length, precision=a.precision)
    tok = load_tokenizer(str(folder))
    need = a.steps + a.warmup
    per_task = -(-need * a.batch_size // len(cfg.tasks)) + a.batch_size  # enough examples for `need` steps
    sets = {t: encode_split(t, "train", tok, cfg.max_length, per_task, report=None) for t in cfg.tasks}
    lengths = {t: s.lengths() for t, s in sets.items()}
    steps_list = [b for rnd in cfg.sample_epoch(lengths, 0) for b in rnd][:need]  # per_task update: one step a batch
    if len(steps_list) < need:
        raise SystemExit(f"only {len(steps_list)} steps available, asked for {need}")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    n_params = sum(t.numel() for t in build_model(cfg).parameters())
    log(f"{a.experiment} training steps, random {a.size} ({n_params / 1e6:.1f}M parameters, vocab "
        f"{tok.vocab_size}), batch {a.batch_size}, max_length {a.max_length}, {precision}, on {name}, torch {torch.__version__}")
    results = [time_mode(cfg, m, steps_list, sets, tok, device, precision, a.warmup, log)
               for m in a.modes.split(",") if m]
    base = next((r for r in results if r["mode"] == "none"), None)
    for r in results:
        if base and r is not base:
            log(f"  compile={r['mode']}: {r['examples_per_s'] / base['examples_per_s']:.2f}x eager's examples/s")
    out = {"experiment": a.experiment, "size": a.size, "parameters_millions": round(n_params / 1e6, 1),
           "vocab_size": tok.vocab_size, "batch_size": a.batch_size, "max_length": a.max_length, "precision": precision,
           "device": str(device), "hardware": name, "torch": torch.__version__, "runs": results}
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    print("TIMING_JSON " + json.dumps(out))


if __name__ == "__main__":
    main()
