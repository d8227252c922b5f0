"""advgen's adversarial step against TRL's RLOOTrainer (the peer a user would pick instead), side by side, in one run.

Rows, for each policy, interleaved step by step (a TRL step, then one of each advgen row), warm-up steps dropped:
    trl-rloo      RLOOTrainer.train(): its optimizer steps, one completion batch each
    advgen        advgen.adversarial.train_step with --disc-steps 0: the reward model frozen, as in TRL
    advgen+disc   the same with one discriminator step per generator step: a reward that keeps learning, which
                  TRL's trainers do not offer
Policies: 'quick' (the quick preset's scratch GPT-2, 8,000-token corpus tokenizer) and 'smollm2' (the packaged
SmolLM2-135M), each from an `advgen pretrain` run of --init-steps steps on the embedded review titles (or a run
folder given with --quick-init / --smollm2-init); 'tiny' is a 2-layer GPT-2 for the tests.

Made equal: the policy weights (each row loads the same init run), the reward (TRL's reward function calls the
frozen advgen row's MiniLM realism classifier: P(real) of the decoded completion), the prompts (TRL's dataset is
advgen's prompt rows for each step, in order, not shuffled; each prompt's ids round-trip through the tokenizer,
checked), k samples per prompt (RLOO's num_generations), the number of new tokens, temperature 1 with no top-k or
top-p, the KL coefficient (a penalty of beta * sum_t (log p - log p_ref) on the reward, as both do), the
leave-one-out baseline without whitening, AdamW with the same learning rate, betas, eps and weight decay at a
constant schedule, gradient clipping at the same norm, fp32 (TRL's defaults bf16=True and
gradient_checkpointing=True are for GPUs and are turned off), dropout off, one optimizer step per batch of
completions (steps_per_generation = gradient_accumulation_steps = num_iterations = 1), the same threads.

Differences that remain (the APIs allow no closer match):
- TRL runs one more forward of the policy (old_per_token_logps, no gradient) for its importance ratio, which is 1
  with num_iterations=1; advgen differentiates log p directly (the same gradient).
- TRL samples with HF `generate` (dynamic KV cache); advgen with its own batched sampler (advgen.sampling).
- TRL's training forward also computes per-token entropies (a metric) through its chunked fused LM head.
- advgen scales each reward component by its running spread (rewards.RewardMixer) before the KL term; TRL uses the
  raw reward. This changes the advantages' scale, not the cost.
- advgen decodes every completion for its logs and its collapse alarm; TRL decodes for its reward functions.
Peak memory: per row, the most resident memory (CPU: VmHWM; CUDA: max allocated) a timed step adds to what the
process held when the step began; all rows live in one process, so the figure is the step's own working memory,
not the weights each row keeps.

    python benchmarks/vs_trl.py [--policies quick,smollm2] [--steps 3] [--warmup 1] [--device cpu]

Prints one line per row, the per-stage times, the ratios, and one JSON object on the last line.
"""
import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

from advgen import adversarial, data, distributed, models, rewards, runs
from advgen.config import AdversarialConfig
from common import peak_memory_reset, peak_memory_since

ROOT = Path(__file__).resolve().parents[1]
# `advgen pretrain` flags of each policy's init run (then --max-steps --init-steps and no evaluation to speak of).
POLICIES = {
    "quick": ["--preset", "quick"],
    "smollm2": ["--generator", "smollm2-135m", "--field", "title", "--max-target-tokens", "24", "--batch-size", "8"],
    "tiny": ["--generator", "scratch:gpt2-tiny", "--tokenizer", "corpus:300", "--max-target-tokens", "8"],
}
ROWS = ("trl-rloo", "advgen", "advgen+disc")


class Stages:
    """Wall time per stage of the step in progress: `wrap(fn, name)` returns fn timed into `name` (a string, or a
    function of no arguments giving one), the GPU synchronised on both sides."""

    def __init__(self, device):
        self.device, self.now = device, defaultdict(float)

    def wrap(self, fn, name):
        def timed(*args, **kwargs):
            self._sync()
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            self._sync()
            self.now[name() if callable(name) else name] += time.perf_counter() - start
            return out
        return timed

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def take(self, total: float) -> dict:
        """The step's stage times, with what no wrapper saw (the backward pass among it) as 'backward and rest'."""
        out = {**self.now, "backward and rest": total - sum(self.now.values())}
        self.now.clear()
        return out


