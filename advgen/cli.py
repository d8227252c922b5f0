"""The `advgen` command line: a click group; each command is a thin wrapper over one function."""
import dataclasses
import functools
import sys
import time
import typing

import click

from advgen import distributed
from advgen.config import (ADVERSARIAL_PRESETS, PRETRAIN_PRESETS, SCORER_PRESETS, AdversarialConfig,
                           PretrainConfig, ScorerConfig, resolve)
from advgen.errors import AdvgenError


def _comma_list(ctx, param, value):
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def options_from(cls):
    """One click option per dataclass field, its help text from the field's metadata. Options default to
    None, so a preset's value stands unless the flag is given."""
    def decorate(fn):
        for f in reversed(dataclasses.fields(cls)):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            kind = typing.get_args(f.type)[0] if typing.get_origin(f.type) is typing.Union else f.type
            name = f.name.replace('_', '-')
            if kind is bool:  # a --name/--no-name switch; None when neither is given
                fn = click.option(f"--{name}/--no-{name}", default=None, help=f"{f.metadata['help']} [default: {default}]")(fn)
                continue
            extra = {"callback": _comma_list, "type": str} if kind is list else {"type": kind}
            fn = click.option(f"--{name}", default=None, show_default=False,
                              help=f"{f.metadata['help']} [default: {default}]", **extra)(fn)
        return fn
    return decorate


OTHER_RANKS_WAIT_S = 5.0


