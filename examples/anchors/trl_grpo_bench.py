"""The TRL side of Temper's GRPO benchmark: per GRPO step on the CPU, the generation (rollout)
time, the scoring (reward) time, the training time, the total and the rollout tokens/s of TRL's
own `GRPOTrainer`, on the same model, prompts, reward and settings as the Rust bench, so that the
two tables can be read side by side (run both on the same machine, one after the other).

    /root/.cache/temper-trl-venv/bin/python examples/anchors/trl_grpo_bench.py \\
        [--steps 5] [--repeats 1] [--retries 0] [--wait-quiet 0] [--threads 2] [--attn eager|sdpa] \\
        [--model fixtures/models/task-base] [--data fixtures/task/rlvr_train.jsonl] [--prompts 16] \\
        [--references /root/.cache/temper-references] [--only ROW_SUBSTRING] [--json FILE]

Verified with trl 1.16.0 / transformers 5.23.0 / torch 2.15.0 (the +cu132 wheel, run on the CPU) /
datasets 5.2.0 / accelerate 1.15.0 (requirements.txt).

What it measures
================
Two rows: "beta 0" (no reference model: TRL's default, `ref_model` is None and no reference pass
runs) and "beta 0.04" (TRL loads a reference model, the initial policy, from the same directory
and adds the k3 KL term `exp(ref - logp) - (ref - logp) - 1` with weight 0.04). Columns, each the
median over the timed steps (and, with `--repeats`, the median of the runs' medians): generation
s/step, scoring s/step, training s/step, total s/step, completion tokens/step, rollout tokens/s.

Each row runs in its own fresh subprocess (this script re-invoked with `--row`), so one row's
allocations and caches never leak into the next. In the subprocess:

* model: `fixtures/models/task-base` (a 254k-parameter, 2-layer Qwen2, vocabulary 2048, tied
  embeddings), loaded with `AutoModelForCausalLM.from_pretrained(dtype=float32,
  attn_implementation=--attn)`, default "eager" (the plain matmul-softmax-matmul that Temper's
  burn model does; "sdpa" is torch's fused kernel); its tokenizer (`AutoTokenizer`, same
  directory) is the `processing_class`: eos `<|im_end|>` = 2042, pad `<|endoftext|>` = 2040;
* prompts: the first `--prompts` (16) rows of `fixtures/task/rlvr_train.jsonl`, given to TRL as a
  conversational `prompt` column (the rows' `messages`, one user turn each) plus `ground_truth`
  (the JSON string) as an extra column, which TRL hands to the reward function as a keyword
  argument (`remove_unused_columns=False`, GRPOConfig's default). That is all TRL needs for
  conversational prompts: it renders them with the tokenizer's chat template and
  `add_generation_prompt=True` (`_tokenize_prompts`: `apply_chat_template(tokenize=True)`), so a
  prompt is `<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful
  assistant.<|im_end|>\\n<|im_start|>user\\n{content}<|im_end|>\\n<|im_start|>assistant\\n` (the
  template's default system turn included); completions are decoded with
  `batch_decode(skip_special_tokens=True)` and handed to the reward as
  `[{"role": "assistant", "content": text}]`;
* reward: open-instruct's `IFEvalVerifierOld` (ground_truth_utils.py @0039262a over
  if_functions.py @021dd069, the same copies that examples/anchors/verifiers_bench.py and
  fixtures/gen/verifiers_conformance.py import from `--references`,
  /root/.cache/temper-references/open-instruct), called as `verifier(None, text, ground_truth)`
  on every completion with its row's ground truth, score times 10 (open-instruct's
  `verification_reward`). The task's 6 checkers are validate_end ("Any other questions?"),
  validate_quotation, validate_lowercase, verify_postscript ("P.S."), validate_no_commas,
  validate_title. That code is plain Python, but if_functions.py imports `langdetect` (used only by
  validate_response_language, not by these 6), which is not in the TRL venv: when it is missing,
  the verifiers venv's site-packages (`--verifiers-site-packages`, requirements-verifiers.txt)
  is put at the end of sys.path just for that import (langdetect and six come from there) and
  taken off again, after torch/transformers/TRL are imported, so nothing else is resolved from it;
* GRPOConfig: num_generations 8, per_device_train_batch_size 32 (4 prompts x 8 completions per
  step), gradient_accumulation_steps 1 (so steps_per_generation 1, generation batch 32),
  num_iterations 1, max_completion_length 32, temperature 1.0, top_p 1.0, top_k 0 (no top-k; TRL
  builds the `GenerationConfig` with `top_k=0`, which transformers reads as "off"), min_p None,
  repetition_penalty 1.0, loss_type "dapo", epsilon 0.2 (epsilon_high = epsilon), scale_rewards
  "group", beta per row, AdamW (transformers' default `adamw_torch_fused`; betas 0.9/0.999, eps
  1e-8), learning_rate 1e-5 with the linear schedule, no warm-up, weight_decay 0, max_grad_norm 1,
  seed 42, use_vllm False (transformers `generate`, `use_cache=True`, the default dynamic KV
  cache), `gradient_checkpointing=False` explicitly (TRL 1.16 defaults it to True), `bf16=False`
  and `fp16=False` explicitly (TRL 1.16 defaults `bf16` to True), `max_steps` = 1 warm-up + `--steps`
  (default 5) timed, shuffle_dataset True (TRL's RepeatSampler seeded 42: each step draws 4 of the
  16 prompts, each repeated 8 times; 4 steps per epoch), no eval, no saving, no logging
  (`logging_strategy="no"`, `report_to="none"`, `log_completions=False`, tqdm off),
  `dataloader_num_workers=0`. The settings the row really ran with (generation config, logits
  processors transformers built, attention, dtype, optimizer) are checked and written to `--json`.

What a TRL step does (num_iterations 1 and gradient_accumulation_steps 1, so no old-policy
log-prob pass: `old_per_token_logps` is None and the ratio is exp(logp - logp.detach())):
`training_step` -> `_prepare_inputs` -> `_generate_and_score_completions`: `_generate` (template and
tokenise the 32 prompts, left-pad, one `model.generate` call over all 32 rows, cut each completion
after its first eos, decode), then under no_grad the reference log-probs (beta 0.04 only: one
forward of the reference over the 32 prompt+completion rows), then `_calculate_rewards`, then
group-normalised advantages; then `compute_loss` (policy forward through TRL's fused LM head,
log-probs and entropies, DAPO loss), backward, gradient clipping, AdamW step, scheduler step.

Timing (per step; `GRPOTrainer` subclassed only to put clocks around TRL's own methods):
* generation seconds = the wall time of `GRPOTrainer._generate(prompts)`, the call that
  `_generate_and_score_completions` makes to produce the completions: chat-template rendering and
  tokenisation of the 32 prompts (`_tokenize_prompts`), left padding into one batch, one
  `model.generate(do_sample=True, max_new_tokens=32)` call over the 32 rows (prefill of the padded
  prompts, then one decoding forward per new token with the KV cache until every row has produced
  eos or 32 tokens; finished rows keep being computed and are filled with pad), truncation of every
  completion after its first eos (the eos kept), `batch_decode(skip_special_tokens=True)`, and
  TRL's completion-length metrics (a few `.item()`s). `_generate_single_turn` alone (padding,
  `generate`, eos cut; no templating, no decoding) is also timed and reported as `sampling` in
  `--json` and under the table;
* scoring seconds = the wall time of `GRPOTrainer._calculate_rewards` (building the reward
  kwargs, the reward function over the 32 completions, the tensor of rewards);
* total seconds = `on_step_begin` -> `on_step_end` of a `TrainerCallback` (the end is after
  clipping, the optimizer step, the scheduler step and `zero_grad`; the batch of 32 dataset rows is
  fetched just before `on_step_begin`, outside the window);
* training seconds = total - generation - scoring: the reference pass (beta 0.04), advantages,
  padding, metrics, the policy forward + backward and the update;
* completion tokens/step = the sum over the 32 completions of their lengths as TRL keeps them
  (up to and including the first eos; at most 32 each, so at most 1024 per step);
* rollout tokens/s = completion tokens / generation seconds, per step, then the median.
The first step is the warm-up and is not counted. Sampling is random (seed 42 here; Temper has its
own RNG), so the completions, their lengths and hence every column's work differ between the two
sides; rollout tokens/s is the figure that accounts for that.

Contention: two torch (OpenMP) threads on a 2-core machine slow down several-fold, not by half, as
soon as another process takes a core. As in trl_train_bench.py, the subprocess measures how much
CPU the rest of the machine used during its timed steps (/proc/stat minus its own time, in cores);
the driver prints the worst row's figure, `--retries K` reruns a row whose figure exceeds
`--max-other-cores` (0.25) up to K times, keeping its least contended run, and `--wait-quiet S`
waits up to S seconds before each row for 2 quiet seconds.

Every column is its own median, so total is not exactly the sum of the other three. With seed 42
the completions are the same in every run and in both rows (546, 482, 548, 689 and 506 completion
tokens over the 5 timed steps, prompts of about 63 tokens; the update at lr 1e-5 does not change
what is sampled), so the two rows differ only in the reference pass and the KL term.

Measured
========
2026-11-22, this repository's 2-core CPU machine (other jobs running now and then), the command
`trl_grpo_bench.py --repeats 3 --retries 2 --wait-quiet 30 --json /tmp/trl_grpo_bench.json`
(steps 5, threads 2, attention eager):

    GRPO on task-base (254528 parameters), TRL 1.16.0 / transformers 5.23.0 / torch 2.15.0+cu132 /
    datasets 5.2.0 / accelerate 1.15.0, float32 on the CPU, 2 torch threads (os.cpu_count() = 2),
    attention eager, optimizer adamw_torch_fused (AdamW); 16 prompts, 4 prompts x 8 generations per
    step, max_completion_length 32, transformers generate (KV cache, logits processors []); 5 timed
    steps after one warm-up, medians; median of 3 runs per row, each in a fresh process

| row | generation s/step | scoring s/step | training s/step | total s/step | completion tokens/step | rollout tokens/s |
|---|---|---|---|---|---|---|
| beta 0 | 0.165 | 0.0004 | 0.241 | 0.409 | 546 | 3265 |
| beta 0.04 | 0.162 | 0.0006 | 0.304 | 0.466 | 546 | 3385 |

    Of the generation time, `_generate_single_turn` alone (left padding, model.generate, eos cut;
    no chat templating, tokenisation or decoding): beta 0: 0.158 s/step; beta 0.04: 0.157 s/step.
    Other processes used up to 0.29 cores during a row's timed steps ('beta 0'): the timings are
    contended, rerun on a quiet machine.

(0.29 is one beta-0 run just over the 0.25 threshold; the other five runs saw 0.01-0.07.)

A second run right after (more contended: one beta-0 run at 0.9 other cores) gave 0.168 / 0.0006 /
0.237 / 0.400 s and 3164 tokens/s (beta 0), 0.164 / 0.0006 / 0.299 / 0.502 s and 3336 tokens/s
(beta 0.04). Single steps vary a lot on this machine (training 0.16-0.9 s in quiet runs), hence
the medians.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROWS = [
    # name, beta
    ("beta 0", 0.0),
    ("beta 0.04", 0.04),
]
RESULT_MARK = "@@TRL_GRPO_BENCH_RESULT "
VERIFICATION_REWARD = 10.0  # open-instruct's default --verification_reward


class OtherLoad:
    """CPU the rest of the machine used during a window, in cores: the whole system's busy time
    from /proc/stat minus this process's own, over the wall time. Near 0 on a quiet machine; on a
    2-core machine anything around 1 or more means the timings are contended."""

    def _busy_seconds(self):
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal ...
        busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7]
        return busy / os.sysconf("SC_CLK_TCK")

    def start(self):
        t = os.times()
        self._start = (time.perf_counter(), self._busy_seconds(), t.user + t.system)

    def stop(self):
        t = os.times()
        wall0, busy0, own0 = self._start
        wall = time.perf_counter() - wall0
        own = t.user + t.system - own0
        return {"other_cores": max(0.0, (self._busy_seconds() - busy0 - own) / wall), "own_cores": own / wall}


def import_ifeval_old(references, verifiers_site_packages):
    """open-instruct's IFEvalVerifierOld from the hand-copied references (plain Python)."""
    sys.path.insert(0, os.path.join(references, "open-instruct"))
    added = None
    try:
        import langdetect  # noqa: F401  (if_functions.py imports it at the top)
    except ImportError:
        added = verifiers_site_packages
        sys.path.append(added)
    try:
        from open_instruct.ground_truth_utils import IFEvalVerifierOld
    finally:
        if added is not None:
            sys.path.remove(added)
    import langdetect

    langdetect.DetectorFactory.seed = 0  # as verifiers_conformance.setup_paths (unused by these checkers)
    return IFEvalVerifierOld


