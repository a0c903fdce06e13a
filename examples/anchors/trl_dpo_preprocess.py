#!/usr/bin/env python3
"""Python anchor: time TRL's own DPO dataset preprocessing, for comparison with Temper's Rust implementation.

    python trl_dpo_preprocess.py --data pairs.jsonl --tokenizer TOKENIZER_DIR [--num-proc N] [--repeats R]

Prints exactly one JSON object on stdout (everything else, progress bars and warnings included, goes to stderr):

    {"impl": "trl", "trl_version", "transformers_version", "pairs", "seconds" (median), "best_seconds",
     "pairs_per_s" (pairs / median seconds), "num_proc", "total_tokens", ...extra descriptive keys}

What is timed, and how it maps onto TRL
=======================================
Written against and verified with trl 1.16.0 / transformers 5.23.0 / datasets 5.2.0 (see requirements.txt).

In trl 1.16.0, `DPOTrainer.__init__` calls, for a non-vision text dataset,

    train_dataset = self._prepare_dataset(train_dataset, processing_class, args, "train")

and this script calls that very method, unmodified, as

    DPOTrainer._prepare_dataset(shim, dataset, tokenizer, DPOConfig(dataset_num_proc=N, max_length=None), "train")

where `shim` stands in for `self` without building a model (`_prepare_dataset` only reads `self._tokenizer`, and
only for non-conversational data; the shim raises on any other attribute so a TRL upgrade that needs more fails
loudly instead of silently measuring something else).  Within `_prepare_dataset` (trl/trainer/dpo_trainer.py),
under `trl.trainer.utils.global_then_local_main_first()` (a no-op outside distributed runs):

1. `trl.data_utils.extract_prompt` via `Dataset.map`: skipped, because the data already has a "prompt" column
   (explicit-prompt conversational preference format).
2. "add EOS" map: skipped, because `trl.data_utils.is_conversational(first_example)` is True (EOS comes from the
   chat template instead).
3. ONE `Dataset.map(tokenize_fn, fn_kwargs={"processing_class": tokenizer}, num_proc=N, desc=...)` over the
   whole dataset (no batching, no remove_columns; the output keeps prompt/chosen/rejected and adds three
   list<int> columns).  `tokenize_fn` is a closure local to `_prepare_dataset`; per example it does:

       kw = {"tools": None}          # from example.get("tools") / example.get("chat_template_kwargs", {})
       prompt_ids          = _tokenize(tok, prompt,            add_generation_prompt=True, **kw)["input_ids"]
       prompt_chosen_ids   = _tokenize(tok, prompt + chosen,   **kw)["input_ids"]   # list concatenation of messages
       prompt_rejected_ids = _tokenize(tok, prompt + rejected, **kw)["input_ids"]

   where `trl.data_utils._tokenize(tok, messages, **kw)` is
   `tok.apply_chat_template(messages, tokenize=True, return_dict=True, **kw)`, i.e. render the Jinja chat template
   (add_generation_prompt=True for the prompt alone, False for prompt+completion) and encode the rendered string
   with the fast tokenizer.  apply_chat_template's tokenisation does NOT add special tokens (the template emits
   them), so there is no extra BOS/EOS beyond what the template writes.  Then

       prompt_len   = min(common_prefix_length(prompt_ids, prompt_chosen_ids),
                          common_prefix_length(prompt_ids, prompt_rejected_ids))   # trl.data_utils
       prompt_ids   = prompt_ids[:prompt_len]
       chosen_ids   = prompt_chosen_ids[prompt_len:]
       rejected_ids = prompt_rejected_ids[prompt_len:]

   i.e. the prompt is the longest common token prefix (normally the whole templated prompt including the
   generation prompt "<|im_start|>assistant\\n"; if the templated prompt is not a prefix of prompt+completion, TRL
   logs a warning once and the completion starts where they diverge).  chosen_ids / rejected_ids therefore include
   the template's end-of-turn tokens (e.g. "<|im_end|>\\n" for ChatML).
   num_proc: datasets 5.x runs `map` in the calling process only for num_proc=None (DPOConfig's default
   dataset_num_proc); any num_proc >= 1, including 1, forks a `multiprocess` pool of that many workers, pickles
   the tokenizer to them and ships the finished shards back.  `--num-proc 0` (or `none`) selects the in-process
   path, `--num-proc N` a pool of N; the JSON's "num_proc" is what was passed to `map` (null for None).
4. The `max_length` filter (`dataset.filter(len(prompt_ids) < max_length)`) only runs when `max_length` is set;
   the default here is `--max-length None` (no truncation, matching max_prompt_length/max_completion_length None
   in older TRL).  TRL's own default is max_length=1024, which adds this one cheap filter pass: pass
   `--max-length 1024` to include it.

Not part of dataset preprocessing in trl 1.16.0 (so not in "seconds"): truncation, concatenation and the
attention/completion masks.  Those are built per batch by `DataCollatorForPreference.torch_call`
(input_ids = prompt_ids + chosen_ids, then prompt_ids + rejected_ids; attention_mask = 1s; completion_mask =
0 over prompt_ids, 1 over the completion; right padding with pad_token_id).  `--collate B` optionally times that
too, over the whole preprocessed dataset in batches of B, reported separately as "collate_seconds" /
"collate_best_seconds".

`total_tokens` = sum over pairs of len(prompt_ids) + len(chosen_ids) + len(rejected_ids) (the three columns TRL
stores; the prompt is counted once).  "prompt_tokens", "chosen_tokens", "rejected_tokens" break it down, and
"sequence_tokens" = 2*prompt + chosen + rejected is the length of the two training sequences the collator builds.

Timing rules: the JSONL is loaded once with `datasets.load_dataset("json", ...)` and the tokenizer once with
`AutoTokenizer.from_pretrained(DIR)`, both untimed.  `datasets.disable_caching()` is on, so every repeat really
re-runs the map (with caching off, datasets writes map results to a temporary directory, as it would for any
TRL user with caching disabled).  Each repeat times one full `_prepare_dataset` call with
time.perf_counter(); with --num-proc >= 1 that includes datasets' worker-pool start-up and shard concatenation,
as it does in TRL.  "seconds" is the median of the repeats, "best_seconds" the minimum, "all_seconds" all of them.
"cpu_seconds" is the median user+system CPU time of a repeat, this process plus its map workers (less sensitive
than wall time to other load on the machine; "loadavg_1m_before" records that load).
Everything runs offline (HF_HUB_OFFLINE=1, HF_DATASETS_OFFLINE=1 are set unless already set).

`--dump FILE` writes the preprocessed ids (one JSON object per pair: prompt_ids, chosen_ids, rejected_ids) from
the first repeat, untimed, for exact comparison with the Rust output.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

# Must be set before datasets / transformers are imported.
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# Only silences the "process just got forked after parallelism has already been used" notice; single-string
# encodes (what apply_chat_template does per example) do not use the tokenizers thread pool either way.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _redirect_stdout_to_stderr():
    """Point fd 1 (and sys.stdout) at stderr for the whole run, including forked map workers and C-level writes;
    return a file object on the original stdout for the single JSON result."""
    sys.stdout.flush()
    real_stdout_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(real_stdout_fd, "w", encoding="utf-8")


def _parse_max_length(value):
    if value.lower() in ("none", "null", ""):
        return None
    n = int(value)
    if n <= 0:
        raise argparse.ArgumentTypeError("--max-length must be positive or None")
    return n


def _parse_num_proc(value):
    if value.lower() in ("none", "null", "0"):
        return None
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError("--num-proc must be >= 1, or 0/none for in-process")
    return n


def _positive_int(value):
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return n


class _TrainerShim:
    """Stands in for `self` in `DPOTrainer._prepare_dataset` without building a model or a Trainer.

    trl 1.16.0's `_prepare_dataset` reads only `self._tokenizer` (for the non-conversational add-EOS step).  Any
    other attribute access raises, so that a TRL version whose `_prepare_dataset` depends on more trainer state is
    reported instead of silently benchmarked wrong.
    """

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer
        self.processing_class = tokenizer

    def __getattr__(self, name):
        raise AttributeError(
            f"DPOTrainer._prepare_dataset of this TRL version needs trainer attribute {name!r}, which the anchor's "
            "shim does not provide; update trl_dpo_preprocess.py for this TRL version."
        )


def _cpu_seconds():
    """User+system CPU time of this process and its reaped children (the map workers, once the pool is joined)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _token_counts(dataset):
    """Sum the lengths of the three id columns, straight from Arrow (untimed)."""
    import pyarrow.compute as pc

    table = dataset.data  # datasets.table.Table wrapping a pyarrow.Table
    counts = {}
    for column in ("prompt_ids", "chosen_ids", "rejected_ids"):
        lengths = pc.list_value_length(table.column(column))
        counts[column] = int(pc.sum(lengths).as_py() or 0)
    return counts


