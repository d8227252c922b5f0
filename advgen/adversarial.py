"""`advgen adversarial`: policy-gradient GAN training of a pretrained generator, readable top to bottom.

Each step is a chain of stages, each a function below that returns what it logs:
  1. rollout: k continuations of each of `prompts_per_step` train prompts at temperature 1 (on-policy);
  2. score: the weighted components (realism = the discriminator's P(real), style, click, content), mixed by
     rewards.RewardMixer;
  3. advantages: the reward shaped per sequence, - kl_coef * (log p_policy - log p_init) + entropy_coef *
     (- log p_policy), summed over the sampled tokens and detached (their REINFORCE estimators are the
     gradients of the KL to the frozen init generator and of the entropy), then a REINFORCE baseline
     (advgen.baselines); with --dense-rewards, the realism part per token instead, from the discriminator's
     score of every prefix, and the baseline per position (dense_advantages);
  4. policy step: loss = -mean_i(A_i * sum_t log p(y_it)) (dense: -mean_i sum_t A_it log p(y_it)), skipped
     (and logged) when the loss or the gradient is not finite; with --ppo-epochs E, E - 1 more steps on the same
     samples with PPO's clipped surrogate (generator_steps);
  5. discriminator steps: `disc_steps` steps on real train texts against this step's samples;
  6. MLE step: every `mle_every` steps, one teacher-forced maximum-likelihood step on a train batch;
  7. log to metrics.jsonl (and samples with their rewards to samples.jsonl).

The generator stays in eval mode (no dropout), so the log-probabilities the sampler draws with are the
ones the policy gradient differentiates. Prompts, samples and real-text batches come from named streams
(advgen.seeds: a hash of (seed, stream, step)), and the checkpoint holds both models, both optimizers,
the mixer, the EMA and the RNG, so a resumed run continues exactly.

Run folder (advgen.runs): config.json (the init run's pretrain config under "pretrain", this stage's
under "adversarial"), generator/ and discriminator/ (HF format), checkpoint/state.pt, metrics.jsonl,
samples.jsonl, summary.json.
"""
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Optional

import torch

from advgen import baselines, config, data, distributed, metrics, models, rewards, runs, sampling, scorers, seeds
from advgen.config import AdversarialConfig, PretrainConfig
from advgen.errors import AdvgenError
from advgen.runlog import RunLog, load_state, progress, read_jsonl, save_state, write_json


@dataclass
class Models:
    """The models of a run and what trains them."""
    generator: torch.nn.Module           # the policy, trained
    reference: torch.nn.Module           # the frozen init generator: the KL anchor
    tokenizer: object
    discriminator: scorers.Scorer        # realism, trained
    scorers: dict                        # {'style': Scorer, 'click': Scorer, 'content': sentence encoder}, frozen,
                                         # for the weighted ones
    gen_opt: torch.optim.Optimizer
    disc_opt: torch.optim.Optimizer
    mixer: rewards.RewardMixer
    policy: torch.nn.Module = None       # policy(fn, *args) = fn(generator, *args), under DDP with torchrun
    disc_step: scorers.Scorer = None     # the discriminator with its model under DDP with torchrun


class Task(NamedTuple):
    """What the generator is trained on: the init run's config, train rows with their style targets, valid rows."""
    cfg: PretrainConfig
    train: list
    targets: list                        # the style label each train row's samples are rewarded for (or None)
    valid: list


class Rollout(NamedTuple):
    rows: list                           # (P,) indices into task.train, the whole batch's prompts
    prompts: list                        # this rank's b = (P / world) * k prompts, k per prompt, contiguous
    targets: list                        # (b,) style targets
    sources: list                        # (b,) the prompts' source texts (None without a source)
    first: int                           # this rank's first row in the global batch of B = P * k
    samples: sampling.Samples            # (b, N)
    texts: list                          # (b,) decoded


# ----------------------------------------------------------------------------------------------
# Inputs, each checked before the run folder exists


def load_init(init):
    """Pretrain run folder -> runs.Run, or one line saying what is wrong."""
    if not Path(init).is_dir():
        raise AdvgenError(f"--init {init}: no such run folder (write one with `advgen pretrain`)")
    try:
        run = runs.load(init)
    except AdvgenError as e:
        raise AdvgenError(f"--init {e}") from None
    sampling.check_supported(run.model)  # the sampler's model families, before anything is written
    return run