# ---------------------------------------------------------------------------------------------
# One row, in its own process


def run_row(args):
    import tempfile

    import accelerate
    import datasets
    import torch
    import transformers
    import trl
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)

    IFEvalVerifierOld = import_ifeval_old(args.references, args.verifiers_site_packages)
    verifier = IFEvalVerifierOld()

    name, beta = next(r for r in ROWS if r[0] == args.row)
    with open(args.data, encoding="utf-8") as f:
        rows = [json.loads(line) for line, _ in zip(f, range(args.prompts), strict=False)]
    assert len(rows) == args.prompts, (len(rows), args.prompts)
    train_dataset = datasets.Dataset.from_list(
        [{"prompt": r["messages"], "ground_truth": r["ground_truth"]} for r in rows]
    )

    def ifeval_old_reward(prompts, completions, ground_truth, **kwargs):
        """open-instruct's ifeval_old verification reward: IFEvalVerifierOld's score x 10."""
        return [
            VERIFICATION_REWARD * verifier(None, completion[0]["content"], label).score
            for completion, label in zip(completions, ground_truth, strict=True)
        ]

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32, attn_implementation=args.attn)

    # Per-step clocks: generation and scoring accumulate into the current step's bucket.
    clock = {"generation": 0.0, "sampling": 0.0, "scoring": 0.0, "tokens": 0, "calls": 0, "prompt_tokens": 0}
    processors = {}

    original_get_logits_processor = model._get_logits_processor

    def recording_get_logits_processor(*a, **kw):
        out = original_get_logits_processor(*a, **kw)
        processors.setdefault("names", [type(p).__name__ for p in out])
        return out

    model._get_logits_processor = recording_get_logits_processor

    class TimedGRPOTrainer(GRPOTrainer):
        """TRL's GRPOTrainer with clocks around `_generate`, `_generate_single_turn` and
        `_calculate_rewards`; nothing else changed."""

        def _generate(self, prompts):
            start = time.perf_counter()
            out = super()._generate(prompts)
            clock["generation"] += time.perf_counter() - start
            prompt_ids, completion_ids = out[0], out[1]
            clock["tokens"] += sum(len(ids) for ids in completion_ids)
            clock["prompt_tokens"] += sum(len(ids) for ids in prompt_ids)
            clock["calls"] += 1
            return out

        def _generate_single_turn(self, *a, **kw):
            start = time.perf_counter()
            out = super()._generate_single_turn(*a, **kw)
            clock["sampling"] += time.perf_counter() - start
            return out

        def _calculate_rewards(self, *a, **kw):
            start = time.perf_counter()
            out = super()._calculate_rewards(*a, **kw)
            clock["scoring"] += time.perf_counter() - start
            return out

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.steps = []
            self.load = OtherLoad()
            self.cpu = None

        def on_step_begin(self, args_, state, control, **kwargs):
            for key in clock:
                clock[key] = 0 if isinstance(clock[key], int) else 0.0
            self.begin = time.perf_counter()

        def on_step_end(self, args_, state, control, **kwargs):
            total = time.perf_counter() - self.begin
            assert clock["calls"] == 1, clock  # one generation per step
            self.steps.append(
                {
                    "total": total,
                    "generation": clock["generation"],
                    "sampling": clock["sampling"],
                    "scoring": clock["scoring"],
                    "training": total - clock["generation"] - clock["scoring"],
                    "completion_tokens": clock["tokens"],
                    "prompt_tokens": clock["prompt_tokens"],
                    "rollout_tokens_per_second": clock["tokens"] / clock["generation"],
                }
            )
            if state.global_step == 1:  # the warm-up step just ended
                self.load.start()
            elif state.global_step == state.max_steps:
                self.cpu = self.load.stop()

    timer = StepTimer()
    config = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="trl_grpo_bench_"),
        max_steps=args.steps + 1,
        num_generations=8,
        per_device_train_batch_size=32,
        gradient_accumulation_steps=1,
        num_iterations=1,
        max_completion_length=32,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        min_p=None,
        repetition_penalty=1.0,
        generation_kwargs={"use_cache": True},
        use_vllm=False,
        loss_type="dapo",
        epsilon=0.2,
        scale_rewards="group",
        beta=beta,
        learning_rate=1e-5,
        lr_scheduler_type="linear",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        seed=42,
        gradient_checkpointing=False,
        bf16=False,
        fp16=False,
        use_cpu=True,
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        logging_steps=10**9,
        log_completions=False,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = TimedGRPOTrainer(
        model=model,
        reward_funcs=ifeval_old_reward,
        args=config,
        train_dataset=train_dataset,
        processing_class=tokenizer,
        callbacks=[timer],
    )

    # The settings this row really ran with.
    assert trainer.accelerator.mixed_precision == "no", trainer.accelerator.mixed_precision
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    assert (trainer.ref_model is None) == (beta == 0.0)
    assert trainer.args.steps_per_generation == 1 and trainer.args.generation_batch_size == 32
    assert not trainer.args.gradient_checkpointing
    gen = trainer.generation_config
    assert gen.top_k == 0 and gen.top_p == 1.0 and gen.temperature == 1.0 and gen.do_sample and gen.use_cache
    assert gen.max_new_tokens == 32 and gen.repetition_penalty == 1.0

    trainer.train()

    timed = timer.steps[1:]
    assert len(timed) == args.steps, (len(timer.steps), args.steps)
    med = statistics.median
    columns = (
        "generation", "sampling", "scoring", "training", "total", "completion_tokens", "rollout_tokens_per_second"
    )
    result = {
        "row": name,
        "beta": beta,
        **{f"{c}_median": med(s[c] for s in timed) for c in columns},
        "steps": timed,
        "warmup": timer.steps[0],
        "other_cores_during_timed_steps": timer.cpu["other_cores"],
        "own_cores_during_timed_steps": timer.cpu["own_cores"],
        "logits_processors": processors.get("names"),
        "generation_config": {
            k: getattr(gen, k)
            for k in (
                "do_sample", "max_new_tokens", "temperature", "top_p", "top_k", "min_p", "repetition_penalty",
                "use_cache", "cache_implementation", "eos_token_id", "pad_token_id",
            )
        },
        "eos_token_ids": trainer.eos_token_ids,
        "pad_token_id": tokenizer.pad_token_id,
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
        "optimizer": type(getattr(trainer.optimizer, "optimizer", trainer.optimizer)).__name__,
        "optim": getattr(trainer.args.optim, "value", str(trainer.args.optim)),
        "attn_implementation": trainer.model.config._attn_implementation,
        "threads": torch.get_num_threads(),
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "trl": trl.__version__,
            "datasets": datasets.__version__,
            "accelerate": accelerate.__version__,
        },
    }
    print(RESULT_MARK + json.dumps(result), flush=True)


