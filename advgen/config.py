"""Configuration of each command: one dataclass, every default visible, named presets.

The CLI builds its options from these fields (the `help` metadata is the `--help` text), and a
run folder stores the resolved config as `config.json`, so a later stage rebuilds from it.
"""
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from advgen.errors import AdvgenError

BASELINES = ("none", "ema", "loo", "self-critical")  # REINFORCE baselines (advgen.baselines computes them)
PRECISIONS = ("auto", "fp32", "bf16")


def _opt(default, help):
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class PretrainConfig:
    out: str = _opt("", "run folder (default: runs/<preset>, or runs/pretrain)")
    corpus: str = _opt("default", "'default' (embedded clothing reviews) or a .txt/.jsonl/.csv path")
    test_corpus: Optional[str] = _opt(None, "a file whose rows are the test split (a benchmark's fixed test set, e.g. "
                                            "COCO's); the corpus then splits 90/10 into train and valid")
    field: str = _opt("title", "corpus field to generate, e.g. title, review, class")
    condition: list = _opt([], "comma-separated fields used as plain-text control prefixes")
    source: Optional[str] = _opt(None, "field given in the prompt as the source text (loss skips it)")
    split_by: Optional[str] = _opt(None, "field that groups rows into splits (default: product_id if present, else the text)")
    generator: str = _opt("gpt2", "hub id, local HF folder, 'smollm2-135m', or 'scratch:gpt2-{tiny,mini,small,medium}'")
    tokenizer: str = _opt("gpt2", "scratch generators: 'gpt2' (the GPT-2 BPE, 50,257 tokens) or 'corpus:N' (a byte-level "
                                  "BPE of at most N tokens learned from the train split); others keep their own")
    discriminator: str = _opt("bert-base-uncased", "hub id, local folder, 'minilm-l6', or 'scratch:bert-{tiny,mini}' (used by later stages)")
    max_source_tokens: int = _opt(96, "source text is cut to this many tokens")
    max_target_tokens: int = _opt(48, "target text is cut to this many tokens")
    batch_size: int = _opt(32, "sequences per micro-batch")
    grad_accum: int = _opt(1, "micro-batches per optimizer step")
    lr: float = _opt(5e-5, "peak learning rate (AdamW)")
    weight_decay: float = _opt(0.01, "AdamW weight decay (not applied to biases and norms)")
    warmup_steps: int = _opt(100, "linear warm-up steps, then linear decay to 0 at max_steps")
    max_steps: int = _opt(2000, "optimizer steps")
    epochs: float = _opt(0.0, "passes over the train split; when set, replaces --max-steps with the steps they take "
                              "(0 = --max-steps decides)")
    precision: str = _opt("auto", "'auto' (bf16 autocast on a CUDA device that supports it, else fp32), 'fp32', "
                                  "or 'bf16' (autocast, also on CPU); weights and optimizer stay fp32")
    clip: float = _opt(1.0, "gradient-norm clipping (0 = off)")
    dropout: Optional[float] = _opt(0.1, "dropout probability set in the model config (empty = keep the model's)")
    freeze_layers: int = _opt(0, "freeze the embeddings and the first N transformer blocks")
    lora_r: int = _opt(0, "LoRA rank through peft (0 = full fine-tuning)")
    lora_alpha: int = _opt(16, "LoRA alpha")
    eval_every: int = _opt(200, "validate, sample and checkpoint every N steps")
    eval_batches: int = _opt(20, "validation batches per evaluation (0 = whole split, in length-sorted batches)")
    test_batches: int = _opt(0, "test batches for the final perplexity in summary.json (0 = whole split)")
    patience: int = _opt(5, "stop after N evaluations without a better validation loss (0 = never)")
    num_samples: int = _opt(8, "samples written to samples.jsonl at each validation")
    seed: int = _opt(0, "seed for initialisation, data order, dropout and sampling")
    device: str = _opt("auto", "'auto', 'cpu', 'cuda', 'cuda:1', ...")


