"""A notebook course and library: minBERT from scratch, multitask fine-tuning and Mean Teacher (Qin & Tran, CS224N).

Modules:

- `mtbert_lib.baselines`: The reference numbers every table and figure shows beside a fine-tuned score.
- `mtbert_lib.cli`: The `mtbert` command line: data fetching, a zero-shot demo, training, prediction, the list of experiments and grading the exercises.
- `mtbert_lib.diagrams`: Box-and-arrow pictures of what each notebook builds: one function per notebook, drawn with matplotlib.
- `mtbert_lib.experiments`: Named experiments: the paper's §4.1 runs, every Table 1 row and each figure's sweep, as TrainConfig objects.
- `mtbert_lib.grading`: The graders of the course's exercises: one `check_*` per exercise, called in the cell right after it.
- `mtbert_lib.graphs`: The whole training step as one graph (issue 21, part 2): forward of the student and the teacher, losses, backward, AdamW and the EMA, with no Python decision on a tensor's value and no read back to the host, so that it can be captured once per batch shape as a CUDA graph and replayed (compile='cuda-graph'), or traced whole by torch.compile(fullgraph=True).
- `mtbert_lib.precision`: What a run computes in (fp32, bf16, or fp16 with loss scaling), resolved once per run from the device, and what goes with it: autocast around the forward pass, the gradient scaler, the optimizer step through it."""

__version__ = "0.1.0"