def load_scorers(cfg: AdversarialConfig, device) -> dict:
    """{'style': Scorer, 'click': Scorer, 'content': encoder} for the components with a weight; each scorer
    checked to be of its kind."""
    out = {}
    for kind in ("style", "click"):
        if getattr(cfg, f"w_{kind}") > 0:
            folder = getattr(cfg, f"{kind}_scorer")
            scorer = scorers.load_scorer(folder, device)
            if scorer.info.get("kind") != kind:
                raise AdvgenError(f"--{kind}-scorer {folder} is a {scorer.info.get('kind')!r} scorer, not a {kind} scorer")
            out[kind] = scorer
    if cfg.w_content > 0:
        out["content"] = metrics.encoder(device=device)
    return out


def style_targets(cfg: AdversarialConfig, init_cfg, scorer, records: list) -> list:
    """The style label each train record's samples are rewarded for: --style-target, or the record's own
    value of the scorer's label (which the init run must condition on, so the prompt states it)."""
    labels = scorer.info["labels"]
    if cfg.style_target:
        if cfg.style_target not in labels:
            raise AdvgenError(f"--style-target {cfg.style_target!r} is not a label of the style scorer ({', '.join(labels)})")
        return [cfg.style_target] * len(records)
    label = scorer.info["label"]
    if scorers.label_column(label, records[0]) not in init_cfg.condition:
        raise AdvgenError(f"the style scorer rewards '{label}', which the init run does not condition on (conditions: "
                          f"{', '.join(init_cfg.condition) or 'none'}): pass --style-target LABEL")
    targets = [scorers.label_of(r, "style", label) for r in records]
    unknown = sorted({t for t in targets if t is not None} - set(labels))
    if unknown:
        raise AdvgenError(f"the train split has {label} {unknown[0]!r}, not a label of the style scorer ({', '.join(labels)})")
    return targets


def load_task(cfg: AdversarialConfig, init_cfg: PretrainConfig, scorers_: dict) -> Task:
    """The init run's splits; with a style reward, only the train rows that have a target."""
    if cfg.w_content > 0 and not init_cfg.source:
        raise AdvgenError(f"--w-content {cfg.w_content} rewards staying on the source, but the init run has no "
                          "--source")
    splits = data.load_splits(init_cfg)
    train, targets = splits["train"], [None] * len(splits["train"])
    if "style" in scorers_:
        targets = style_targets(cfg, init_cfg, scorers_["style"], train)
        train, targets = [r for r, t in zip(train, targets) if t is not None], [t for t in targets if t is not None]
        if not train:
            raise AdvgenError(f"no train row has a '{scorers_['style'].info['label']}' label for the style reward")
    return Task(init_cfg, train, targets, splits["valid"])


def build_models(cfg: AdversarialConfig, init: runs.Run, scorers_: dict, device) -> Models:
    """Generator and frozen reference from the init run, a new discriminator, both optimizers, the mixer."""
    reference, _ = models.load_generator(str(init.path / "generator"))
    discriminator = scorers.new_discriminator(cfg.discriminator, cfg.disc_max_length, cfg.disc_dropout,
                                              seed=seeds.derive(cfg.seed, "disc-head"))
    init.model.to(device).eval()
    reference.to(device).eval().requires_grad_(False)
    discriminator.model.to(device)
    return Models(
        generator=init.model, reference=reference, tokenizer=init.tokenizer, discriminator=discriminator,
        scorers=scorers_,
        gen_opt=torch.optim.AdamW(models.param_groups(init.model, cfg.weight_decay), lr=cfg.gen_lr),
        disc_opt=torch.optim.AdamW(models.param_groups(discriminator.model, cfg.weight_decay), lr=cfg.disc_lr),
        mixer=rewards.RewardMixer({"realism": cfg.w_realism, "style": cfg.w_style, "click": cfg.w_click,
                                   "content": cfg.w_content}))


def save_checkpoint(run: Path, m: Models, state: dict) -> None:
    """generator/ and discriminator/ (HF format), then checkpoint/state.pt; each written atomically."""
    models.save(m.generator, m.tokenizer, run / "generator")
    scorers.save_scorer(m.discriminator, run / "discriminator")
    save_state(runs.checkpoint_path(run),
               {"generator": m.generator.state_dict(), "discriminator": m.discriminator.model.state_dict(),
                "gen_optimizer": m.gen_opt.state_dict(), "disc_optimizer": m.disc_opt.state_dict(),
                "mixer": m.mixer.state_dict(), **state})


def load_checkpoint(path: Path, m: Models) -> dict:
    ckpt = load_state(path)
    m.generator.load_state_dict(ckpt.pop("generator"))
    m.discriminator.model.load_state_dict(ckpt.pop("discriminator"))
    m.gen_opt.load_state_dict(ckpt.pop("gen_optimizer"))
    m.disc_opt.load_state_dict(ckpt.pop("disc_optimizer"))
    m.mixer.load_state_dict(ckpt.pop("mixer"))
    return ckpt


# ----------------------------------------------------------------------------------------------
# The stages of a step