def bad_input_exits_2(fn):
    """Bad input ends with one line on stderr and exit status 2, never a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except AdvgenError as e:
            if distributed.is_main():  # under torchrun every rank fails alike: one line, from rank 0
                click.echo(f"advgen: error: {e}", err=True)
            else:  # torchrun stops every rank once one exits: the others wait, so rank 0's line is written first
                time.sleep(OTHER_RANKS_WAIT_S)
            sys.exit(2)
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """Adversarial text generation for e-commerce: pretrain a generator, then train it against a discriminator."""
    from transformers.utils import logging

    logging.disable_progress_bar()  # advgen draws its own


@main.command()
@click.option("--preset", type=click.Choice(sorted(PRETRAIN_PRESETS)), default=None,
              help="named settings: quick (CPU, from scratch), smollm2 (packaged pretrained LM), paper (gpt2, GPU)")
@click.option("--resume", is_flag=True, help="continue the run in --out from its last checkpoint")
@options_from(PretrainConfig)
@bad_input_exits_2
def pretrain(preset, resume, **flags):
    """Train the generator by maximum likelihood; writes an HF-format run folder."""
    from advgen.pretrain import pretrain as run_pretrain

    cfg = resolve(PretrainConfig, PRETRAIN_PRESETS, preset, flags)
    run = run_pretrain(cfg, resume=resume)
    if distributed.is_main():
        click.echo(f"run folder: {run}")
        click.echo((run / "summary.json").read_text().strip())


@main.command()
@click.option("--preset", type=click.Choice(sorted(ADVERSARIAL_PRESETS)), default=None,
              help="named settings: quick (CPU, after `advgen pretrain --preset quick`), coco (after `--preset coco`), "
                   "paper (bert-base, GPU)")
@click.option("--resume", is_flag=True, help="continue the run in --out from its last checkpoint")
@options_from(AdversarialConfig)
@bad_input_exits_2
def adversarial(preset, resume, **flags):
    """Train a pretrained generator with policy gradients against a discriminator that keeps learning."""
    from advgen.adversarial import adversarial as run_adversarial

    run = run_adversarial(resolve(AdversarialConfig, ADVERSARIAL_PRESETS, preset, flags), resume=resume)
    if distributed.is_main():
        click.echo(f"run folder: {run}")
        click.echo((run / "summary.json").read_text().strip())


@main.command("train-scorer")
@click.option("--preset", type=click.Choice(sorted(SCORER_PRESETS)), default=None,
              help="named settings: quick (MiniLM on titles, CPU), reviews (MiniLM on reviews), paper (bert-base, GPU)")
@options_from(ScorerConfig)
@bad_input_exits_2
def train_scorer(preset, **flags):
    """Fine-tune a style or click-score classifier; writes an HF-format folder with scorer.json and summary.json."""
    from advgen.train_scorer import train_scorer as run_train_scorer

    folder = run_train_scorer(resolve(ScorerConfig, SCORER_PRESETS, preset, flags))
    if distributed.is_main():
        click.echo(f"scorer folder: {folder}")
        click.echo((folder / "summary.json").read_text().strip())


@main.command()
@click.argument("run", type=click.Path(path_type=str))
@click.option("--n", type=int, default=None, help="number of texts, prompted from the test split [default: 1000]")
@click.option("--inputs", type=click.Path(path_type=str), default=None,
              help="a .jsonl/.csv file of new items, each row with the run's condition fields (and its source field): "
                   "--num-samples texts per row, in the file's order, instead of --n test-split prompts")
@click.option("--num-samples", type=int, default=1, show_default=True, help="texts per --inputs row")
@click.option("--best-of", type=int, default=1, show_default=True,
              help="draw N texts per wanted text and keep the one --rerank-by rates best")
@click.option("--rerank-by", type=click.Path(path_type=str), default=None,
              help="a scorer folder (advgen train-scorer): style ranks by P(the prompt's label), click by P(engaged)")
@click.option("--out", type=click.Path(path_type=str), required=True, help="JSONL file to write")
@click.option("--condition", default=None, help="fixed condition values, e.g. department=Dresses,rating=5; "
              "unset condition fields are drawn from the test split")
@click.option("--temperature", type=float, default=1.0, show_default=True, help="0 is greedy")
@click.option("--top-k", type=int, default=0, show_default=True, help="0 is off")
@click.option("--top-p", type=float, default=1.0, show_default=True, help="1 is off")
@click.option("--min-p", type=float, default=0.0, show_default=True, help="0 is off")
@click.option("--repetition-penalty", type=float, default=1.0, show_default=True, help="1 is off")
@click.option("--max-new-tokens", type=int, default=None, help="[default: the run's --max-target-tokens]")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--compile", "compile_", is_flag=True, help="compile the decode step (CUDA graphs on GPU)")
@bad_input_exits_2
def sample(run, compile_, **kwargs):
    """Sample texts from a run's generator with advgen's batched sampler."""
    from advgen.evaluate import sample_run

    click.echo(f"wrote {sample_run(run, compile=compile_, **kwargs)}")


@main.command()
@click.argument("samples_or_run")
@click.option("--references", default="test", show_default=True,
              help="a split of the corpus (train, valid, test) or a .txt/.jsonl/.csv file")
@click.option("--metrics", "metric_names", callback=_comma_list, default=None,
              help="comma-separated from bleu, self-bleu, distinct, entropy, unique, ms-jaccard, fed, mauve, "
                   "validity, nll, paired, tags [default: all but tags; nll only for a run, validity only against a "
                   "split, paired in place of bleu when paired; tags: n samples per item of a run, ranked]")
@click.option("--out", required=True, help="JSON report to write")
@click.option("--n", type=int, default=0, help="samples to draw from a run [default: one per reference]")
@click.option("--temperature", type=float, default=1.0, show_default=True, help="sampling temperature for a run")
@click.option("--field", default="title", show_default=True,
              help="corpus field of the reference split, and of .jsonl/.csv files without a 'text' field, when SAMPLES_OR_RUN is a file")
@click.option("--tokenize", type=click.Choice(["whitespace", "words", "treebank"]), default="whitespace", show_default=True,
              help="n-gram tokens: str.split, word runs and punctuation marks, or NLTK's Treebank words")
@click.option("--max-n", type=int, default=4, show_default=True, help="largest n-gram order")
@click.option("--batch-size", type=int, default=64, show_default=True, help="sampling and NLL batch size for a run")
@click.option("--seed", type=int, default=0, show_default=True, help="sampling seed for a run; MAUVE's k-means seed")
@click.option("--protocol", type=click.Choice(["texygen"]), default=None,
              help="a published table's settings, replacing --metrics, --tokenize, --max-n and --n: texygen = BLEU-2..5 "
                   "and Self-BLEU-2..5, Treebank words, 10,000 samples from a run")
@click.option("--scorer", "scorer_folders", multiple=True, type=click.Path(path_type=str),
              help="a scorer folder, repeatable: a style scorer's share of samples with their prompt's label, "
                   "a click model's mean P(engaged)")
@click.option("--pairing", type=click.Choice(["auto", "paired", "unpaired"]), default="auto", show_default=True,
              help="paired: each sample against its own item's reference too (sacrebleu BLEU and chrF, ROUGE-L, exact "
                   "match), in place of BLEU against all references; auto: paired for a run with conditions or a "
                   "source, or a samples file with a 'reference' column")
@click.option("--tag-samples", type=int, default=10, show_default=True,
              help="the tags metric: samples per item, whose distinct tags are ranked by frequency")
@click.option("--tag-k", "tag_ks", default="1,3,5", show_default=True,
              callback=_comma_list,
              help="the tags metric: the k of precision@k and recall@k")
@click.option("--task-from", type=click.Path(path_type=str), default=None,
              help="a run folder whose task (corpus, splits, prompts, lengths) a bare model is measured on: then "
                   "SAMPLES_OR_RUN is a model spec, e.g. smollm2-135m, or another run folder")
@bad_input_exits_2
def evaluate(samples_or_run, references, metric_names, out, n, temperature, field, tokenize, max_n, batch_size, seed,
             protocol, scorer_folders, pairing, tag_samples, tag_ks, task_from):
    """Quality and diversity of samples (a .txt/.jsonl/.csv file, or drawn from a run folder, or from a bare model
    with --task-from RUN) against references."""
    from advgen.evaluate import evaluate as run_evaluate, table

    report = run_evaluate(samples_or_run, references, metric_names, out, n=n, temperature=temperature, field=field,
                          tokenize=tokenize, max_n=max_n, batch_size=batch_size, seed=seed, protocol=protocol,
                          scorer_folders=scorer_folders, pairing=pairing, tag_samples=tag_samples, tag_ks=tag_ks,
                          task_from=task_from)
    click.echo(table(report))
    click.echo(f"report: {out}")


@main.command()
@click.argument("file", type=click.Path(path_type=str))
@click.option("--scorer", "scorer_folders", multiple=True, type=click.Path(path_type=str), required=True,
              help="a scorer folder (advgen train-scorer), repeatable")
@click.option("--out", required=True, help="JSONL file to write: FILE's rows with one score per scorer")
@click.option("--field", default="text", show_default=True, help="the text column of a .jsonl/.csv FILE")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--device", default="auto", show_default=True)
@bad_input_exits_2
def score(file, scorer_folders, out, field, batch_size, device):
    """Score every text of a .txt/.jsonl/.csv file with style and click scorers (one score per text and scorer)."""
    from advgen.evaluate import score_file

    click.echo(f"wrote {score_file(file, list(scorer_folders), out, field=field, batch_size=batch_size, device=device)}")


@main.command()
@click.argument("runs", nargs=-1, required=True)
@click.option("--temperatures", default="0.6:1.4:0.1", show_default=True, help="start:stop:step (stop included) or a comma list")
@click.option("--n", type=int, default=2000, show_default=True, help="samples per run and temperature")
@click.option("--out", default="sweep", show_default=True, help="folder for sweep.csv, sweep.png and samples/")
@click.option("--top-p", type=float, default=1.0, show_default=True, help="nucleus sampling threshold")
@click.option("--tokenize", type=click.Choice(["whitespace", "words", "treebank"]), default="whitespace", show_default=True,
              help="n-gram tokens: str.split, word runs and punctuation marks, or NLTK's Treebank words")
@click.option("--batch-size", type=int, default=64, show_default=True, help="sampling and NLL batch size")
@click.option("--seed", type=int, default=0, show_default=True, help="sampling seed (the same at every temperature)")
@click.option("--realism/--no-realism", default=True, show_default=True,
              help="score each point's samples with the run's discriminator, where it has one")
@click.option("--resume", is_flag=True, help="keep the points already in OUT/sweep.csv (with their samples) and sweep the rest")
@bad_input_exits_2
def sweep(runs, temperatures, n, out, top_p, tokenize, batch_size, seed, realism, resume):
    """Sample each run across temperatures: quality (BLEU-2..5, test NLL, realism) against diversity (Self-BLEU-2..5, distinct-n)."""
    from advgen.evaluate import parse_temperatures, sweep as run_sweep

    run_sweep(list(runs), parse_temperatures(temperatures), n, out, top_p=top_p, batch_size=batch_size, seed=seed,
              tokenize=tokenize, realism=realism, resume=resume, progress=click.echo)
    click.echo(f"wrote {out}/sweep.csv, {out}/sweep.png and {out}/samples/")


if __name__ == "__main__":
    main()
