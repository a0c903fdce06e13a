"""Score the verifier conformance rows with the Python references and print rows/s per verifier
as JSON lines: {"verifier", "rows", "seconds", "rows_per_s"}. examples/bench_verifiers.rs runs
this on the same machine and prints both rates with their ratio.

The references and their setup are those of fixtures/gen/verifiers_conformance.py (IFEval's
official code, open-instruct's GSM8K/MATH/if_functions verifiers); run from the repository root:

    NLTK_DATA=/root/.cache/temper-nltk-data python examples/anchors/verifiers_bench.py \
        --references /root/.cache/temper-references --antlr411 /root/.cache/temper-verifiers-venv/antlr4_11

Each verifier runs over all its rows, repeated until --seconds have passed (at least once).
MATH goes through sympy's parse_latex, which needs antlr 4.11, so it is timed in a subprocess
with --antlr411 first on sys.path.
"""

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, "fixtures/gen")
import verifiers_conformance as conformance  # noqa: E402

FIXTURES = "fixtures/verifiers"


def load(name):
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def timed(name, rows, score, seconds):
    start, done = time.perf_counter(), 0
    while True:
        for row in rows:
            score(row)
        done += len(rows)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    print(json.dumps({"verifier": name, "rows": done, "seconds": elapsed, "rows_per_s": done / elapsed}), flush=True)


def math_worker(seconds):
    from open_instruct.ground_truth_utils import MathVerifier

    verifier = MathVerifier()
    timed("math", load("math.jsonl"), lambda r: verifier(None, r["response"], r["ground_truth"]), seconds)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--references", default="/root/.cache/temper-references")
    parser.add_argument("--antlr411", default="/root/.cache/temper-verifiers-venv/antlr4_11")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--math-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.math_worker:
        return math_worker(args.seconds)
    conformance.setup_paths(args.references)
    from ifeval import instructions_registry
    from open_instruct.ground_truth_utils import GSM8KVerifier, IFEvalVerifierOld

    gsm8k, ifeval_old = GSM8KVerifier(), IFEvalVerifierOld()
    timed("gsm8k", load("gsm8k.jsonl"), lambda r: gsm8k(None, r["response"], r["ground_truth"]), args.seconds)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([args.antlr411, os.path.join(args.references, "open-instruct")]))
    subprocess.run([sys.executable, __file__, "--math-worker", "--seconds", str(args.seconds)], env=env, check=True)
    old_rows = [r for r in load("ifeval_old.jsonl")]
    timed("ifeval_old", old_rows, lambda r: ifeval_old(None, r["response"], r["ground_truth"]), args.seconds)
    timed("ifeval", load("ifeval.jsonl"), lambda r: conformance.strict_loose(instructions_registry, r), args.seconds)


if __name__ == "__main__":
    main()