def real_texts(task: Task, batch: int, seed: int, index: int, stream: str) -> list:
    """This rank's slice of the `index`-th batch of real train texts of a stream."""
    return [str(r[task.cfg.field]).strip() for r in distributed.shard(data.batch_at(task.train, batch, seed, index, stream))]


def warm_up(cfg: AdversarialConfig, m: Models, task: Task) -> dict:
    """Step 0: `disc_warmup` discriminator steps (at `disc_warmup_lr`) on real train texts against samples of
    the init generator, so that the first realism rewards, and the mixer's first spread, carry signal.
    Under torchrun each rank takes its slice of both. Returns the last step's disc/* metrics (means over
    the ranks); leaves the optimizer at `disc_lr`."""
    B, tok = cfg.prompts_per_step * cfg.k, m.tokenizer
    for group in m.disc_opt.param_groups:
        group["lr"] = cfg.disc_warmup_lr or cfg.disc_lr
    bar = progress(cfg.disc_warmup, "discriminator warm-up", disable=not distributed.is_main())
    for j in range(cfg.disc_warmup):
        rows = distributed.shard(data.batch_at(list(range(len(task.train))), B, cfg.seed, j, "warmup-prompts"))
        fake = sampling.decode(tok, sampling.generate(
            m.generator, [runs.prompt(tok, task.cfg, task.train[i]) for i in rows], cfg.max_new_tokens,
            eos_id=tok.eos_token_id, pad_id=tok.pad_token_id, seed=seeds.derive(cfg.seed, "warmup-rollout", j),
            rows_of=(distributed.rank() * len(rows), B)))
        real = real_texts(task, B, cfg.seed, j, "warmup-real")
        logs = distributed.mean_over_ranks(scorers.discriminator_step(m.disc_step, m.disc_opt, real, fake, cfg.clip,
                                                                      cfg.disc_label_smoothing))
        bar.update(1)
        bar.set_postfix(d_real=f"{logs['disc/d_real']:.3f}", d_fake=f"{logs['disc/d_fake']:.3f}")
        logs["disc/steps"] = j + 1
        if cfg.disc_target_accuracy and logs["disc/accuracy"] >= cfg.disc_target_accuracy:
            break  # the accuracy of this step's batch, before its update, reached the target: stop warming up
    bar.close()
    for group in m.disc_opt.param_groups:
        group["lr"] = cfg.disc_lr
    return {key.replace("disc/", "disc_warmup/"): v for key, v in logs.items()}


def rollout(cfg: AdversarialConfig, m: Models, task: Task, step: int) -> Rollout:
    """On-policy samples: k per prompt, contiguous (the layout advgen.baselines expects). Under torchrun each
    rank samples its slice of the prompts with the whole batch's draws (sampling.generate's rows_of)."""
    P, k, tok = cfg.prompts_per_step, cfg.k, m.tokenizer
    rows = data.batch_at(list(range(len(task.train))), P, cfg.seed, step, "prompts")
    mine = distributed.shard(rows)
    prompts = [runs.prompt(tok, task.cfg, task.train[i]) for i in mine for _ in range(k)]     # b = (P / world) * k
    first = distributed.rank() * len(prompts)
    samples = sampling.generate(m.generator, prompts, cfg.max_new_tokens, temperature=cfg.rollout_temperature,
                                eos_id=tok.eos_token_id,
                                pad_id=tok.pad_token_id, seed=seeds.derive(cfg.seed, "rollout", step),
                                rows_of=(first, P * k))                                   # tokens, mask: (b, N)
    sources = [str(task.train[i][task.cfg.source]).strip() if task.cfg.source else None for i in mine for _ in range(k)]
    return Rollout(rows, prompts, [task.targets[i] for i in mine for _ in range(k)], sources, first, samples,
                   sampling.decode(tok, samples))


def score(ro: Rollout, m: Models, cfg: AdversarialConfig) -> dict:
    """{component: (B,) reward over the whole batch} for the components with a weight > 0 (gathered over ranks)."""
    texts, targets, components = ro.texts, ro.targets, {}
    if cfg.w_realism > 0:
        components["realism"] = rewards.realism(m.discriminator, texts)
    if "style" in m.scorers:
        components["style"] = rewards.style(m.scorers["style"], texts, targets)
    if "click" in m.scorers:
        components["click"] = rewards.click(m.scorers["click"], texts)
    if "content" in m.scorers:
        components["content"] = rewards.content(m.scorers["content"], texts, ro.sources)
    return {name: distributed.gather(r) for name, r in components.items()}


