"""What the Makefile asks of config.py: the model lists of each path, and one settings file per model.

A model is rebuilt when *its own* resolved settings change, not when config.py changes as a file:
`write` keeps artifacts/models/[<split>/]<name>.settings.json equal to the model's settings and rewrites
a file only when its content changes, so Make sees a new timestamp only then.

The training options are the TrainConfig fields declared with config.option; `python -m pipeline train`'s
options (pipeline.training.train), the parsing of `--set field=value` here and the Makefile's TRAIN_OPTIONS
(written into models.mk) are all made from that one declaration.

Training options given on the command line (`make train MODEL=x EPOCHS=2`) are one-off overrides:
they are stored in x's settings file and stay there (a later plain `make all` does not undo them, it
names them in a NOTE line) until `make train MODEL=x` is run without options, which trains x at
its defaults again.

The stages that are not models have settings files too, holding only what they read from config.py:
data/processed/preprocess.settings.json (the feature schema and the split), models/[<split>/]retrieval
.settings.json (EASE's L2) and artifacts/evaluate.settings.json (the protocols' sizes).

Standard library only: the Makefile runs this with the system's Python before .venv exists.
    python3 -m pipeline.settings_files makefile       the model lists as Make variables (the Makefile includes them)
    python3 -m pipeline.settings_files write [--model NAME --split SPLIT --set field=value ...]
    python3 -m pipeline.settings_files check [the same options]   (prints one error line, or nothing)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from pipeline import config, config_evaluation, config_serving

PATHS = {"product": config.PRODUCT_MODELS, "study": config.STUDY_MODELS}


class SettingsError(ValueError):
    """A user mistake in MODEL=, SPLIT= or a training option; the message is the one line shown."""


def settings_path(name: str, split: str, models_dir: Path = config.MODELS_DIR) -> Path:
    return config.model_path(name, split, models_dir).with_suffix(".settings.json")


def every_model() -> list[tuple[str, str]]:
    """(name, split) of every model any path trains, in a fixed order."""
    pairs = [(name, split) for path in PATHS.values() for split, names in path.items() for name in names]
    return list(dict.fromkeys(pairs))


# The training options: the TrainConfig fields declared with config.option, in TrainConfig's order.
OPTIONS = {field.name: field for field in dataclasses.fields(config.TrainConfig) if "option" in field.metadata}


def kind(field: dataclasses.Field) -> str:
    """The field's type as written in TrainConfig: "int", "float", "bool", "str" or "tuple[int, ...]"."""
    return field.type if isinstance(field.type, str) else field.type.__name__


def flag(field: dataclasses.Field) -> str:
    """The option's spelling in `python -m pipeline train`: --batch-size, --lr, --fresh-negatives/--fixed-negatives."""
    return field.metadata["option"] or "--" + field.name.replace("_", "-")


def make_variable(field: dataclasses.Field) -> str:
    """The option's variable in `make train`, e.g. BATCH_SIZE, LR."""
    return field.metadata["make"] or field.name.upper()


def parse_units(text: str) -> tuple[int, ...]:
    """A tuple[int, ...] option's value: a comma list such as "32,32" or "(64, 16)"; "" is ()."""
    return tuple(int(part) for part in text.strip().strip("()").replace(" ", "").split(",") if part)


def parse_value(field: dataclasses.Field, text: str):
    """A command-line value as the TrainConfig field's type, within its declared limits."""
    try:
        if kind(field).startswith("tuple"):
            return parse_units(text)
        if kind(field) == "bool":
            if text.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("1", "true", "yes")
        value = {"int": int, "float": float}.get(kind(field), str)(text)
    except ValueError:
        raise SettingsError(f"{field.name} must be {kind(field)}, not {text!r}") from None
    limits = field.metadata
    if limits["choices"] and value not in limits["choices"]:
        raise SettingsError(f"{field.name} must be one of {', '.join(limits['choices'])}, not {text!r}")
    if limits["min"] is not None and value < limits["min"]:
        raise SettingsError(f"{field.name} must be >= {limits['min']}, not {text!r}")
    if limits["max"] is not None and value > limits["max"]:
        raise SettingsError(f"{field.name} must be <= {limits['max']}, not {text!r}")
    return value


def parse_overrides(assignments: list[str]) -> dict:
    """The overrides `field=value` assignments give; SettingsError for a field that is not a training option."""
    overrides = {}
    for assignment in assignments:
        key, _, value = assignment.partition("=")
        if key not in OPTIONS:
            raise SettingsError(f"unknown training option {key!r}; the options are {', '.join(OPTIONS)}")
        overrides[key] = parse_value(OPTIONS[key], value)
    return overrides


