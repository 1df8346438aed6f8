"""The tokenizer's public home: `from mtbert_lib.tokenizer import load_tokenizer`.

Hand-written alias (not generated): the code lives in notebooks/03_bert.ipynb and is exported to mtbert_lib/model.py.
"""
from mtbert_lib.model import BertTokenizer, load_tokenizer

__all__ = ["BertTokenizer", "load_tokenizer"]
