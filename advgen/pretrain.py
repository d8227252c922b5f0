"""`advgen pretrain`: maximum-likelihood training of the generator, readable top to bottom.

Run folder: config.json, generator/ (best validation loss, HF format), checkpoint/state.pt
(latest: model, optimizer, scheduler, RNG, step, world size), metrics.jsonl, samples.jsonl, summary.json.

Under `torchrun`, each rank trains on its slice of every global batch of `batch_size` (advgen.distributed)
and DDP averages the gradients; rank 0 alone validates, logs, samples and writes the run folder.
"""
import contextlib
import dataclasses
import functools
import math
import random
import time
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, get_linear_schedule_with_warmup

from advgen import config, data, distributed, metrics, models, runs, sampling, seeds
from advgen.config import PretrainConfig
from advgen.errors import AdvgenError
from advgen.metrics import mean_nll
from advgen.runlog import RunLog, load_state, save_state, write_json


def make_trainable(model, cfg: PretrainConfig):
    """Freeze the embeddings and the first `freeze_layers` blocks, or wrap the model with LoRA."""
    if cfg.freeze_layers:
        n = model.config.num_hidden_layers
        blocks = next(m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) == n)
        if cfg.freeze_layers > n:
            raise AdvgenError(f"--freeze-layers {cfg.freeze_layers} exceeds the model's {n} layers")
        for module in model.modules():
            if isinstance(module, nn.Embedding):
                module.requires_grad_(False)
        for block in blocks[:cfg.freeze_layers]:
            block.requires_grad_(False)
    if cfg.lora_r:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.dropout or 0.0,
                          target_modules="all-linear", task_type="CAUSAL_LM")
        model = get_peft_model(model, lora)
    return model


def run_tokenizer(cfg: PretrainConfig, splits: dict, run: Path, resumed: bool):
    """--tokenizer corpus:N: learned from the train split for a new run, read back from run/tokenizer/ for a
    resumed one. None for the GPT-2 tokenizer (or a pretrained generator's own)."""
    if cfg.tokenizer == "gpt2":
        return None
    if resumed:
        return AutoTokenizer.from_pretrained(str(run / "tokenizer"))
    return models.corpus_tokenizer(data.tokenizer_texts(splits["train"], cfg), int(cfg.tokenizer.split(":")[1]))


def save_checkpoint(path: Path, model, optimizer, scheduler, state: dict) -> None:
    save_state(path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                      "scheduler": scheduler.state_dict(), **state})


def load_checkpoint(path: Path, model, optimizer, scheduler) -> dict:
    ckpt = load_state(path)
    model.load_state_dict(ckpt.pop("model"))
    optimizer.load_state_dict(ckpt.pop("optimizer"))
    scheduler.load_state_dict(ckpt.pop("scheduler"))
    return ckpt