PRETRAIN_PRESETS = {
    # A small GPT-2 trained from scratch on product titles with an 8,000-token corpus tokenizer: the CPU quickstart
    # (about 3 minutes, 2.2 epochs). Chosen by measurement among tokenizer, steps, batch, learning rate and dropout
    # settings that fit 3 minutes on 2 cores (docs/pretrain.md).
    "quick": dict(generator="scratch:gpt2-mini", tokenizer="corpus:8000", discriminator="minilm-l6", field="title",
                  batch_size=32, lr=2e-3, warmup_steps=30, max_steps=1100, max_target_tokens=24,
                  eval_every=275, eval_batches=0, patience=3, dropout=0.0, num_samples=10),
    # The COCO-captions benchmark of the text-GAN literature (files in experiments/data/coco, paths relative to the
    # repository root): a small GPT-2 with a corpus tokenizer, trained to early stopping on the whole validation split.
    "coco": dict(generator="scratch:gpt2-mini", tokenizer="corpus:5000", discriminator="minilm-l6", field="caption",
                 corpus="experiments/data/coco/coco_train.txt", test_corpus="experiments/data/coco/coco_test.txt",
                 batch_size=64, lr=1e-3, warmup_steps=100, epochs=40, max_target_tokens=48, eval_every=70,
                 eval_batches=0, patience=4, dropout=0.1, num_samples=10),
    # Fine-tuning the packaged pretrained SmolLM2-135M on reviews conditioned on attributes.
    "smollm2": dict(generator="smollm2-135m", discriminator="minilm-l6", field="review",
                    condition=["department", "rating"], batch_size=8, grad_accum=4, lr=5e-5,
                    warmup_steps=50, max_steps=1000, max_target_tokens=96, eval_every=100),
    # The research setting: GPT-2 and BERT from the hub, on a GPU.
    "paper": dict(generator="gpt2", discriminator="bert-base-uncased", field="review",
                  condition=["department", "rating"], batch_size=32, lr=5e-5, warmup_steps=200,
                  max_steps=5000, max_target_tokens=128, eval_every=250),
}


def check_ranges(cfg, positive=(), non_negative=()) -> None:
    """One line per setting out of range: `positive` fields must be > 0, `non_negative` ones finite and >= 0."""
    for name in positive:
        value = getattr(cfg, name)
        if not (math.isfinite(value) and value > 0):
            raise AdvgenError(f"--{name.replace('_', '-')} must be positive, got {value}")
    for name in non_negative:
        value = getattr(cfg, name)
        if not (math.isfinite(value) and value >= 0):
            raise AdvgenError(f"--{name.replace('_', '-')} must be finite and not negative, got {value}")


@dataclass
class ScorerConfig:
    out: str = _opt("", "scorer folder (default: runs/scorers/<kind>-<label>)")
    kind: str = _opt("style", "'style' (classify --label) or 'click' (engagement: --label count >= --threshold)")
    label: str = _opt("", "label field; style: department, class, rating, recommended, 'sentiment' (rating 1-2/3/4-5) "
                          "or any column [default: department]; click: a count column [default: feedback_count]")
    threshold: int = _opt(1, "click: a text is 'engaged' when its count is at least this")
    field: str = _opt("title", "corpus field the scorer reads (the generator's --field)")
    corpus: str = _opt("default", "'default' (embedded clothing reviews) or a .txt/.jsonl/.csv path")
    split_by: Optional[str] = _opt(None, "field that groups rows into splits (default: product_id if present, else the text)")
    model: str = _opt("minilm-l6", "encoder: 'minilm-l6', 'scratch:bert-{tiny,mini}', a hub id or a local folder")
    max_length: int = _opt(64, "tokens per text, special tokens included (longer texts are truncated)")
    batch_size: int = _opt(32, "texts per step")
    lr: float = _opt(5e-5, "peak learning rate (AdamW)")
    weight_decay: float = _opt(0.01, "AdamW weight decay (not applied to biases and norms)")
    warmup_steps: int = _opt(50, "linear warm-up steps, then linear decay to 0 at max_steps")
    max_steps: int = _opt(1000, "optimizer steps")
    clip: float = _opt(1.0, "gradient-norm clipping (0 = off)")
    dropout: Optional[float] = _opt(None, "dropout probability set in the model config (empty = keep the model's)")
    eval_every: int = _opt(100, "validate and keep the best model every N steps")
    eval_batches: int = _opt(0, "validation batches per evaluation (0 = whole split)")
    patience: int = _opt(3, "stop after N evaluations without a better validation loss (0 = never)")
    seed: int = _opt(0, "seed for the new head, data order and dropout")
    device: str = _opt("auto", "'auto', 'cpu', 'cuda', 'cuda:1', ...")

    def __post_init__(self):
        self.label = self.label or {"style": "department", "click": "feedback_count"}.get(self.kind, "")
        self.out = self.out or str(Path("runs") / "scorers" / f"{self.kind}-{self.label}")


