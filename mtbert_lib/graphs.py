"""The whole training step as one graph (issue 21, part 2): forward of the student and the teacher, losses, backward,
AdamW and the EMA, with no Python decision on a tensor's value and no read back to the host, so that it can be
captured once per batch shape as a CUDA graph and replayed (compile='cuda-graph'), or traced whole by
torch.compile(fullgraph=True).

Hand-written plumbing (not generated from a notebook), like precision.py: notebook 07's `train_step` is the step
the course teaches; this is the same step made replayable. It imports no module of ours above the optimizer.

What changes from step to step without changing a shape — λ(step), each group's learning rate, the EMA weight
1 − α(step) — lives in 0-d device tensors, set with `fill_` before each call (a kernel launch, no read). Which
parameters a step reaches (a per-task step reaches one task's head) is fixed per shape key, so each graph updates
exactly the parameters the eager step would. Supported: update 'per_task' or 'sum', fp32 or bf16, one process, no
SMART (the config check says so).
"""
import torch

__all__ = ["WholeStep", "GraphedStep", "shape_key"]


class WholeStep:
    """One optimizer step on [(task, batch on the device)], as device work only; returns the batches' losses (a
    1-d device tensor). `R` is the training Run (notebook 07): model, teacher, optimizer, device, precision."""

    def __init__(self, R):
        self.R, dev = R, R.device
        self.lam = torch.zeros((), device=dev)  # λ(step), the consistency weight
        self.ema_weight = torch.zeros((), device=dev)  # 1 − α(step)
        self.lrs = [torch.zeros((), device=dev) for _ in R.opt.param_groups]  # each group's learning rate
        for g in R.opt.param_groups:  # AdamW's state made now (not lazily inside a trace or a capture)
            for p in g["params"]:
                s = R.opt.state[p]
                if not s:
                    s["step"] = torch.zeros((), device=p.device)
                    s["exp_avg"], s["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
                elif s["step"].device != p.device:
                    s["step"] = s["step"].to(p.device)
        if R.teacher is not None:
            self.ema = (list(R.teacher.model.parameters()), list(R.model.parameters()),
                        list(R.teacher.model.buffers()), list(R.model.buffers()))

    def set_scalars(self, step: int):
        """The step's λ, learning rates (set_lr has run) and EMA weight, into their device tensors: no read back."""
        R = self.R
        for t, g in zip(self.lrs, R.opt.param_groups):
            t.fill_(g["lr"])
        if R.teacher is not None:
            self.lam.fill_(R.teacher.weight(step))
            self.ema_weight.fill_(1.0 - R.teacher.decay_at(step + 1))

    def __call__(self, batches: list, step: int):
        """Eagerly: the step's scalars set, the gradients cleared, then the step."""
        self.set_scalars(step)
        self.R.model.zero_grad(set_to_none=True)
        return self.run(batches)

    def run(self, batches: list, zero_grads: bool = False):
        R, model, teacher = self.R, self.R.model, self.R.teacher
        if zero_grads:  # graph mode: the gradients are static tensors, zeroed inside the graph
            torch._foreach_zero_([p.grad for p in model.parameters() if p.grad is not None])
        losses = []
        for task, batch in batches:
            with torch.autocast(R.device.type, dtype=torch.bfloat16, enabled=R.precision == "bf16", cache_enabled=False):
                out = model(task, batch)
                loss = model.loss(task, out.float(), batch["labels"])
                if teacher is not None:
                    loss = loss + self.lam * teacher.consistency(task, out.float(), batch)
            loss.backward()
            losses.append(loss.detach())
        self.adamw()
        if teacher is not None:
            t_params, s_params, t_bufs, s_bufs = self.ema
            with torch.no_grad():
                torch._foreach_lerp_(t_params, s_params, self.ema_weight)
                if t_bufs:
                    torch._foreach_copy_(t_bufs, s_bufs)
        return torch.stack(losses)

    @torch.no_grad()
    def adamw(self):
        """AdamW's fused update of the parameters this step reached, the learning rate read from a device tensor."""
        opt = self.R.opt
        for g, lr in zip(opt.param_groups, self.lrs):
            params = [p for p in g["params"] if p.grad is not None]
            if not params:
                continue
            states = [opt.state[p] for p in params]
            steps = [s["step"] for s in states]
            torch._foreach_add_(steps, 1)
            beta1, beta2 = g["betas"]
            torch._fused_adamw_(params, [p.grad for p in params], [s["exp_avg"] for s in states],
                                [s["exp_avg_sq"] for s in states], [], steps, lr=lr, beta1=beta1, beta2=beta2,
                                weight_decay=g["weight_decay"], eps=g["eps"], amsgrad=False, maximize=False,
                                grad_scale=None, found_inf=None)


def shape_key(batches: list) -> tuple:
    """What a captured graph is specialised to: the tasks and every tensor's shape."""
    return tuple((task, tuple((k, tuple(v.shape)) if torch.is_tensor(v) else (k, tuple((n, tuple(t.shape))
                 for n, t in v.items())) for k, v in batch.items())) for task, batch in batches)


class GraphedStep:
    """A CUDA graph of WholeStep per shape key. The first step of a new key runs eagerly (on a side stream: it warms
    up the libraries' handles) and is then captured; later steps of that key copy their batches into the graph's
    static inputs and replay it. All graphs share one memory pool and one set of static gradient tensors."""

    def __init__(self, R):
        self.whole, self.R = WholeStep(R), R
        self.graphs, self.pool = {}, torch.cuda.graph_pool_handle()
        self.grads = {}  # parameter -> its static gradient tensor

    def __call__(self, batches: list, step: int):
        self.whole.set_scalars(step)
        key = shape_key(batches)
        if key not in self.graphs:
            return self._warm_and_capture(key, batches)
        graph, static_in, static_out = self.graphs[key]
        for (_, src), (_, dst) in zip(batches, static_in):
            _copy_into(dst, src)
        graph.replay()
        return static_out.clone()  # the next replay overwrites static_out

    def _warm_and_capture(self, key, batches):
        model = self.R.model
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            model.zero_grad(set_to_none=True)
            losses = self.whole.run(batches)  # the real step, eagerly
        torch.cuda.current_stream().wait_stream(side)
        reached = [p for p in model.parameters() if p.grad is not None]
        for p in model.parameters():  # the static gradients of the parameters this key reaches; None elsewhere
            p.grad = self.grads.setdefault(p, torch.zeros_like(p)) if any(p is q for q in reached) else None
        static_in = [(task, _clone(batch)) for task, batch in batches]
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            static_out = self.whole.run(static_in, zero_grads=True)
        self.graphs[key] = (graph, static_in, static_out)
        return losses


def _clone(batch):
    return {k: (_clone(v) if isinstance(v, dict) else v.clone()) for k, v in batch.items()}


def _copy_into(dst, src):
    for k, v in src.items():
        _copy_into(dst[k], v) if isinstance(v, dict) else dst[k].copy_(v, non_blocking=True)
