"""Unpadded ("packed") forward for an mtbert BertModel, written outside the library for the speed experiments.

The linears, GELU, residuals and LayerNorms run on the N real tokens only, as an (N, H) matrix; only the
attention core (QK^T, softmax, AV) sees the padded (B, h, T, d) layout: QKV is scattered into a zero (B*T, 3H)
buffer, attention runs with the key mask, and the real rows are gathered back. Same maths as BertModel.forward
(padded query rows are simply never computed after attention).
"""
import torch
import torch.nn.functional as F


def unpadded_forward(model, input_ids, attention_mask, token_type_ids=None, return_hidden=False):
    emb, layers, cfg = model.embeddings, model.encoder.layers, model.config
    B, T = input_ids.shape
    H = cfg.hidden_size
    mask = attention_mask.bool()
    idx = mask.reshape(-1).nonzero().squeeze(1)  # (N,) positions of real tokens in the flattened (B*T) grid
    # embeddings on real tokens only
    pos = torch.arange(T).expand(B, T).reshape(-1)[idx]
    ids = input_ids.reshape(-1)[idx]
    tt = (token_type_ids if token_type_ids is not None else torch.zeros_like(input_ids)).reshape(-1)[idx]
    x = emb.word_embeddings(ids) + emb.position_embeddings(pos) + emb.token_type_embeddings(tt)
    x = emb.dropout(emb.LayerNorm(x))  # (N, H)
    key_mask = mask[:, None, None, :]
    for layer in layers:
        att = layer.attention
        qkv = att.qkv(x)  # (N, 3H) — fused_qkv=True required
        buf = qkv.new_zeros(B * T, 3 * H).index_copy(0, idx, qkv)
        q, k, v = buf.view(B, T, 3, att.h, att.d).permute(2, 0, 3, 1, 4)  # each (B, h, T, d)
        p = att.dropout if att.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, dropout_p=p)
        y = y.transpose(1, 2).reshape(B * T, H).index_select(0, idx)  # (N, H)
        x = layer.attention_norm(x, att.out(y))
        x = layer.ffn_norm(x, layer.ffn(x))
    if return_hidden:
        return x.new_zeros(B * T, H).index_copy(0, idx, x).view(B, T, H)
    cls = x[_cls_rows(mask)]  # (B, H): the packed row of each sequence's [CLS]
    return torch.tanh(model.pooler.dense(cls))


def _cls_rows(mask):
    """Index, in the packed (N, H) matrix, of each sequence's first token ([CLS]): the running count of real tokens."""
    counts = mask.sum(1)
    return torch.cumsum(counts, 0) - counts
