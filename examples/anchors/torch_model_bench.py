"""The PyTorch side of `examples/bench_model.rs`: a randomly initialised Qwen2.5-0.5B-shaped
(`--shape c`, the default) or SmolLM2-135M-shaped (`--shape b`) model in transformers on the CPU (float32, eager attention), timed on the same work: forward +
backward of the summed token log-probs at sequence length 512 (plain, and with transformers'
gradient checkpointing), and greedy generation of N tokens after a 32-token prompt with and
without the KV cache, and for 8 such prompts at once with it.

    /root/.cache/temper-trl-venv/bin/python examples/anchors/torch_model_bench.py [--new-tokens 16] [--layers N] [--shape b|c]

`bench_model -- --python PATH` runs it and prints both sides in one table.

Prints one JSON object (seconds, tokens/s, torch threads).
"""

import argparse
import json
import time

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config


def forward_backward(model, ids):
    """Seconds for one forward + backward of the summed next-token log-probs."""
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    logits = model(input_ids=ids).logits[:, :-1]
    logps = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).sum()
    (-logps).backward()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--layers", type=int, default=None, help="decoder layers (default: the real depth)")
    parser.add_argument("--shape", choices=("b", "c"), default="c", help="b: SmolLM2-135M, c: Qwen2.5-0.5B")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.shape == "b":
        config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                             num_hidden_layers=args.layers or 30, num_attention_heads=9, num_key_value_heads=3,
                             rms_norm_eps=1e-5, rope_theta=100000.0, max_position_embeddings=8192,
                             tie_word_embeddings=True)
    else:
        config = Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864,
                             num_hidden_layers=args.layers or 24, num_attention_heads=14, num_key_value_heads=2,
                             rms_norm_eps=1e-6, rope_theta=1000000.0, max_position_embeddings=32768,
                             tie_word_embeddings=True)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation="eager")
    seq = 512
    ids = torch.randint(0, 32000, (1, seq))
    model.train()  # transformers checkpoints only in training mode
    forward_backward(model, ids)  # warm-up (first-touch allocations), not measured
    train = forward_backward(model, ids)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    train_checkpointed = forward_backward(model, ids)
    model.gradient_checkpointing_disable()

    model.eval()
    prompt = torch.tensor([[100 + i * 7 for i in range(32)]])
    result = {"threads": torch.get_num_threads(), "forward_backward_seconds": train,
              "forward_backward_tokens_per_s": seq / train,
              "forward_backward_checkpointed_seconds": train_checkpointed,
              "forward_backward_checkpointed_tokens_per_s": seq / train_checkpointed}
    with torch.no_grad():
        for use_cache in (True, False):
            start = time.perf_counter()
            out = model.generate(prompt, do_sample=False, max_new_tokens=args.new_tokens,
                                 min_new_tokens=args.new_tokens, use_cache=use_cache, eos_token_id=None, pad_token_id=0)
            seconds = time.perf_counter() - start
            tokens = out.shape[1] - prompt.shape[1]
            key = "generation_cache" if use_cache else "generation_recompute"
            result[f"{key}_seconds"] = seconds
            result[f"{key}_tokens_per_s"] = tokens / seconds
        # Eight prompts at once with the cache (the same prompts as bench_model: offsets 0, 3, ..).
        batch = torch.tensor([[100 + 3 * b + i * 7 for i in range(32)] for b in range(8)])
        start = time.perf_counter()
        out = model.generate(batch, do_sample=False, max_new_tokens=args.new_tokens,
                             min_new_tokens=args.new_tokens, use_cache=True, eos_token_id=None, pad_token_id=0)
        seconds = time.perf_counter() - start
        result["generation_cache_batch8_seconds"] = seconds
        result["generation_cache_batch8_tokens_per_s"] = (out.shape[1] - batch.shape[1]) * 8 / seconds
    print(json.dumps(result))


if __name__ == "__main__":
    main()
