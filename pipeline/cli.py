"""The typer app that gathers the stage commands: `python -m pipeline --help`; `main` runs it."""

import sys

import typer

from pipeline import config, manifests  # noqa: F401  (config: TensorFlow's environment before any stage imports it)
from pipeline.bench import litert_bench, recommend_bench, scale_bench, serve_bench, train_bench
from pipeline.data import download, preprocess, synth
from pipeline.evaluation import check_repro, evaluate, newcomers, report, tune
from pipeline.files import describe_os_error
from pipeline.ranking import export
from pipeline.retrieval import retriever
from pipeline.serving import service, terminal
from pipeline.training import ranker, train

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="MovieLens 1M recommender: download → preprocess → retrieval → train → evaluate → report → recommend.",
)
app.command("download")(download.download_command)
app.command("preprocess")(preprocess.preprocess_command)
app.command("retrieval")(retriever.retrieval_command)
app.command("candidates")(ranker.candidates_command)
app.command("train")(train.train_command)
app.command("evaluate")(evaluate.evaluate_command)
app.command("newcomers")(newcomers.newcomers_command)
app.command("report")(report.report_command)
app.command("export")(export.export_command)
app.command("check-repro")(check_repro.check_repro_command)
app.command("tune")(tune.tune_command)
app.command("recommend")(terminal.recommend_command)
app.command("recommend-all")(terminal.recommend_all_command)
app.command("precompute")(terminal.precompute_command)
app.command("bench")(recommend_bench.bench_command)
app.command("serve")(service.serve_command)
app.command("bench-serve")(serve_bench.bench_serve_command)
app.command("bench-litert")(litert_bench.bench_litert_command)
app.command("synth")(synth.synth_command)
app.command("bench-train")(train_bench.bench_train_command)
app.command("bench-scale")(scale_bench.bench_scale_command)


def main() -> None:
    """`python -m pipeline`: the app, where a damaged or missing input that a stage did not handle itself, and an
    error of the file system (disk full, permission denied, read-only), end in one line on stderr and exit code
    2, never a traceback. Nothing is half written (pipeline.files.atomic_path); other errors are bugs and raise."""
    try:
        app(prog_name="python -m pipeline")
    except manifests.ArtifactError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)
    except OSError as error:
        if error.errno not in manifests.FILE_SYSTEM_ERRNOS:
            raise
        typer.echo(f"error: {describe_os_error(error)}", err=True)
        sys.exit(2)
