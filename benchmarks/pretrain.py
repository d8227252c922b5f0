"""Training throughput of `advgen pretrain`'s step against the plain loop a user would write, with the GPT-2
vocabulary and with a corpus tokenizer, in one run.

The same from-scratch GPT-2 body (--size) is built twice: with the GPT-2 BPE (50,257 tokens) and with a byte-level
BPE of at most --vocab tokens learned from the train split (`--tokenizer corpus:N`). Each is trained by two loops
on the same batches of the packaged titles (the quick preset's prompt and target layout), from the same initial
weights:
- plain: `model(input_ids, attention_mask=..., labels=labels).loss`, backward, AdamW: the LM head and its
  softmax at every position, prompt and padding included;
- advgen: what `advgen pretrain` runs per step: `models.target_nll` (the head only at the positions that predict
  a target token), gradient clipping, AdamW over `models.param_groups` (no decay on biases and norms).
Both loops' first-batch losses are printed: the same quantity (mean NLL per target token) from the same weights
and dropout masks, so they agree to float32 rounding.

Each configuration runs --warmup untimed steps, then --repeats rounds of --steps timed steps, the four
configurations interleaved within each round; a configuration's time is its fastest round. Reported: seconds
per step, target tokens per second, and the ratios (advgen over plain for each vocabulary, corpus over GPT-2
vocabulary for each loop, and advgen with the corpus tokenizer over the plain loop with GPT-2's). On CUDA, the
peak memory of each and --precision (bf16 autocast in both loops); absolute times mean something only there.

    python benchmarks/pretrain.py [--size mini] [--vocab 8000] [--batch-size 32] [--steps 10] [--device auto]

The last line of the output is JSON.
"""
import argparse
import json
import math
import time

import torch

from advgen import data, models
from advgen.config import PretrainConfig


def plain_step(model, optimizer, batch, autocast):
    with autocast():
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def advgen_step(model, optimizer, batch, autocast, clip=1.0):
    with autocast():
        nll, n = models.target_nll(model, batch)
    loss = nll / n
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="mini", help="scratch:gpt2-<size> [default: mini, the quick preset's body]")
    ap.add_argument("--vocab", type=int, default=8000, help="corpus tokenizer size, corpus:N [default: 8000]")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-target-tokens", type=int, default=24)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per round")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds; each configuration keeps its fastest")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per configuration first")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if min(args.steps, args.repeats, args.batch_size) < 1 or args.warmup < 0:
        ap.error("--steps, --repeats and --batch-size must be positive, --warmup not negative")
    device = models.resolve_device(args.device)
    autocast = lambda: models.autocast(device, args.precision)  # noqa: E731
    cfg = PretrainConfig(generator=f"scratch:gpt2-{args.size}", field="title", max_target_tokens=args.max_target_tokens)
    train = data.load_splits(cfg)["train"]

    tokenizers = {"gpt2": None,  # load_generator's default: the GPT-2 BPE, with its pad token set
                  f"corpus:{args.vocab}": models.corpus_tokenizer(data.tokenizer_texts(train, cfg), args.vocab)}
    n_batches = args.warmup + args.steps
    configs, first_loss = {}, {}
    for vocab in tokenizers:
        _, tokenizers[vocab] = models.load_generator(cfg.generator, cfg.dropout, args.seed, tokenizers[vocab])
        tokenizer = tokenizers[vocab]
        examples = data.encode(tokenizer, train, cfg)
        batches = [{k: v.to(device) for k, v in data.collate(data.batch_at(examples, args.batch_size, args.seed, i),
                                                              tokenizer.pad_token_id).items()}
                   for i in range(n_batches)]
        for loop, step in (("plain", plain_step), ("advgen", advgen_step)):
            model, _ = models.load_generator(cfg.generator, cfg.dropout, args.seed, tokenizer)  # same weights
            model.to(device).train()
            groups = models.param_groups(model, cfg.weight_decay) if loop == "advgen" else model.parameters()
            optimizer = torch.optim.AdamW(groups, lr=args.lr)
            name = f"{loop} / {vocab}"
            configs[name] = dict(model=model, optimizer=optimizer, batches=batches, step=step, vocab=vocab, loop=loop,
                                 params=sum(p.numel() for p in model.parameters()),
                                 target_tokens=sum(int((b["labels"] != -100).sum()) for b in batches[args.warmup:]))
            torch.manual_seed(args.seed)  # the same dropout masks: both loops' first losses are the same number
            first_loss[name] = step(model, optimizer, batches[0], autocast)
            for b in batches[1:args.warmup]:
                step(model, optimizer, b, autocast)

    best = {name: math.inf for name in configs}
    peak = {}
    for _ in range(args.repeats):
        for name, c in configs.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            sync(device)
            clock = time.perf_counter()
            for b in c["batches"][args.warmup:]:
                c["step"](c["model"], c["optimizer"], b, autocast)
            sync(device)
            best[name] = min(best[name], time.perf_counter() - clock)
            if device.type == "cuda":
                peak[name] = torch.cuda.max_memory_allocated(device) / 2**20

    rows = {}
    print(f"device {device}, precision {args.precision}, scratch:gpt2-{args.size}, batch {args.batch_size}, "
          f"{args.steps} timed steps x {args.repeats} rounds (fastest kept)")
    print(f"{'configuration':<24}{'params':>12}{'s/step':>10}{'tokens/s':>12}{'first loss':>12}"
          + (f"{'peak MiB':>10}" if peak else ""))
    for name, c in configs.items():
        seconds = best[name] / args.steps
        rows[name] = {"loop": c["loop"], "vocab": c["vocab"], "vocab_size": len(tokenizers[c["vocab"]]),
                      "params": c["params"], "seconds_per_step": seconds,
                      "target_tokens_per_second": c["target_tokens"] / best[name], "first_loss": first_loss[name],
                      "peak_mib": peak.get(name)}
        print(f"{name:<24}{c['params']:>12,}{seconds:>10.4f}{rows[name]['target_tokens_per_second']:>12.0f}"
              f"{first_loss[name]:>12.4f}" + (f"{peak[name]:>10.0f}" if peak else ""))

    def speedup(a, b):  # how many times faster a is than b (seconds per step)
        return rows[b]["seconds_per_step"] / rows[a]["seconds_per_step"]

    corpus = f"corpus:{args.vocab}"
    ratios = {"advgen over plain, gpt2 vocabulary": speedup("advgen / gpt2", "plain / gpt2"),
              f"advgen over plain, {corpus}": speedup(f"advgen / {corpus}", f"plain / {corpus}"),
              f"{corpus} over gpt2 vocabulary, plain loop": speedup(f"plain / {corpus}", "plain / gpt2"),
              f"{corpus} over gpt2 vocabulary, advgen loop": speedup(f"advgen / {corpus}", "advgen / gpt2"),
              f"advgen {corpus} over plain gpt2": speedup(f"advgen / {corpus}", "plain / gpt2")}
    for label, value in ratios.items():
        print(f"speed-up {label}: {value:.2f}x")
    print(json.dumps({"device": str(device), "precision": args.precision, "size": args.size,
                      "batch_size": args.batch_size, "steps": args.steps, "repeats": args.repeats,
                      "rows": rows, "speedups": ratios}))


if __name__ == "__main__":
    main()