def forward_kind() -> str:
    return "policy forward (grad)" if torch.is_grad_enabled() else "forward (no grad)"


def init_run(policy: str, given: str, steps: int, work: Path) -> Path:
    """The policy's pretrain run: `given`, or a fresh `advgen pretrain` of `steps` steps under `work`."""
    if given:
        return Path(given)
    out = work / f"init-{policy}"
    command = [sys.executable, "-m", "advgen", "pretrain", *POLICIES[policy], "--max-steps", str(steps),
               "--warmup-steps", "0", "--eval-every", str(steps), "--eval-batches", "1", "--test-batches", "1",
               "--num-samples", "1", "--out", str(out)]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    return out


def advgen_row(init: Path, args, disc_steps: int):
    """(config, models, task, state) of an advgen row, built as `advgen adversarial` builds them."""
    cfg = AdversarialConfig(init=str(init), discriminator="minilm-l6", disc_max_length=64, disc_steps=disc_steps,
                            disc_warmup=0, prompts_per_step=args.prompts, k=args.k, max_new_tokens=args.new_tokens,
                            gen_lr=args.lr, disc_lr=1e-5, kl_coef=args.kl, baseline="loo", w_realism=1.0,
                            max_steps=args.warmup + args.steps, seed=0, device=args.device)
    run = adversarial.load_init(cfg.init)
    task = adversarial.load_task(cfg, run.cfg, {})
    m = adversarial.build_models(cfg, run, {}, torch.device(args.device))
    m.policy = distributed.data_parallel(m.generator, calls=True)
    m.disc_step = m.discriminator
    return cfg, m, task, {"step": 0, "ema": None, "bad_steps": 0, "alarmed": False}


def trl_prompts(cfg: AdversarialConfig, m, task, steps: int) -> tuple:
    """advgen's prompts of steps 0..steps-1 as text, in order: TRL's dataset, so that its step s has advgen's
    prompts of step s. Each text must tokenize back to advgen's prompt ids. -> (texts, their ids)."""
    texts, ids_of = [], []
    for step in range(steps):
        for i in data.batch_at(list(range(len(task.train))), cfg.prompts_per_step, cfg.seed, step, "prompts"):
            ids = runs.prompt(m.tokenizer, task.cfg, task.train[i])
            text = m.tokenizer.decode(ids)
            if m.tokenizer(text=text)["input_ids"] != ids:
                sys.exit(f"vs_trl: a prompt does not round-trip through the tokenizer ({ids[:8]}...): TRL would see "
                         "other prompts than advgen")
            texts.append(text)
            ids_of.append(ids)
    return texts, ids_of