SCORER_PRESETS = {
    # MiniLM on product titles, the texts of the quick generator: a few minutes on CPU.
    "quick": dict(model="minilm-l6", field="title", max_length=32, batch_size=32, lr=5e-5,
                  max_steps=600, eval_every=100, eval_batches=0, patience=2),
    # MiniLM on reviews, the texts of the smollm2 generator: one epoch, about 20 minutes on 2 CPU cores.
    "reviews": dict(model="minilm-l6", field="review", max_length=128, batch_size=32, lr=5e-5,
                    max_steps=600, eval_every=100, patience=2),
    # BERT-base on reviews, on a GPU.
    "paper": dict(model="bert-base-uncased", field="review", max_length=256, batch_size=32, lr=3e-5,
                  warmup_steps=200, max_steps=5000, eval_every=500, patience=3),
}
SCORER_KINDS = ("style", "click")


def validate_scorer(cfg: ScorerConfig) -> None:
    if cfg.kind not in SCORER_KINDS:
        raise AdvgenError(f"--kind must be one of {', '.join(SCORER_KINDS)}, got '{cfg.kind}'")
    check_ranges(cfg, positive=["max_length", "batch_size", "max_steps", "eval_every", "lr"],
                 non_negative=["warmup_steps", "weight_decay", "clip", "eval_batches", "patience"])
    if cfg.dropout is not None and not 0 <= cfg.dropout < 1:
        raise AdvgenError(f"--dropout must be in [0, 1), got {cfg.dropout}")


def validate(cfg: PretrainConfig) -> None:
    check_ranges(cfg, positive=["batch_size", "grad_accum", "max_steps", "eval_every", "max_source_tokens",
                                "max_target_tokens", "lr"],
                 non_negative=["warmup_steps", "freeze_layers", "lora_r", "eval_batches", "test_batches", "patience",
                               "num_samples", "weight_decay", "clip", "epochs"])
    if cfg.precision not in PRECISIONS:
        raise AdvgenError(f"--precision must be one of {', '.join(PRECISIONS)}, got '{cfg.precision}'")
    if cfg.dropout is not None and not 0 <= cfg.dropout < 1:
        raise AdvgenError(f"--dropout must be in [0, 1), got {cfg.dropout}")
    if cfg.lora_r and cfg.freeze_layers:
        raise AdvgenError("--lora-r and --freeze-layers exclude each other (LoRA already freezes the base model)")
    if cfg.tokenizer != "gpt2":
        size = cfg.tokenizer[len("corpus:"):] if cfg.tokenizer.startswith("corpus:") else ""
        if not (size.isdigit() and int(size) > 256):
            raise AdvgenError(f"--tokenizer must be 'gpt2' or 'corpus:N' with N > 256 (the byte alphabet), got "
                              f"'{cfg.tokenizer}'")
        if not cfg.generator.startswith("scratch:"):
            raise AdvgenError(f"--tokenizer {cfg.tokenizer} needs a from-scratch generator: '{cfg.generator}' keeps "
                              "its own tokenizer")
    if cfg.field in cfg.condition or cfg.field == cfg.source:
        raise AdvgenError(f"the generated field '{cfg.field}' cannot also be a condition or the source")