def pretrain(cfg: PretrainConfig, resume: bool = False) -> Path:
    started = time.time()
    run = Path(cfg.out)
    ckpt_path = runs.checkpoint_path(run)
    cfg = runs.claim(run, "pretrain", cfg, resume)  # resuming: the run's own config, not the flags
    config.validate(cfg)
    distributed.check_divides(cfg.batch_size, "--batch-size")
    device = distributed.setup(models.resolve_device(cfg.device))
    main = distributed.is_main()

    # Everything that can fail on bad input happens before the run folder is created.
    resumed = resume and ckpt_path.exists()
    splits = data.load_splits(cfg)
    model, tokenizer = models.load_generator(cfg.generator, cfg.dropout, cfg.seed,
                                             run_tokenizer(cfg, splits, run, resumed))
    train, valid, test = (data.encode(tokenizer, splits[name], cfg) for name in ("train", "valid", "test"))
    if cfg.epochs:  # an epoch budget becomes optimizer steps here, and config.json stores both
        per_epoch = data.batches_per_epoch(len(train), cfg.batch_size) / cfg.grad_accum
        cfg = dataclasses.replace(cfg, max_steps=max(math.ceil(cfg.epochs * per_epoch), 1))
    pad = tokenizer.pad_token_id
    model = make_trainable(model, cfg).to(device)
    optimizer = torch.optim.AdamW(models.param_groups(model, cfg.weight_decay), lr=cfg.lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, cfg.warmup_steps, cfg.max_steps)
    sample_prompts = [p for p, _ in valid[:cfg.num_samples]]
    autocast = functools.partial(models.autocast, device, cfg.precision)
    # The whole validation split (eval_batches 0) is scored in length-sorted batches of 4x the training batch:
    # almost no padding and no backward, so early stopping can afford all of it at every evaluation.
    whole = cfg.eval_batches == 0
    valid_order = sorted(valid, key=lambda e: len(e[0]) + len(e[1])) if whole else valid
    valid_batch = cfg.batch_size * (4 if whole else 1)

    world = distributed.world_size()
    state = {"step": 0, "best_loss": math.inf, "best_step": 0, "bad_evals": 0, "tokens_seen": 0, "done": False,
             "world_size": world}
    if resumed:
        state = load_checkpoint(ckpt_path, model, optimizer, scheduler)
        distributed.check_resumable(state, run)
    else:
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
    ddp = distributed.data_parallel(model, calls=True)  # ddp(fn, *args) = fn(model, *args), DDP when W > 1
    distributed.barrier()  # every rank has checked the run folder before rank 0 writes into it
    if main:
        runs.open_folder(run, state["step"] if resumed else None, cfg)
        if cfg.tokenizer != "gpt2" and not resumed:
            tokenizer.save_pretrained(str(run / "tokenizer"))  # a resumed run reads it back, never relearns it

    train_tokens = sum(len(t) for _, t in train)
    per_epoch_batches = data.batches_per_epoch(len(train), cfg.batch_size)
    log = RunLog(run, cfg.max_steps, state["step"], desc=f"pretrain {run.name}", enabled=main)
    if state["step"] == 0:
        log.log(0, {"data/train_examples": len(train), "data/valid_examples": len(valid),
                    "data/test_examples": len(test), "data/train_target_tokens": train_tokens})
    trainable = [p for p in model.parameters() if p.requires_grad]
    model.train()
    while state["step"] < cfg.max_steps and not state["done"]:
        step = state["step"]
        loss = 0.0
        for k in range(cfg.grad_accum):
            examples = data.batch_at(train, cfg.batch_size, cfg.seed, step * cfg.grad_accum + k)  # the global batch
            n = sum(len(t) for _, t in examples)
            batch = {key: v.to(device) for key, v in data.collate(distributed.shard(examples), pad).items()}
            # DDP averages over ranks, so world * (this rank's summed nll) / (global tokens) averages to the
            # mean over the global batch's target tokens: the loss a single process would take.
            with ddp.no_sync() if world > 1 and k < cfg.grad_accum - 1 else contextlib.nullcontext(), autocast():
                nll, _ = ddp(models.target_nll, batch)
                micro_loss = nll * world / n / cfg.grad_accum
                micro_loss.backward()
            loss += distributed.gather(nll.detach().reshape(1)).sum().item() / n / cfg.grad_accum
            state["tokens_seen"] += n
        grad_norm = torch.nn.utils.clip_grad_norm_(trainable, cfg.clip if cfg.clip else math.inf)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state["step"] = step = step + 1
        log.log(step, {"losses/train": loss, "charts/lr": scheduler.get_last_lr()[0],
                       "charts/grad_norm": float(grad_norm), "charts/tokens_seen": state["tokens_seen"]})
        log.bar.update(1)
        log.bar.set_postfix(loss=f"{loss:.3f}")

        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            # Rank 0 validates; every rank takes the same early-stopping decision from its result.
            clock = time.time()
            with autocast():
                val_loss = distributed.broadcast(mean_nll(model, valid_order, valid_batch, pad, device, cfg.eval_batches)
                                                 if main else None)
            val_seconds = time.time() - clock
            improved = val_loss < state["best_loss"]
            if improved:
                state.update(best_loss=val_loss, best_step=step, bad_evals=0)
            else:
                state["bad_evals"] += 1
            state["done"] = bool(cfg.patience) and state["bad_evals"] >= cfg.patience
            if main:
                if improved:
                    models.save(model, tokenizer, run / "generator")
                log.log(step, {"val/loss": val_loss, "val/ppl": metrics.perplexity(val_loss),
                               "val/best_ppl": metrics.perplexity(state["best_loss"]), "val/early_stop": int(state["done"]),
                               "val/seconds": val_seconds, "charts/epoch": step * cfg.grad_accum / per_epoch_batches})
                texts = sampling.sample(model, tokenizer, sample_prompts, cfg.max_target_tokens,
                                        seed=seeds.derive(cfg.seed, "samples", step))
                log.write_samples(step, [tokenizer.decode(p, skip_special_tokens=True) for p in sample_prompts], texts)
                save_checkpoint(ckpt_path, model, optimizer, scheduler, state)
                log.write(f"step {step}: val loss {val_loss:.4f} (ppl {metrics.perplexity(val_loss):.1f}); e.g. {texts[0]!r}")
    log.close()
    del ddp  # before the process group goes (distributed.cleanup)
    distributed.cleanup()
    if not main:
        return run

    summarize(run, cfg, tokenizer, splits, train, test, sample_prompts, state, device, started)
    return run


def summarize(run: Path, cfg: PretrainConfig, tokenizer, splits: dict, train: list, test: list, sample_prompts: list,
              state: dict, device, started: float) -> None:
    """summary.json: the best checkpoint's test perplexity, loaded back as a user would, beside a unigram baseline,
    its NLL per word and the word validity of its samples."""
    best = AutoModelForCausalLM.from_pretrained(str(run / "generator")).to(device)
    test_loss, test_nll_per_word = metrics.nll_per_token_and_word(best, tokenizer, test, cfg.batch_size, device,
                                                                  cfg.test_batches)
    texts = sampling.sample(best, tokenizer, sample_prompts, cfg.max_target_tokens,
                            seed=seeds.derive(cfg.seed, "summary-samples"))
    vocabulary = data.vocabulary(splits["train"], cfg.field)
    summary = {"best_step": state["best_step"], "steps": state["step"], "early_stopped": state["done"],
               "epochs": round(state["step"] * cfg.grad_accum / data.batches_per_epoch(len(train), cfg.batch_size), 3),
               "valid_ppl": metrics.perplexity(state["best_loss"]), "test_ppl": metrics.perplexity(test_loss),
               # tokenizer-independent: total test NLL over the targets' whitespace words (EOS counted as a word)
               "test_nll_per_word": test_nll_per_word,
               "word_validity": metrics.word_validity(texts, vocabulary), "validity_samples": len(texts),
               # the same share for the test split's own texts: what a model that matched the data would score
               "test_word_validity": metrics.word_validity([r[cfg.field] for r in splits["test"]], vocabulary),
               "test_unigram_ppl": metrics.unigram_perplexity([t for _, t in train], [t for _, t in test], len(tokenizer)),
               "train_examples": len(train), "train_target_tokens": sum(len(t) for _, t in train),
               "tokens_seen": state["tokens_seen"], "test_target_tokens": sum(len(t) for _, t in test),
               "test_batches": cfg.test_batches or "all", "device": models.describe_device(device),
               "processes": distributed.world_size(), "wall_seconds": round(time.time() - started, 1)}
    write_json(run / "summary.json", summary)