def mix(components: dict, mixer: rewards.RewardMixer, batch: int) -> torch.Tensor:
    """The mixed reward (B,) of the whole batch; NaN everywhere when a score is not finite, so the step is
    skipped and the score never reaches the mixer's statistics."""
    if all(bool(torch.isfinite(r).all()) for r in components.values()):
        return mixer(components)[0]
    return torch.full((batch,), math.nan)


def sequence_logprobs(model, prompts: list, samples: sampling.Samples, pad_id: int) -> torch.Tensor:
    """(B,) log-probability of each sample of the whole batch under `model`, summed over its tokens, no gradient."""
    with torch.no_grad():
        return distributed.gather(models.teacher_forced_logprobs(model, prompts, samples, pad_id).sum(1).cpu())


def shaped(total: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor, cfg: AdversarialConfig) -> tuple:
    """Mixed reward (B,) and sequence log-probs under the policy and the frozen init model (B,) ->
    (shaped reward, KL estimate log p - log p_ref, entropy estimate - log p), all detached."""
    kl, entropy = (logp - ref_logp).detach(), -logp.detach()
    return total - cfg.kl_coef * kl + cfg.entropy_coef * entropy, kl, entropy


def greedy_rewards(cfg: AdversarialConfig, m: Models, ro: Rollout) -> torch.Tensor:
    """Self-critical baseline: the shaped reward (P,) of each prompt's greedy decode, scored without updating
    the mixer."""
    tok, prompts = m.tokenizer, ro.prompts[::cfg.k]
    greedy = sampling.generate(m.generator, prompts, cfg.max_new_tokens, temperature=0.0, eos_id=tok.eos_token_id,
                               pad_id=tok.pad_token_id)
    decoded = ro._replace(texts=sampling.decode(tok, greedy), targets=ro.targets[::cfg.k], sources=ro.sources[::cfg.k])
    total, _ = m.mixer(score(decoded, m, cfg), update=False)
    reward, _, _ = shaped(total, sequence_logprobs(m.generator, prompts, greedy, tok.pad_token_id),
                          sequence_logprobs(m.reference, prompts, greedy, tok.pad_token_id), cfg)
    return reward


def importance_weights(samples: sampling.Samples, clip: float) -> torch.Tensor:
    """(b,) p_policy(y) / q(y) of each sample drawn from q (the policy at another temperature), from the sampler's
    log-probs of its tokens under both, clipped at `clip`: the weights that keep the policy gradient one of the
    temperature-1 policy (ColdGANs), their clipping trading a bias for a bounded variance."""
    return (samples.model_logprobs - samples.logprobs).sum(1).exp().clamp(max=clip)


def dense_advantages(cfg: AdversarialConfig, m: Models, ro: Rollout, reward: torch.Tensor, realism: torch.Tensor,
                     state: dict) -> tuple:
    """Dense realism (ScratchGAN): returns per token (B, N), each the shaped reward less its realism part (the other
    components, the KL and entropy terms: on every token alike, which is the sequence-level estimator for them),
    plus the realism part per token: the mixer's realism factor times the discounted sum of the P(real) of the
    token's prefix and of the longer ones (rewards.prefix_realism). Baselines per position
    (baselines.position_advantages). -> (advantages (B, N), baseline (B, N), new ema, logs)."""
    prefix = distributed.gather(rewards.prefix_realism(m.discriminator, m.tokenizer, ro.samples))
    mask = distributed.gather(ro.samples.mask.float().cpu()).bool()
    scale = m.mixer.scale("realism")
    returns = (reward - scale * realism)[:, None] + scale * baselines.discounted_returns(prefix, mask, cfg.dense_discount)
    advantages, baseline, ema = baselines.position_advantages(returns, mask, cfg.baseline, k=cfg.k, ema=state["ema"],
                                                              decay=cfg.ema_decay, whiten=cfg.whiten)
    logs = {"reward/prefix_realism_mean": float(prefix[mask].mean()),
            "reward/advantage_std": float(advantages[mask].std(correction=0)),
            "reward/baseline_mean": float(baseline[mask].mean())}
    return advantages, baseline, ema, logs


