"""The `advgen` command line: a click group; each command is a thin wrapper over one function."""
import dataclasses
import functools
import sys
import typing

import click

from advgen.config import PRETRAIN_PRESETS, AdvgenError, PretrainConfig, resolve


def _comma_list(ctx, param, value):
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def options_from(cls):
    """One click option per dataclass field, its help text from the field's metadata. Options default to
    None, so a preset's value stands unless the flag is given."""
    def decorate(fn):
        for f in reversed(dataclasses.fields(cls)):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            kind = typing.get_args(f.type)[0] if typing.get_origin(f.type) is typing.Union else f.type
            extra = {"callback": _comma_list, "type": str} if kind is list else {"type": kind}
            fn = click.option(f"--{f.name.replace('_', '-')}", default=None, show_default=False,
                              help=f"{f.metadata['help']} [default: {default}]", **extra)(fn)
        return fn
    return decorate


def bad_input_exits_2(fn):
    """Bad input ends with one line on stderr and exit status 2, never a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except AdvgenError as e:
            click.echo(f"advgen: error: {e}", err=True)
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
    click.echo(f"run folder: {run}")
    click.echo((run / "summary.json").read_text().strip())


@main.command()
@click.argument("run", type=click.Path(path_type=str))
@click.option("--n", type=int, default=1000, show_default=True, help="number of texts")
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
    from advgen.sampling import sample_run

    click.echo(f"wrote {sample_run(run, compile=compile_, **kwargs)}")


if __name__ == "__main__":
    main()