@dataclass
class AdversarialConfig:
    init: str = _opt("", "pretrain run folder to start from (required): its generator, corpus, field and prompts")
    out: str = _opt("", "run folder (default: runs/<init name>-adversarial)")
    discriminator: str = _opt("", "realism discriminator encoder: 'minilm-l6', 'scratch:bert-{tiny,mini}', a hub id or "
                                  "a folder (default: the init run's --discriminator)")
    disc_max_length: int = _opt(64, "discriminator tokens per text, special tokens included")
    disc_dropout: Optional[float] = _opt(None, "dropout probability of the discriminator (empty = the encoder's own)")
    style_scorer: str = _opt("", "style scorer folder (`advgen train-scorer --kind style`); needed when --w-style > 0")
    click_scorer: str = _opt("", "click scorer folder (`advgen train-scorer --kind click`); needed when --w-click > 0")
    style_target: str = _opt("", "style label to reward, e.g. Dresses (empty = each prompt's own condition value)")
    w_realism: float = _opt(1.0, "weight of realism, the discriminator's P(real)")
    w_style: float = _opt(0.0, "weight of style, the style scorer's P(target label)")
    w_click: float = _opt(0.0, "weight of click, the click scorer's P(engaged)")
    w_content: float = _opt(0.0, "weight of content, the cosine similarity of the sample's and its source's MiniLM "
                                 "sentence embeddings (source-conditioned init runs)")
    baseline: str = _opt("loo", "REINFORCE baseline: none, ema, loo (leave-one-out over the k samples), self-critical")
    k: int = _opt(4, "samples per prompt")
    rollout_temperature: float = _opt(1.0, "temperature the rollouts are drawn at; below 1, colder exploration (ColdGANs): "
                                           "each sample's policy gradient is weighted by p_policy(y) / p_T(y), clipped at --is-clip")
    is_clip: float = _opt(5.0, "upper clip of the per-sequence importance weights of --rollout-temperature")
    dense_rewards: bool = _opt(False, "realism per token (ScratchGAN): the discriminator scores every prefix of each sample, "
                                      "a token's realism return is the discounted sum of the P(real) of its prefix and the "
                                      "following ones, and the baseline is taken per position (none, ema or loo)")
    dense_discount: float = _opt(0.23, "discount of the dense realism returns (ScratchGAN's 0.23)")
    ppo_epochs: int = _opt(1, "generator steps on each batch of samples: 1 = REINFORCE; E > 1 adds E - 1 steps of PPO's "
                              "clipped surrogate on the same samples")
    ppo_clip: float = _opt(0.2, "PPO's clip of the probability ratio of each token, to [1 - C, 1 + C]")
    whiten: bool = _opt(False, "whiten the advantages over the batch ((a - mean) / std)")
    ema_decay: float = _opt(0.9, "decay of the ema baseline's moving average")
    prompts_per_step: int = _opt(16, "prompts per generator step (batch = prompts_per_step * k)")
    max_new_tokens: Optional[int] = _opt(None, "tokens per sample (empty = the init run's --max-target-tokens)")
    gen_lr: float = _opt(1e-5, "generator learning rate (AdamW, constant)")
    disc_lr: float = _opt(5e-5, "discriminator learning rate (AdamW, constant)")
    weight_decay: float = _opt(0.0, "AdamW weight decay of both models (not applied to biases and norms)")
    kl_coef: float = _opt(0.05, "penalty on the KL divergence to the frozen init generator, per sequence")
    entropy_coef: float = _opt(0.0, "bonus on the policy's entropy, per sequence")
    clip: float = _opt(1.0, "gradient-norm clipping of both models (0 = off)")
    disc_steps: int = _opt(1, "discriminator steps per generator step (0 = a frozen discriminator)")
    disc_target_accuracy: float = _opt(0.0, "step the discriminator only while its accuracy on this step's samples and a "
                                            "real batch is below this, and end the warm-up once it is reached (0 = always step)")
    disc_label_smoothing: float = _opt(0.0, "label smoothing of the discriminator's cross-entropy (0 = off)")
    disc_warmup: int = _opt(0, "discriminator steps on real texts against the init generator's samples before the first generator step")
    disc_warmup_lr: Optional[float] = _opt(None, "discriminator learning rate during the warm-up (empty = --disc-lr)")
    mle_coef: float = _opt(0.0, "weight of a maximum-likelihood term in every generator step: the NLL per token of a "
                                "batch of real train texts, added to the policy loss (0 = off)")
    mle_every: int = _opt(0, "a teacher-forced maximum-likelihood generator step every N steps (0 = never)")
    max_steps: int = _opt(500, "generator steps")
    log_samples_every: int = _opt(25, "write one sample per prompt, with its rewards, to samples.jsonl every N steps (0 = never)")
    checkpoint_every: int = _opt(50, "checkpoint (and save generator/ and discriminator/) every N steps")
    eval_samples: int = _opt(500, "samples of the final and the init generator compared in summary.json")
    collapse_distinct2: float = _opt(0.2, "mode-collapse alarm when the batch's distinct-2 falls below this (0 = off)")
    collapse_distinct_texts: float = _opt(0.5, "mode-collapse alarm when the batch's distinct texts per text fall below "
                                          "this (0 = off): what distinct-2 misses of one-word outputs")
    nan_patience: int = _opt(3, "abort after N consecutive steps with a non-finite loss or gradient (each is skipped)")
    seed: int = _opt(0, "seed for prompts, sampling, real-text batches and dropout")
    device: str = _opt("auto", "'auto', 'cpu', 'cuda', 'cuda:1', ...")

    def __post_init__(self):
        if self.init and not self.out:
            self.out = str(Path("runs") / f"{Path(self.init).name}-adversarial")