def policy_step(cfg: AdversarialConfig, m: Models, task: Task, ro: Rollout, components: dict, total: torch.Tensor,
                state: dict) -> tuple:
    """Shape the rewards, take advantages (per sequence, or per token with dense rewards: dense_advantages), and
    step the generator on them (generator_steps). w_i = 1 for rollouts at temperature 1, else importance_weights.
    A non-finite loss or gradient skips the step (counted in state["bad_steps"]).
    -> (logs, shaped rewards (B,), advantages (B,): with dense rewards, those of each sample's first token)."""
    pad = m.tokenizer.pad_token_id
    token_logp = m.policy(models.teacher_forced_logprobs, ro.prompts, ro.samples, pad)   # (b, N) with gradient
    reward, kl, entropy = shaped(total, distributed.gather(token_logp.sum(1).detach().cpu()),
                                 sequence_logprobs(m.reference, ro.prompts, ro.samples, pad), cfg)   # (B,)
    b, weights = len(ro.prompts), torch.ones(len(ro.prompts))
    if cfg.rollout_temperature != 1.0:
        weights = importance_weights(ro.samples, cfg.is_clip).cpu()
    if cfg.dense_rewards:
        advantages, baseline, new_ema, spread = dense_advantages(cfg, m, ro, reward, components["realism"], state)
        mine = advantages[ro.first:ro.first + b]                                              # (b, N)
        advantages = advantages[:, 0]
    else:
        greedy = greedy_rewards(cfg, m, ro) if cfg.baseline == "self-critical" else None
        advantages, baseline, new_ema = baselines.advantages(reward, cfg.baseline, k=cfg.k, greedy_rewards=greedy,
                                                             ema=state["ema"], decay=cfg.ema_decay, whiten=cfg.whiten)
        spread = {"reward/advantage_std": float(advantages.std(correction=0)),
                  "reward/baseline_mean": float(baseline.mean())}
        mine = advantages[ro.first:ro.first + b, None] * ro.samples.mask.cpu()               # (b, N): A_i on its tokens
    logs, finite = generator_steps(cfg, m, task, ro, token_logp, mine * weights[:, None], state["step"])
    if finite:
        state["ema"], state["bad_steps"] = new_ema, 0
    else:
        state["bad_steps"] += 1
    logs.update({"reward/shaped_mean": float(reward.mean()), **spread, "policy/kl": float(kl.mean()),
                 "policy/entropy": float(entropy.mean()), "charts/skipped": int(not finite)})
    if cfg.rollout_temperature != 1.0:
        logs.update(importance_logs(distributed.gather(weights), cfg.is_clip))
    return logs, reward, advantages


def generator_steps(cfg: AdversarialConfig, m: Models, task: Task, ro: Rollout, token_logp: torch.Tensor,
                    advantages: torch.Tensor, step: int) -> tuple:
    """The generator's steps on one batch of samples, `advantages` (b, N) per token of this rank's samples (importance
    weights included). First REINFORCE: -mean over the batch of sum_t A_it log p(y_it | y_i<t), plus mle_coef times
    the NLL per token of a batch of real train texts (stream "mle-term"). Then, with --ppo-epochs E > 1, E - 1 more
    steps on the same samples and real batch, on PPO's clipped surrogate -mean_i sum_t min(r_it A_it,
    clip(r_it, 1 - eps, 1 + eps) A_it), r_it the ratio of the token's probability now to its probability before the
    first step (at the first step r = 1 and the clip does not bind: its gradient is REINFORCE's). Each rank's share
    is scaled by world / B, and DDP averages the ranks. A non-finite loss or gradient skips its step and the later
    ones. -> (logs of the first step, plus policy/ppo_* of the last; whether every step was taken)."""
    B, world = cfg.prompts_per_step * cfg.k, distributed.world_size()
    advantages, old, logs = advantages.to(token_logp.device), token_logp.detach(), {}
    trainable = [p for p in m.generator.parameters() if p.requires_grad]
    for epoch in range(cfg.ppo_epochs):
        if epoch == 0:
            loss = -(advantages * token_logp).sum() * world / B
        else:
            token_logp = m.policy(models.teacher_forced_logprobs, ro.prompts, ro.samples, m.tokenizer.pad_token_id)
            ratio = (token_logp - old).exp()
            clipped = ratio.clamp(1 - cfg.ppo_clip, 1 + cfg.ppo_clip)
            loss = -torch.min(ratio * advantages, clipped * advantages).sum() * world / B
        if cfg.mle_coef:
            term, nll = mle_loss(cfg, m, task, step, "mle-term")
            loss = loss + cfg.mle_coef * term
        loss.backward()
        loss = distributed.gather(loss.detach().reshape(1)).mean()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(trainable, cfg.clip if cfg.clip else math.inf))
        finite = math.isfinite(loss.item()) and math.isfinite(grad_norm)
        if finite:
            m.gen_opt.step()
        m.gen_opt.zero_grad(set_to_none=True)
        if epoch == 0:
            logs = {"policy/loss": loss.item(), "policy/grad_norm": grad_norm,
                    **({"losses/mle_term": nll} if cfg.mle_coef else {})}
        else:
            mask = ro.samples.mask.to(ratio.device)
            moved = distributed.gather(torch.stack([((ratio - clipped).abs() > 0)[mask].float().sum(),
                                                    mask.float().sum()]).detach().cpu().reshape(1, 2)).sum(0)
            logs.update({"policy/ppo_loss": loss.item(), "policy/ppo_clipped": float(moved[0] / moved[1]),
                         "policy/ppo_ratio_max": float(distributed.gather(ratio[mask].max().detach().cpu().reshape(1)).max())})
        if not finite:
            return logs, False
    return logs, True


