import sys, time, torch
sys.path[:0] = ["."]
import mtbert_lib.attention as att
from mtbert_lib.model import BertModel
torch.set_num_threads(2)
m = BertModel.from_pretrained("minilm")
W = m.embeddings.word_embeddings; buf = torch.zeros_like(W.weight)
m.train(True)
def run(B, T, drop, sparse, n=15):
    att.CPU_DROPOUT = drop; W.sparse = sparse
    ids = torch.randint(1000, 20000, (B, T)); mask = torch.ones(B, T, dtype=torch.long); mask[: B // 2, T * 3 // 4:] = 0
    tf = tb = 0.0
    for i in range(n + 3):
        m.zero_grad(set_to_none=True)
        if sparse: W.weight.grad = buf.zero_()
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h = m(ids, mask).last_hidden_state
        loss = h.float().pow(2).mean()
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        if i >= 3: tf += t1 - t0; tb += t2 - t1
    return tf / n * 1e3, tb / n * 1e3
for B, T in [(8, 30), (16, 20), (8, 60), (16, 50)]:
    for rep in range(2):
        r = {f"{d}/{'sp' if s else 'dense'}": run(B, T, d, s) for d in ("torch", "fast") for s in (False, True)}
    print(B, T, "  ".join(f"{k} f{v[0]:.1f} b{v[1]:.1f}" for k, v in r.items()))
