"""The typer app that gathers the stage commands: `python -m pipeline --help`."""

import typer

from pipeline import (
    bench,
    bench_serve,
    bench_train,
    check_repro,
    config,  # noqa: F401  (sets TensorFlow's environment before any stage imports it)
    download,
    evaluate,
    preprocess,
    recommend,
    report,
    retrieval,
    serve,
    synth,
    train,
    tune,
)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="MovieLens 1M recommender: download → preprocess → retrieval → train → evaluate → report → recommend.",
)
app.command("download")(download.download_command)
app.command("preprocess")(preprocess.preprocess_command)
app.command("retrieval")(retrieval.retrieval_command)
app.command("train")(train.train_command)
app.command("evaluate")(evaluate.evaluate_command)
app.command("report")(report.report_command)
app.command("check-repro")(check_repro.check_repro_command)
app.command("tune")(tune.tune_command)
app.command("recommend")(recommend.recommend_command)
app.command("recommend-all")(recommend.recommend_all_command)
app.command("precompute")(recommend.precompute_command)
app.command("bench")(bench.bench_command)
app.command("serve")(serve.serve_command)
app.command("bench-serve")(bench_serve.bench_serve_command)
app.command("synth")(synth.synth_command)
app.command("bench-train")(bench_train.bench_train_command)
