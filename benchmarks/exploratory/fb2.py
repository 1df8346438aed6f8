import sys, time, torch, torch.nn.functional as F
sys.path[:0] = [".", "/work/scratch"]
from mtbert_lib.model import BertModel
import fastdrop
torch.set_num_threads(2)
m = BertModel.from_pretrained("minilm")
W = m.embeddings.word_embeddings; W.sparse = True; W.weight.grad = torch.zeros_like(W.weight)
B, T = 8, 30
ids = torch.randint(1000, 20000, (B, T)); mask = torch.ones(B, T, dtype=torch.long); mask[:4, 20:] = 0
m.train(True)
def step():
    for n, p in m.named_parameters():
        if "word_emb" in n: p.grad.zero_()
        else: p.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = m(ids, mask).last_hidden_state
    h.float().sum().backward()
def setv(v):
    F.dropout = fastdrop.fast_dropout if v != "base" else fastdrop._F_dropout
    for mod in m.modules():
        if hasattr(mod, "impl"): mod.impl = "manual" if v == "fast+manual" else "sdpa"
res = {v: [] for v in ("base", "fast", "fast+manual")}
for rep in range(3):
    for v in res:
        setv(v)
        for _ in range(3): step()
        t0 = time.perf_counter()
        for _ in range(20): step()
        res[v].append((time.perf_counter() - t0) / 20 * 1e3)
for v, t in res.items(): print(v, " ".join(f"{x:.1f}" for x in t), "ms/step")
