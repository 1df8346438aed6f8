"""mtbert_lib: minBERT, AdamW and multitask fine-tuning, generated from the course notebooks (see notebooks/)."""
__version__ = "0.1.0"