def _dump(dataset, path):
    with open(path, "w", encoding="utf-8") as f:
        for row in dataset.select_columns(["prompt_ids", "chosen_ids", "rejected_ids"]):
            f.write(json.dumps(row, separators=(",", ":")) + "\n")


def _time_collate(dataset, tokenizer, batch_size):
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    collator = DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id, max_length=None)
    rows = dataset.select_columns(["prompt_ids", "chosen_ids", "rejected_ids"]).to_list()  # untimed
    start = time.perf_counter()
    for i in range(0, len(rows), batch_size):
        collator(rows[i : i + batch_size])
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Time TRL's DPOTrainer dataset preprocessing (conversational preference data).",
    )
    parser.add_argument("--data", required=True, help="JSONL, one {prompt, chosen, rejected} (lists of messages) a line")
    parser.add_argument("--tokenizer", required=True, help="Hugging Face tokenizer directory with a chat_template")
    parser.add_argument(
        "--num-proc",
        type=_parse_num_proc,
        default=1,
        help="Dataset.map num_proc (default 1 = one worker process; 0 or 'none' = in-process, TRL's default)",
    )
    parser.add_argument("--repeats", type=_positive_int, default=3, help="timed repeats (default 3)")
    parser.add_argument(
        "--max-length",
        type=_parse_max_length,
        default=None,
        help="DPOConfig.max_length (default None: no truncation filter; TRL's own default is 1024)",
    )
    parser.add_argument("--dump", metavar="FILE", help="write the preprocessed ids of the first repeat as JSONL")
    parser.add_argument(
        "--collate",
        metavar="B",
        type=_positive_int,
        default=None,
        help="also time DataCollatorForPreference over all pairs in batches of B (masks/padding), reported apart",
    )
    args = parser.parse_args(argv)

    result_out = _redirect_stdout_to_stderr()

    import datasets
    import tokenizers
    import torch
    import transformers
    import trl
    from transformers import AutoTokenizer
    from trl import DPOConfig
    from trl.trainer.dpo_trainer import DPOTrainer

    datasets.disable_caching()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_warning()

    # Untimed: tokenizer load, JSONL -> Dataset, config.
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    if tokenizer.chat_template is None:
        raise SystemExit(f"{args.tokenizer}: tokenizer has no chat_template")
    if tokenizer.pad_token is None:  # as DPOTrainer.__init__ does before _prepare_dataset
        tokenizer.pad_token = tokenizer.eos_token
    dataset = datasets.load_dataset("json", data_files=args.data, split="train")
    missing = {"prompt", "chosen", "rejected"} - set(dataset.column_names)
    if missing:
        raise SystemExit(f"{args.data}: missing columns {sorted(missing)}")

    with tempfile.TemporaryDirectory(prefix="trl-anchor-") as output_dir:
        config = DPOConfig(
            output_dir=output_dir,
            dataset_num_proc=args.num_proc,
            max_length=args.max_length,
            report_to="none",
            # Irrelevant to preprocessing; DPOConfig defaults to bf16=True, which TrainingArguments rejects on
            # a machine without a bf16-capable accelerator.
            bf16=False,
        )
        shim = _TrainerShim(tokenizer)

        times = []
        cpu_times = []
        load_before = os.getloadavg()[0]
        counts = None
        prepared = None
        for repeat in range(args.repeats):
            cpu_start = _cpu_seconds()
            start = time.perf_counter()
            prepared = DPOTrainer._prepare_dataset(shim, dataset, tokenizer, config, "train")
            elapsed = time.perf_counter() - start
            cpu_times.append(_cpu_seconds() - cpu_start)
            times.append(elapsed)
            repeat_counts = _token_counts(prepared)
            if counts is None:
                counts = repeat_counts
                if args.dump:
                    _dump(prepared, args.dump)
            elif repeat_counts != counts:
                raise SystemExit(f"repeat {repeat} produced different token counts: {repeat_counts} vs {counts}")
            print(f"repeat {repeat + 1}/{args.repeats}: {elapsed:.3f} s", file=sys.stderr)

        collate_times = []
        if args.collate:
            for _ in range(args.repeats):
                collate_times.append(_time_collate(prepared, tokenizer, args.collate))

    pairs = len(dataset)
    median = statistics.median(times)
    total = counts["prompt_ids"] + counts["chosen_ids"] + counts["rejected_ids"]
    result = {
        "impl": "trl",
        "trl_version": trl.__version__,
        "transformers_version": transformers.__version__,
        "pairs": pairs,
        "seconds": round(median, 6),
        "best_seconds": round(min(times), 6),
        "pairs_per_s": round(pairs / median, 2) if median > 0 else None,
        "num_proc": args.num_proc,
        "total_tokens": total,
        "prompt_tokens": counts["prompt_ids"],
        "chosen_tokens": counts["chosen_ids"],
        "rejected_tokens": counts["rejected_ids"],
        "sequence_tokens": 2 * counts["prompt_ids"] + counts["chosen_ids"] + counts["rejected_ids"],
        "repeats": args.repeats,
        "all_seconds": [round(t, 6) for t in times],
        "cpu_seconds": round(statistics.median(cpu_times), 6),
        "loadavg_1m_before": round(load_before, 2),
        "max_length": args.max_length,
        "datasets_version": datasets.__version__,
        "tokenizers_version": tokenizers.__version__,
        "torch_version": torch.__version__,
        "python_version": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
    }
    if collate_times:
        result["collate_batch_size"] = args.collate
        result["collate_seconds"] = round(statistics.median(collate_times), 6)
        result["collate_best_seconds"] = round(min(collate_times), 6)
    result_out.write(json.dumps(result) + "\n")
    result_out.flush()


if __name__ == "__main__":
    main()