# ---------------------------------------------------------------------------------------------
# The driver: one subprocess per row (and per repeat)


def wait_for_quiet(args):
    """Before a row: wait (up to --wait-quiet seconds) until the machine has been quiet for 2 s."""
    deadline = time.monotonic() + args.wait_quiet
    probe = OtherLoad()
    while time.monotonic() < deadline:
        probe.start()
        time.sleep(2.0)
        if probe.stop()["other_cores"] <= args.max_other_cores:
            return


def spawn(args, row):
    env = dict(os.environ)
    threads = str(args.threads)
    env.update(
        OMP_NUM_THREADS=threads,
        MKL_NUM_THREADS=threads,
        TQDM_DISABLE="1",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        TRANSFORMERS_VERBOSITY="error",
        PYTHONWARNINGS="ignore",
    )
    command = [
        sys.executable, os.path.abspath(__file__), "--row", row, "--steps", str(args.steps), "--threads", threads,
        "--attn", args.attn, "--model", args.model, "--data", args.data, "--prompts", str(args.prompts),
        "--references", args.references, "--verifiers-site-packages", args.verifiers_site_packages,
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    sys.stderr.write(f"row {row!r} failed (exit {done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-8000:]}\n")
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps after one warm-up step")
    parser.add_argument("--repeats", type=int, default=1, help="runs per row (fresh process each); medians")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--attn", default="eager", choices=["eager", "sdpa"])
    parser.add_argument("--model", default=str(REPO / "fixtures" / "models" / "task-base"))
    parser.add_argument("--data", default=str(REPO / "fixtures" / "task" / "rlvr_train.jsonl"))
    parser.add_argument("--prompts", type=int, default=16, help="first N rows of --data")
    parser.add_argument(
        "--references", default="/root/.cache/temper-references", help="holds open-instruct/open_instruct/*.py"
    )
    parser.add_argument(
        "--verifiers-site-packages",
        default="/root/.cache/temper-verifiers-venv/lib/python3.11/site-packages",
        help="where langdetect comes from when the TRL venv lacks it (requirements-verifiers.txt)",
    )
    parser.add_argument(
        "--retries", type=int, default=0, help="rerun a row up to this many times while other processes are busy"
    )
    parser.add_argument(
        "--max-other-cores", type=float, default=0.25, help="other processes' CPU (in cores) that counts as contended"
    )
    parser.add_argument(
        "--wait-quiet", type=float, default=0.0, help="before each row, wait up to this long (s) for a quiet machine"
    )
    parser.add_argument("--only", default=None, help="run only the rows whose name contains this")
    parser.add_argument("--json", default=None, help="also write the medians and every run's raw result here")
    parser.add_argument("--row", default=None, help=argparse.SUPPRESS)  # internal: run one row
    args = parser.parse_args()
    if args.row is not None:
        run_row(args)
        return

    rows = [r[0] for r in ROWS if args.only is None or args.only in r[0]]
    results = {row: [] for row in rows}
    for _ in range(args.repeats):
        for row in rows:
            runs = []
            for _attempt in range(1 + args.retries):
                wait_for_quiet(args)
                result = spawn(args, row)
                if result is None:
                    break
                runs.append(result)
                if result["other_cores_during_timed_steps"] <= args.max_other_cores:
                    break
            if runs:
                results[row].append(min(runs, key=lambda r: r["other_cores_during_timed_steps"]))
    first = next((r[0] for r in results.values() if r), None)
    if first is None:
        sys.exit("no row ran")

    v = first["versions"]
    print(
        f"GRPO on {Path(args.model).name} ({first['parameters']} parameters), TRL {v['trl']} / transformers "
        f"{v['transformers']} / torch {v['torch']} / datasets {v['datasets']} / accelerate {v['accelerate']}, "
        f"float32 on the CPU, {first['threads']} torch threads (os.cpu_count() = {os.cpu_count()}), attention "
        f"{first['attn_implementation']}, optimizer {first['optim']} ({first['optimizer']}); {args.prompts} prompts, "
        f"4 prompts x 8 generations per step, max_completion_length 32, transformers generate (KV cache, logits "
        f"processors {first['logits_processors']}); {args.steps} timed steps after one warm-up, medians"
        + (f"; median of {args.repeats} runs per row, each in a fresh process" if args.repeats > 1 else
           "; each row in a fresh process")
    )
    print()
    print(
        "| row | generation s/step | scoring s/step | training s/step | total s/step | completion tokens/step "
        "| rollout tokens/s |"
    )
    print("|---|---|---|---|---|---|---|")
    med = statistics.median
    summary = {}
    for row in rows:
        runs = results[row]
        if not runs:
            print(f"| {row} | failed | | | | | |")
            continue
        columns = (
            "generation", "sampling", "scoring", "training", "total", "completion_tokens",
            "rollout_tokens_per_second",
        )
        m = {c: med(r[f"{c}_median"] for r in runs) for c in columns}
        summary[row] = m
        print(
            f"| {row} | {m['generation']:.3f} | {m['scoring']:.4f} | {m['training']:.3f} | {m['total']:.3f} "
            f"| {m['completion_tokens']:.0f} | {m['rollout_tokens_per_second']:.0f} |"
        )
    print()
    print(
        "Of the generation time, `_generate_single_turn` alone (left padding, model.generate, eos cut; no chat "
        "templating, tokenisation or decoding): "
        + "; ".join(f"{row}: {m['sampling']:.3f} s/step" for row, m in summary.items())
        + "."
    )
    busiest = max((r["other_cores_during_timed_steps"], row) for row, runs in results.items() for r in runs)
    print(
        f"Other processes used up to {busiest[0]:.2f} cores during a row's timed steps ({busiest[1]!r})"
        + (": the timings are contended, rerun on a quiet machine." if busiest[0] > args.max_other_cores
           else " (quiet machine).")
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"medians": summary, "runs": results}, indent=1))


if __name__ == "__main__":
    main()
