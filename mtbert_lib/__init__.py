"""A notebook course and library: minBERT from scratch, multitask fine-tuning and Mean Teacher (Qin & Tran, CS224N).

Modules:

- `mtbert_lib.baselines`: The reference numbers every table and figure shows beside a fine-tuned score.
- `mtbert_lib.cli`: The `mtbert` command line: data fetching, a zero-shot demo, training, prediction and the list of experiments.
- `mtbert_lib.experiments`: Named experiments: the paper's §4.1 runs, every Table 1 row and each figure's sweep, as TrainConfig objects."""

__version__ = "0.1.0"