def resolved(name: str, split: str, overrides: dict) -> dict:
    """The settings file's content: the model's settings on `split` (config.model_settings) with `overrides`."""
    cfg = dataclasses.replace(config.model_settings(name, split), **overrides)
    return {"model": name, "fields": list(config.FIELDS), "config": dataclasses.asdict(cfg), "overrides": overrides}


def write_if_changed(path: Path, content: dict) -> bool:
    """Write `content` as JSON to `path` unless the file already holds exactly that (its timestamp then stays)."""
    text = json.dumps(content, indent=2, sort_keys=True) + "\n"
    if path.is_file() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


def checked_overrides(model: str | None, split: str, assignments: list[str]) -> dict:
    """The overrides `assignments` give `model`; SettingsError for an unknown model, split or option."""
    if model is not None and model not in config.MODELS:
        raise SettingsError(f"unknown model {model!r}; MODEL= takes one of {', '.join(config.MODELS)}")
    if split not in config.SPLITS:
        raise SettingsError(f"unknown split {split!r}; SPLIT= takes one of {', '.join(config.SPLITS)}")
    if assignments and model is None:
        raise SettingsError("training options apply to one model: make train MODEL=<name> " + " ".join(assignments))
    return parse_overrides(list(assignments))


def write_all(
    models_dir: Path,
    model: str | None = None,
    split: str = "random",
    assignments: list[str] = (),
    processed_dir: Path = config.PROCESSED_DIR,
    artifacts_dir: Path = config.ARTIFACTS_DIR,
) -> list[str]:
    """Bring every settings file up to date; `model` (with its `assignments`, possibly none) replaces that
    model's overrides. Returns one NOTE line per model that keeps overrides."""
    given = checked_overrides(model, split, list(assignments))
    for path, content in stage_settings(processed_dir, models_dir, artifacts_dir).items():
        write_if_changed(path, content)
    notes = []
    for name, model_split in {*every_model(), *([(model, split)] if model else [])}:
        path = settings_path(name, model_split, models_dir)
        if (name, model_split) == (model, split):
            overrides = given
        else:
            kept = json.loads(path.read_text()).get("overrides", {}) if path.is_file() else {}
            overrides = {key: value for key, value in kept.items() if key in OPTIONS}
            overrides = {key: tuple(value) if isinstance(value, list) else value for key, value in overrides.items()}
        write_if_changed(path, resolved(name, model_split, overrides))
        if overrides:
            shown = ", ".join(f"{key}={value}" for key, value in sorted(overrides.items()))
            where = "" if model_split == "random" else f" SPLIT={model_split}"
            notes.append(
                f"NOTE: {name} ({model_split}) keeps the one-off options {shown}; "
                f"`make train MODEL={name}{where}` trains it at its defaults again"
            )
    return sorted(notes)


def stage_settings(processed_dir: Path, models_dir: Path, artifacts_dir: Path) -> dict[Path, dict]:
    """The settings files of the stages that are not models, with what each stage reads from config.py."""
    stages = {
        processed_dir / "preprocess.settings.json": {
            "fields": config.FIELDS,
            "user_fields": config.USER_FIELDS,
            "movie_fields": config.MOVIE_FIELDS,
            "context_fields": config.CONTEXT_FIELDS,
            "genre_placeholder": config.GENRE_PLACEHOLDER,
            "like_threshold": config.LIKE_THRESHOLD,
            "test_size": config.TEST_SIZE,
            "split_seed": config.SPLIT_SEED,
        }
    }
    for split in config.SPLITS:
        stages[retrieval_settings_path(split, models_dir)] = {"ease_l2": config.EASE_L2, "retrieval": config.RETRIEVAL}
        lists_of = config.model_settings(config.model_name(config.DEFAULT_ARCHITECTURE), split)
        stages[config.model_path("candidate_lists", split, models_dir).with_suffix(".settings.json")] = {
            "ease_l2": config.EASE_L2,
            "retrieval": config.RETRIEVAL,
            **{name: getattr(lists_of, name) for name in config.LIST_SETTINGS},
        }
    stages[artifacts_dir / "evaluate.settings.json"] = {
        "top_n": config.TOP_N,
        "positive_rate_prior": config.POSITIVE_RATE_PRIOR,
        "product": config.PRODUCT_MODELS,
        "study": config.STUDY_MODELS,
    }
    stages[artifacts_dir / "study" / "newcomers.settings.json"] = {
        "top_n": config.TOP_N,
        "newcomers": config_evaluation.NEWCOMERS,
        "newcomer_lists": config.NEWCOMER_LISTS,
        "ranker": dataclasses.asdict(config.MODELS[config.model_name(config.DEFAULT_ARCHITECTURE)]),
        "ease_l2": config.EASE_L2,
        "retrieval": config.RETRIEVAL,
    }
    return stages


