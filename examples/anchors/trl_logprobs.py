"""Times TRL's token log-prob gather on the CPU at the shape of Temper's objective benches.

TRL computes per-token log-probs with `trl.trainer.utils.selective_log_softmax` (a log-softmax
and a gather, row by row for float32 to bound memory). This script times it, forward only and
forward + backward through a DPO sigmoid loss, on [8, 1024, 32768] float32 logits, so that
`cargo bench -p temper-objectives --bench objectives` has an anchor on the same machine.

    /root/.cache/temper-trl-venv/bin/python examples/anchors/trl_logprobs.py [--repeats 3]

Prints one JSON object: median seconds for `gather` and `dpo_forward_backward`, and the torch
thread count.
"""

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
from trl.trainer.utils import selective_log_softmax

BATCH, SEQ, VOCAB = 8, 1024, 32768


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    logits = torch.randn(BATCH, SEQ, VOCAB) * 3.0
    labels = torch.randint(0, VOCAB, (BATCH, SEQ))
    reference = torch.randn(BATCH) * 10.0 - 2000.0

    def gather():
        with torch.no_grad():
            selective_log_softmax(logits, labels)

    def dpo_forward_backward():
        leaf = logits.clone().requires_grad_(True)
        sums = selective_log_softmax(leaf, labels).sum(-1)
        chosen, rejected = sums.chunk(2)
        ref_chosen, ref_rejected = reference.chunk(2)
        margin = (chosen - ref_chosen) - (rejected - ref_rejected)
        (-F.logsigmoid(0.1 * margin)).mean().backward()

    print(json.dumps({
        "shape": [BATCH, SEQ, VOCAB],
        "threads": torch.get_num_threads(),
        "gather": timed(gather, args.repeats),
        "dpo_forward_backward": timed(dpo_forward_backward, args.repeats),
    }))


if __name__ == "__main__":
    main()