def importance_logs(weights: torch.Tensor, clip: float) -> dict:
    """The batch's importance weights: mean, largest, share clipped, and the effective sample size per sample."""
    return {"policy/is_weight_mean": float(weights.mean()), "policy/is_weight_max": float(weights.max()),
            "policy/is_clipped": float((weights >= clip).float().mean()),
            "policy/is_ess": float(weights.sum() ** 2 / (weights ** 2).sum() / len(weights))}


def discriminator_accuracy(m: Models, real: list, fake: list, p_fake: Optional[torch.Tensor]) -> dict:
    """The discriminator's accuracy on this rank's real texts and samples (eval mode, no update), and its mean
    P(real) of each, as means over the ranks. `p_fake`: the whole batch's P(real) of the samples where the
    realism reward already scored them."""
    p_real = distributed.gather(rewards.realism(m.discriminator, real))
    if p_fake is None:
        p_fake = distributed.gather(rewards.realism(m.discriminator, fake))
    accuracy = ((p_real > 0.5).float().mean() + (p_fake <= 0.5).float().mean()) / 2
    return {"disc/accuracy": float(accuracy), "disc/d_real": float(p_real.mean()), "disc/d_fake": float(p_fake.mean())}


def discriminator_steps(cfg: AdversarialConfig, m: Models, task: Task, step: int, fake: list,
                        p_fake: Optional[torch.Tensor] = None) -> dict:
    """`disc_steps` steps on real train texts (stream "disc-real") against this step's samples (this rank's
    slice); the mean of their logs. With a target accuracy, the discriminator is first measured on the first of
    those real batches and the samples (discriminator_accuracy), and steps only while it is below the target
    (disc/stepped 0 or 1, disc/measured_accuracy; a step not taken logs its measurement as disc/*)."""
    B = cfg.prompts_per_step * cfg.k
    reals = [real_texts(task, B, cfg.seed, step * cfg.disc_steps + j, "disc-real") for j in range(cfg.disc_steps)]
    measured = {}
    if cfg.disc_target_accuracy and reals:
        measured = discriminator_accuracy(m, reals[0], fake, p_fake)
        if measured["disc/accuracy"] >= cfg.disc_target_accuracy:
            return {**measured, "disc/measured_accuracy": measured["disc/accuracy"], "disc/stepped": 0}
    logs = [distributed.mean_over_ranks(scorers.discriminator_step(m.disc_step, m.disc_opt, real, fake, cfg.clip,
                                                                   cfg.disc_label_smoothing))
            for real in reals]
    logs = {k: sum(d[k] for d in logs) / len(logs) for k in logs[0]} if logs else {}
    if measured:
        logs.update({"disc/measured_accuracy": measured["disc/accuracy"], "disc/stepped": int(bool(logs))})
    return logs


def mle_loss(cfg: AdversarialConfig, m: Models, task: Task, index: int, stream: str) -> tuple:
    """The teacher-forced NLL per target token of the `index`-th train batch of a stream -> (this rank's share of
    it, with gradient, to backpropagate; the whole batch's value, a float)."""
    world, pad = distributed.world_size(), m.tokenizer.pad_token_id
    rows = data.batch_at(task.train, task.cfg.batch_size, cfg.seed, index, stream)
    examples = data.encode(m.tokenizer, rows, task.cfg)
    n = sum(len(t) for _, t in examples)  # target tokens of the whole batch (as in pretrain.py)
    device = next(m.generator.parameters()).device
    nll, _ = m.policy(models.target_nll, {key: v.to(device) for key, v in
                                          data.collate(distributed.shard(examples), pad).items()})
    return nll * world / n, distributed.gather(nll.detach().reshape(1)).sum().item() / n