def retrieval_settings_path(split: str, models_dir: Path) -> Path:
    return config.model_path("retrieval", split, models_dir).with_suffix(".settings.json")


def makefile_variables(models_dir: Path) -> str:
    """The model lists and the training options (field=MAKE_VARIABLE) as Make variable assignments (the
    Makefile includes them; config.py is their source)."""

    def files(pairs, suffix=".keras"):
        return " ".join(str(config.model_path(name, split, models_dir).with_suffix(suffix)) for name, split in pairs)

    def pairs_of(path):
        return [(name, split) for split, names in PATHS[path].items() for name in names]

    def litert_files(names, variants=("float32",)):
        return " ".join(str(config.litert_path(name, "random", models_dir, v)) for v in variants for name in names)

    every = every_model()
    served = config.models_of(*config.SERVED_MODES)
    variables = {
        "PRODUCT_MODEL_FILES": files(pairs_of("product")),
        "STUDY_MODEL_FILES": files(pairs_of("study")),
        "REFERENCE_MODEL_FILES": files((name, "random") for name in config.REFERENCE_MODELS),
        "FIELD_MODEL_FILES": files(pair for pair in every if not config.MODELS[pair[0]].candidates),
        "TWO_STAGE_MODEL_FILES": files(pair for pair in every if config.MODELS[pair[0]].candidates),
        "SERVED_MODEL_FILES": files((name, "random") for name in served),
        "DEFAULT_MODEL_FILES": files((name, "random") for name in config.TWO_STAGE_MODELS),
        # Their LiteRT files (make export), which the serving paths run; the quantized ones for make bench-litert.
        "SERVED_LITERT_FILES": litert_files(served),
        "DEFAULT_LITERT_FILES": litert_files(config.TWO_STAGE_MODELS),
        "QUANTIZED_LITERT_FILES": litert_files(
            served, [v for v in config_serving.LITERT["variants"] if v != "float32"]
        ),
        "PRECOMPUTED": " ".join(
            str(models_dir.parent / "precomputed" / f"{name}.parquet") for name in config.TWO_STAGE_MODELS
        ),
        "MODEL_SETTINGS_FILES": files(every, ".settings.json"),
        "MODEL_NAMES": " ".join(config.MODELS),
        "DEFAULT_MODEL": config.model_name(config.DEFAULT_ARCHITECTURE),
        "TRAIN_OPTIONS": " ".join(f"{name}={make_variable(field)}" for name, field in OPTIONS.items()),
    }
    return "".join(f"{key} := {value}\n" for key, value in variables.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m pipeline.settings_files", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    makefile = commands.add_parser("makefile", help="The model lists and the training options as Make variables.")
    makefile.add_argument("--models-dir", type=Path, default=Path("artifacts/models"))
    write = commands.add_parser("write", help="Bring every settings file up to date.")
    check = commands.add_parser("check", help="Only check MODEL=, SPLIT= and the options (one error line).")
    for command in (write, check):
        command.add_argument("--model", default=None)
        command.add_argument("--split", default="random")
        command.add_argument(
            "--set",
            dest="assignments",
            action="append",
            default=[],
            metavar="FIELD=VALUE",
            help=f"A training option: {', '.join(OPTIONS)}.",
        )
    write.add_argument("--models-dir", type=Path, default=Path("artifacts/models"))
    write.add_argument("--processed-dir", type=Path, default=Path("data/processed"))
    write.add_argument("--artifacts-dir", type=Path, default=Path("artifacts"))
    args = parser.parse_args(argv)
    if args.command == "makefile":
        print(makefile_variables(args.models_dir), end="")
        return 0
    try:
        if args.command == "check":
            checked_overrides(args.model or None, args.split, args.assignments)
            return 0
        notes = write_all(
            args.models_dir, args.model or None, args.split, args.assignments, args.processed_dir, args.artifacts_dir
        )
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for note in notes:
        print(note, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
