"""The typer app that gathers the stage commands: `python -m pipeline --help`."""

import typer

from pipeline import config  # noqa: F401  (sets TensorFlow's environment before any stage imports it)
from pipeline.bench import recommend_bench, serve_bench, train_bench
from pipeline.data import download, preprocess, synth
from pipeline.evaluation import check_repro, evaluate, report, tune
from pipeline.retrieval import ease
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
app.command("retrieval")(ease.retrieval_command)
app.command("candidates")(ranker.candidates_command)
app.command("train")(train.train_command)
app.command("evaluate")(evaluate.evaluate_command)
app.command("report")(report.report_command)
app.command("check-repro")(check_repro.check_repro_command)
app.command("tune")(tune.tune_command)
app.command("recommend")(terminal.recommend_command)
app.command("recommend-all")(terminal.recommend_all_command)
app.command("precompute")(terminal.precompute_command)
app.command("bench")(recommend_bench.bench_command)
app.command("serve")(service.serve_command)
app.command("bench-serve")(serve_bench.bench_serve_command)
app.command("synth")(synth.synth_command)
app.command("bench-train")(train_bench.bench_train_command)