ADVERSARIAL_PRESETS = {
    # After `advgen pretrain --preset quick` (runs/quick): realism only, MiniLM discriminator, on CPU. MiniLM
    # cost 1.7x the CPU time per step of scratch:bert-mini (4.5 s against 2.7 s, one thread, busy machine),
    # but a randomly initialised encoder learns little in the few steps a 5-minute budget allows. The
    # discriminator is warmed up fast (after 30 steps at 2e-4, metrics.jsonl's disc_warmup/* read D(real) 0.80,
    # D(fake) 0.31), then trains at a learning rate 30x below the generator's; kl_coef 0.5 keeps most of the
    # diversity (the README's table compares 0.05, 0.2 and 0.5).
    "quick": dict(discriminator="minilm-l6", disc_max_length=32, prompts_per_step=16, k=4, gen_lr=3e-4,
                  disc_lr=1e-5, disc_warmup=30, disc_warmup_lr=2e-4, kl_coef=0.5, max_steps=50,
                  log_samples_every=10, checkpoint_every=25, eval_samples=500),
    # After `advgen pretrain --preset coco`: realism only, the quick recipe (fast discriminator warm-up, then a
    # discriminator 20x slower than the generator, kl_coef 0.5) run 6x longer, so the training curves settle
    # (the paper's COCO runs, experiments/run.py).
    "coco": dict(discriminator="minilm-l6", disc_max_length=48, prompts_per_step=16, k=4, gen_lr=2e-4,
                 disc_lr=1e-5, disc_warmup=50, disc_warmup_lr=2e-4, kl_coef=0.5, max_steps=300,
                 log_samples_every=25, checkpoint_every=25, eval_samples=1000),
    # The research setting on a GPU: after `advgen pretrain --preset paper` (gpt2 on reviews), BERT-base.
    "paper": dict(discriminator="bert-base-uncased", disc_max_length=256, prompts_per_step=16, k=4, gen_lr=1e-5,
                  disc_lr=2e-5, kl_coef=0.05, max_steps=2000, log_samples_every=100, checkpoint_every=200,
                  eval_samples=2000),
}