def trl_trainer(init: Path, reward, prompts: list, args, work: Path, on_step):
    """RLOOTrainer on the init run's generator, configured like the advgen rows (see the docstring)."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import RLOOConfig, RLOOTrainer

    class Interleave(TrainerCallback):
        def on_step_begin(self, *_, **__):
            on_step("begin")

        def on_pre_optimizer_step(self, *_, **__):
            on_step("optimizer-begin")

        def on_optimizer_step(self, *_, **__):
            on_step("optimizer-end")

        def on_step_end(self, *_, **__):
            on_step("end")

    def realism(prompts, completions, **_):
        return rewards.realism(reward, completions).tolist()

    policy, tokenizer = models.load_generator(str(init / "generator"))
    config = RLOOConfig(
        output_dir=str(work / "trl"), per_device_train_batch_size=args.prompts * args.k, num_generations=args.k,
        gradient_accumulation_steps=1, steps_per_generation=1, num_iterations=1, max_steps=args.warmup + args.steps,
        max_completion_length=args.new_tokens, temperature=1.0, top_p=1.0, top_k=0, repetition_penalty=1.0,
        beta=args.kl, normalize_advantages=False, learning_rate=args.lr, lr_scheduler_type="constant",
        warmup_steps=0, weight_decay=0.0, optim="adamw_torch", adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8,
        max_grad_norm=1.0, bf16=False, fp16=False, gradient_checkpointing=False, disable_dropout=True,
        shuffle_dataset=False, use_cpu=args.device == "cpu", seed=0, report_to="none", save_strategy="no",
        logging_steps=10**6, disable_tqdm=True, log_completions=False, dataloader_num_workers=0)
    return RLOOTrainer(model=policy, reward_funcs=[realism], args=config, processing_class=tokenizer,
                       train_dataset=Dataset.from_dict({"prompt": prompts}), callbacks=[Interleave()])


def instrument(stages: Stages) -> None:
    """Time advgen's stages where its step calls them (once per process: wrappers of wrappers would count twice)."""
    adversarial.rollout = stages.wrap(adversarial.rollout, "sample")
    adversarial.score = stages.wrap(adversarial.score, "score")
    adversarial.discriminator_steps = stages.wrap(adversarial.discriminator_steps, "discriminator step")
    models.teacher_forced_logprobs = stages.wrap(models.teacher_forced_logprobs, forward_kind)


def bench_policy(init: Path, args, work: Path, stages: Stages) -> dict:
    """All rows of one policy, interleaved: TRL's train() drives, and after each of its steps every advgen row
    takes one step. -> {row: [{"seconds", "samples", "tokens", "memory", "stages"} per timed step]}."""
    device = stages.device
    rows = {"advgen": advgen_row(init, args, 0), "advgen+disc": advgen_row(init, args, 1)}
    reward = rows["advgen"][1].discriminator  # frozen (disc_steps 0): the reward of the TRL row and the advgen row
    reward.model.eval().requires_grad_(False)
    prompts, prompt_ids = trl_prompts(*rows["advgen"][:3], args.warmup + args.steps)
    done = {row: [] for row in ROWS}
    for cfg, m, _, _ in rows.values():
        m.gen_opt.step = stages.wrap(m.gen_opt.step, "optimizer")
    clock = {}

    def advgen_step(row):
        cfg, m, task, state = rows[row]
        base = peak_memory_reset(device)
        start = time.perf_counter()
        ro = adversarial.train_step(cfg, m, task, state)[0]
        seconds = time.perf_counter() - start
        done[row].append({"seconds": seconds, "samples": len(ro.texts), "tokens": int(ro.samples.mask.sum()),
                          "memory": peak_memory_since(device, base), "stages": stages.take(seconds)})

    def on_step(event):
        if event == "begin":
            clock["memory"], clock["start"] = peak_memory_reset(device), time.perf_counter()
        elif event == "optimizer-begin":
            clock["optimizer"] = time.perf_counter()
        elif event == "optimizer-end":
            stages.now["optimizer"] += time.perf_counter() - clock["optimizer"]
        else:
            seconds = time.perf_counter() - clock["start"]
            done["trl-rloo"].append({"seconds": seconds, "samples": args.prompts * args.k, "tokens": clock.pop("tokens"),
                                     "memory": peak_memory_since(device, clock["memory"]), "stages": stages.take(seconds)})
            for row in rows:
                advgen_step(row)

    trainer = trl_trainer(init, reward, prompts, args, work, on_step)
    generate = trainer._generate_single_turn

    def counted(ids, *a, **kw):  # TRL's completion ids, cut at EOS: the step's sampled tokens
        P, first = args.prompts, len(done["trl-rloo"]) * args.prompts
        if ids != [p for p in prompt_ids[first:first + P] for _ in range(args.k)]:
            sys.exit("vs_trl: TRL's step sampled other prompts than advgen's (or not k contiguous copies of each)")
        ids = generate(ids, *a, **kw)
        clock["tokens"] = sum(map(len, ids))
        return ids
    trainer._generate_single_turn = stages.wrap(counted, "sample")
    trainer._calculate_rewards = stages.wrap(trainer._calculate_rewards, "score")
    trainer._get_per_token_logps_and_entropies = stages.wrap(trainer._get_per_token_logps_and_entropies, forward_kind)
    trainer.train()
    return {row: steps[args.warmup:] for row, steps in done.items()}