def mle_step(cfg: AdversarialConfig, m: Models, task: Task, step: int) -> dict:
    """Every `mle_every` steps, one teacher-forced maximum-likelihood step on a train batch, same optimizer."""
    if not cfg.mle_every or (step + 1) % cfg.mle_every:
        return {}
    loss, nll = mle_loss(cfg, m, task, step // cfg.mle_every, "mle")
    loss.backward()
    trainable = [p for p in m.generator.parameters() if p.requires_grad]
    if math.isfinite(float(torch.nn.utils.clip_grad_norm_(trainable, cfg.clip if cfg.clip else math.inf))):
        m.gen_opt.step()
    m.gen_opt.zero_grad(set_to_none=True)
    return {"losses/mle": nll}


def initial_state() -> dict:
    """What the loop carries from step to step (and the checkpoint keeps), before the first step."""
    return {"step": 0, "ema": None, "bad_steps": 0, "alarmed": False, "world_size": distributed.world_size()}


def train_step(cfg: AdversarialConfig, m: Models, task: Task, state: dict) -> tuple:
    """Stages 1-6 of step state["step"], which it advances. -> (rollout, components, mixed reward, shaped reward,
    advantages, logs)."""
    step = state["step"]
    ro = rollout(cfg, m, task, step)
    components = score(ro, m, cfg)
    total = mix(components, m.mixer, cfg.prompts_per_step * cfg.k)
    logs, reward, advantages = policy_step(cfg, m, task, ro, components, total, state)
    logs.update(discriminator_steps(cfg, m, task, step, ro.texts, components.get("realism")))
    logs.update(mle_step(cfg, m, task, step))
    state["step"] = step + 1
    return ro, components, total, reward, advantages, logs


def log_step(cfg: AdversarialConfig, log: RunLog, m: Models, task: Task, ro: Rollout, step: int, components: dict,
             total: torch.Tensor, reward: torch.Tensor, advantages: torch.Tensor, logs: dict, state: dict) -> None:
    """metrics.jsonl, the bar, the collapse alarm and samples.jsonl, of the whole batch (rank 0 writes)."""
    texts = distributed.gather_objects(ro.texts)
    distinct2, distinct_texts = metrics.distinct(texts, 2)[1], metrics.unique_ratio(texts)
    # distinct-2 alone misses a collapse onto one-word texts (no bigram), the share of distinct texts sees it
    low = [f"{name} of the batch is {value:.3f}, below --collapse-{name} {limit}" for name, value, limit in
           (("distinct2", distinct2, cfg.collapse_distinct2), ("distinct-texts", distinct_texts, cfg.collapse_distinct_texts))
           if limit and value < limit]
    alarm = bool(low)
    log.log(step, {**{f"reward/{name}_{stat}": float(getattr(r, stat)()) for name, r in components.items()
                      for stat in ("mean", "std")},  # std: unbiased
                   "reward/total_mean": float(total.mean()), **logs,
                   "policy/sample_tokens": float(distributed.gather(ro.samples.mask.sum(1).float()).mean()),
                   "charts/distinct2": distinct2, "charts/distinct_texts": distinct_texts,
                   "charts/collapse_alarm": int(alarm)})
    log.bar.update(1)
    log.bar.set_postfix(reward=f"{float(total.mean()):.3f}", d_fake=f"{logs.get('disc/d_fake', math.nan):.3f}")
    if alarm and not state["alarmed"]:
        log.write(f"warning: step {step}: {'; '.join(low)}: the generator may be collapsing onto a few outputs")
    state["alarmed"] = alarm
    if cfg.log_samples_every and step % cfg.log_samples_every == 0:
        k = cfg.k
        extras = [{**{name: round(float(r[i]), 4) for name, r in components.items()},
                   "reward": round(float(reward[i]), 4), "advantage": round(float(advantages[i]), 4)}
                  for i in range(0, len(texts), k)]
        prompts = [m.tokenizer.decode(runs.prompt(m.tokenizer, task.cfg, task.train[i]), skip_special_tokens=True)
                   for i in ro.rows]
        log.write_samples(step, prompts, texts[::k], extras)


# ----------------------------------------------------------------------------------------------
# The loop


def adversarial(cfg: AdversarialConfig, resume: bool = False) -> Path:
    started = time.time()
    run = Path(cfg.out)
    cfg = runs.claim(run, "adversarial", cfg, resume)  # resuming: the run's own config, not the flags
    config.validate_adversarial(cfg)
    distributed.check_divides(cfg.prompts_per_step, "--prompts-per-step")  # a prompt's k samples stay on one rank
    device = distributed.setup(models.resolve_device(cfg.device))
    main = distributed.is_main()

    # Everything that can fail on bad input happens before the run folder is created.
    init = load_init(cfg.init)
    cfg.discriminator = cfg.discriminator or init.cfg.discriminator
    cfg.max_new_tokens = cfg.max_new_tokens or init.cfg.max_target_tokens
    scorers_ = load_scorers(cfg, device)
    task = load_task(cfg, init.cfg, scorers_)
    m = build_models(cfg, init, scorers_, device)

    state = initial_state()
    resumed = resume and runs.checkpoint_path(run).exists()
    if resumed:
        state = load_checkpoint(runs.checkpoint_path(run), m)
        distributed.check_resumable(state, run)
    else:
        torch.manual_seed(cfg.seed)  # the global stream: the discriminator's dropout
        random.seed(cfg.seed)
    m.policy = distributed.data_parallel(m.generator, calls=True)
    m.disc_step = m.discriminator._replace(model=distributed.data_parallel(m.discriminator.model))
    distributed.barrier()  # every rank has checked the run folder before rank 0 writes into it
    if main:
        runs.open_folder(run, state["step"] if resumed else None, init.cfg, cfg)

    warm = warm_up(cfg, m, task) if state["step"] == 0 and cfg.disc_warmup else {}
    log = RunLog(run, cfg.max_steps, state["step"], desc=f"adversarial {run.name}", enabled=main)
    if state["step"] == 0:
        log.log(0, {"data/train_prompts": len(task.train), "data/batch": cfg.prompts_per_step * cfg.k,
                    "data/max_new_tokens": cfg.max_new_tokens, **warm})
    while state["step"] < cfg.max_steps:
        ro, components, total, reward, advantages, logs = train_step(cfg, m, task, state)
        step = state["step"]
        log_step(cfg, log, m, task, ro, step, components, total, reward, advantages, logs, state)
        if state["bad_steps"] >= cfg.nan_patience:
            log.close()
            raise AdvgenError(f"step {step}: the policy loss or gradient was not finite for {state['bad_steps']} "
                              f"consecutive steps (--nan-patience {cfg.nan_patience}); lower --gen-lr or resume from "
                              f"the last checkpoint in {run}")
        if main and (step % cfg.checkpoint_every == 0 or step == cfg.max_steps):
            save_checkpoint(run, m, state)
    log.close()
    m.policy = m.disc_step = None  # the DDP wrappers go before the process group (distributed.cleanup)
    distributed.cleanup()
    if not main:
        return run
    if not (run / "generator").is_dir():  # resumed after the last step: folders were written with that checkpoint
        save_checkpoint(run, m, state)
    summary = summarize(run, cfg, m, task)
    write_json(run / "summary.json", {**summary, "resumed": resumed, "device": models.describe_device(device),
                                      "processes": distributed.world_size(), "wall_seconds": round(time.time() - started, 1)})
    return run


def summarize(run: Path, cfg: AdversarialConfig, m: Models, task: Task) -> dict:
    """Start vs end of training from metrics.jsonl; the final generator against the init one on the same
    `eval_samples` prompts of the valid split and the same draws (stream "eval"), at temperature 1: diversity,
    and how well the final discriminator tells their samples from the prompts' real texts."""
    steps = [r for r in read_jsonl(run / "metrics.jsonl") if "policy/loss" in r]
    window = max(1, min(10, len(steps) // 10))

    def mean(rows, key) -> Optional[float]:
        values = [r[key] for r in rows if key in r]
        return sum(values) / len(values) if values else None

    chosen = [task.valid[i % len(task.valid)] for i in range(cfg.eval_samples)]
    real_p = rewards.realism(m.discriminator, [str(r[task.cfg.field]).strip() for r in chosen])  # their true texts
    compared = {}
    for name, model in (("final", m.generator), ("init", m.reference)):
        texts = runs.sample_texts(model, m.tokenizer, task.cfg, chosen, len(chosen), max_new_tokens=cfg.max_new_tokens,
                                  seed=seeds.derive(cfg.seed, "eval"), temperature=1.0)
        fake_p = rewards.realism(m.discriminator, texts)
        compared[name] = {"distinct2": metrics.distinct(texts, 2)[1],
                          "self_bleu4": metrics.self_bleu(texts, 4) if len(texts) > 1 else None,
                          "d_real_final_discriminator": fake_p.mean().item(),
                          # accuracy of the final discriminator on these samples against as many real valid texts
                          "disc_accuracy_final_discriminator": ((real_p > 0.5).float().mean()
                                                                + (fake_p <= 0.5).float().mean()).item() / 2,
                          "example": texts[0]}
    return {"steps": len(steps), "window": window,
            "d_fake_start": mean(steps[:window], "disc/d_fake"), "d_fake_end": mean(steps[-window:], "disc/d_fake"),
            # the mixed reward is scaled by the components' running spreads, so compare the raw components too
            "mixed_reward_start": mean(steps[:window], "reward/total_mean"),
            "mixed_reward_end": mean(steps[-window:], "reward/total_mean"),
            **{f"{name}_{end}": mean(rows, f"reward/{name}_mean") for name in rewards.COMPONENTS
               for end, rows in (("start", steps[:window]), ("end", steps[-window:])) if f"reward/{name}_mean" in steps[0]},
            "disc_accuracy_final": steps[-1].get("disc/accuracy") if steps else None,
            "skipped_steps": sum(r["charts/skipped"] for r in steps),
            "collapse_alarm_steps": sum(r["charts/collapse_alarm"] for r in steps),
            "eval_samples": cfg.eval_samples, **compared}