def validate_adversarial(cfg: AdversarialConfig) -> None:
    if not cfg.init:
        raise AdvgenError("--init is required: a run folder written by `advgen pretrain`")
    check_ranges(cfg, positive=["disc_max_length", "k", "prompts_per_step", "max_steps", "checkpoint_every",
                                "eval_samples", "nan_patience", "gen_lr", "disc_lr", "rollout_temperature", "is_clip",
                                "ppo_epochs", "ppo_clip"]
                 + [name for name in ("max_new_tokens", "disc_warmup_lr") if getattr(cfg, name) is not None],
                 non_negative=["w_realism", "w_style", "w_click", "w_content", "kl_coef", "entropy_coef", "clip", "weight_decay",
                               "disc_steps", "disc_warmup", "mle_coef", "mle_every", "log_samples_every", "collapse_distinct2",
                               "collapse_distinct_texts"])
    if not cfg.w_realism + cfg.w_style + cfg.w_click + cfg.w_content > 0:
        raise AdvgenError("the reward weights --w-realism, --w-style, --w-click and --w-content are all zero: "
                          "nothing to train for")
    for kind in ("style", "click"):
        if getattr(cfg, f"w_{kind}") > 0 and not getattr(cfg, f"{kind}_scorer"):
            raise AdvgenError(f"--w-{kind} {getattr(cfg, f'w_{kind}')} needs --{kind}-scorer (a folder written by "
                              f"`advgen train-scorer --kind {kind}`)")
    if cfg.baseline not in BASELINES:
        raise AdvgenError(f"--baseline must be one of {', '.join(BASELINES)}, got '{cfg.baseline}'")
    if cfg.baseline == "loo" and cfg.k < 2:
        raise AdvgenError(f"--baseline loo needs --k >= 2 samples per prompt, got {cfg.k}")
    if not 0 <= cfg.dense_discount <= 1:
        raise AdvgenError(f"--dense-discount must be in [0, 1], got {cfg.dense_discount}")
    if cfg.dense_rewards and not cfg.w_realism > 0:
        raise AdvgenError("--dense-rewards makes the realism reward dense: it needs --w-realism > 0")
    if cfg.dense_rewards and cfg.baseline == "self-critical":
        raise AdvgenError("--dense-rewards takes its baseline per position: use --baseline none, ema or loo")
    if not 0 <= cfg.disc_target_accuracy <= 1:
        raise AdvgenError(f"--disc-target-accuracy must be in [0, 1], got {cfg.disc_target_accuracy}")
    if not 0 <= cfg.disc_label_smoothing < 1:
        raise AdvgenError(f"--disc-label-smoothing must be in [0, 1), got {cfg.disc_label_smoothing}")
    if cfg.disc_dropout is not None and not 0 <= cfg.disc_dropout < 1:
        raise AdvgenError(f"--disc-dropout must be in [0, 1), got {cfg.disc_dropout}")
    if not 0 <= cfg.ema_decay <= 1:
        raise AdvgenError(f"--ema-decay must be in [0, 1], got {cfg.ema_decay}")
    for name in ("collapse_distinct2", "collapse_distinct_texts"):
        if getattr(cfg, name) > 1:
            raise AdvgenError(f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(cfg, name)}")


def resolve(cls, preset_table: dict, preset: Optional[str], flags: dict):
    """Defaults < preset < explicit flags (flags whose value is None were not given)."""
    values = dict(preset_table[preset]) if preset else {}
    values.update({k: v for k, v in flags.items() if v is not None})
    cfg = cls(**values)
    if not cfg.out:
        cfg.out = str(Path("runs") / (preset or "pretrain"))
    return cfg