def summary(steps: list) -> dict:
    seconds = sum(s["seconds"] for s in steps)
    stage_names = sorted({k for s in steps for k in s["stages"]})
    return {"samples_per_s": sum(s["samples"] for s in steps) / seconds, "tokens_per_s": sum(s["tokens"] for s in steps) / seconds,
            "step_s": seconds / len(steps), "tokens_per_sample": sum(s["tokens"] for s in steps) / sum(s["samples"] for s in steps),
            "peak_step_memory_mb": max(s["memory"] for s in steps) / 2**20,
            "stages_s": {k: sum(s["stages"].get(k, 0.0) for s in steps) / len(steps) for k in stage_names}}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policies", default="quick,smollm2", help=f"comma-separated, of {', '.join(POLICIES)}")
    ap.add_argument("--quick-init", default="", help="a pretrain run folder for the quick policy (default: a fresh one)")
    ap.add_argument("--smollm2-init", default="", help="a pretrain run folder for the smollm2 policy (default: a fresh one)")
    ap.add_argument("--init-steps", type=int, default=20, help="pretrain steps of a fresh init run")
    ap.add_argument("--prompts", type=int, default=16, help="prompts per step")
    ap.add_argument("--k", type=int, default=4, help="samples per prompt")
    ap.add_argument("--new-tokens", type=int, default=24)
    ap.add_argument("--kl", type=float, default=0.05, help="KL coefficient (TRL's beta)")
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per row")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps per row first")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    policies = [p for p in args.policies.split(",") if p]
    unknown = sorted(set(policies) - set(POLICIES))
    if unknown or not policies or args.steps < 1 or args.warmup < 0 or args.k < 2:
        sys.exit(f"vs_trl: --policies of {', '.join(POLICIES)} (got {args.policies}); --steps >= 1, --warmup >= 0, "
                 "--k >= 2 (leave-one-out)")
    from transformers.utils import logging
    logging.set_verbosity_error()
    result = {"device": torch.cuda.get_device_name() if args.device.startswith("cuda") else
              f"cpu x{torch.get_num_threads()} threads", "prompts": args.prompts, "k": args.k,
              "new_tokens": args.new_tokens, "steps": args.steps, "warmup": args.warmup, "policies": {}}
    stages = Stages(torch.device(args.device))
    instrument(stages)
    with tempfile.TemporaryDirectory() as tmp:
        for policy in policies:
            init = init_run(policy, getattr(args, f"{policy}_init", ""), args.init_steps, Path(tmp))
            rows = {row: summary(steps) for row, steps in bench_policy(init, args, Path(tmp), stages).items()}
            trl = rows["trl-rloo"]
            result["policies"][policy] = {
                "init": str(init) if getattr(args, f"{policy}_init", "") else f"fresh: advgen pretrain, {args.init_steps} steps",
                "rows": rows, **{f"speedup/{row}": rows[row]["samples_per_s"] / trl["samples_per_s"] for row in ROWS[1:]},
                **{f"memory_ratio/{row}": rows[row]["peak_step_memory_mb"] / trl["peak_step_memory_mb"] for row in ROWS[1:]}}
            for row, r in rows.items():
                print(f"{policy:8s} {row:12s} {r['samples_per_s']:8.2f} samples/s {r['tokens_per_s']:9.1f} tokens/s "
                      f"{r['step_s']:7.2f} s/step {r['tokens_per_sample']:5.1f} tokens/sample "
                      f"peak +{r['peak_step_memory_mb']:8.1f} MB")
                print("         " + "  ".join(f"{k} {v:.2f}s" for k, v in r["stages_s"].items()))
            for key, value in result["policies"][policy].items():
                if key.startswith(("speedup", "memory_ratio")):
                    print(f"{policy:8s} {key:28s} {value:.2f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
