# MovieLens 1M → DeepCTR AutoInt / AutoInt+MLP. Each target names the files it needs and makes, so a second
# `make all` redoes nothing that is up to date. Needs GNU make 4.3 or newer (grouped targets).
#   make all         the product: install, download, preprocess, retrieval, the rankers' candidate lists, the
#                    reference and default models, their evaluation, the report, and user 3's recommendations
#   make test        the test suite (generated data, no network); make test-slow: multi-process runs, the study rankers
#   make study       everything else: tuned and sampled-negative models, the temporal split, the other rankers,
#                    the newcomer curve (make newcomers)
#   make recommend USER=3 [ARCHITECTURE=autoint|autoint_mlp|both MODE=two_stage|reference YEAR=2001 MONTH=5 N=10]
#   make recommend LIKED="2571,1196,260" [GENDER=F AGE=25 OCCUPATION=4]
#   make train MODEL=<name> [SPLIT=temporal EPOCHS=2 LR=1e-3 ...]   (see docs/training.md)

ifeq ($(filter grouped-target,$(.FEATURES)),)
$(error this Makefile needs GNU make 4.3 or newer (grouped targets); this is make $(MAKE_VERSION))
endif

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DEPS   := $(VENV)/.installed
# First, outputs unlike their manifests (pipeline/manifests.py) are moved aside: make rebuilds them and what needs them.
SWEPT  := $(shell $(PYTHON) -m pipeline.manifests sweep data artifacts)

RAW       := data/ml-1m
PROCESSED := data/processed
MODELS    := artifacts/models
RAW_FILES := $(RAW)/ratings.dat $(RAW)/movies.dat $(RAW)/users.dat
ENCODERS  := $(PROCESSED)/encoders.json
RETRIEVAL := $(MODELS)/retrieval.npz
TEMPORAL_RETRIEVAL := $(MODELS)/temporal/retrieval.npz
METRICS   := artifacts/metrics.json
STUDY_METRICS := artifacts/study/metrics.json
REPRO_METRICS := artifacts/repro/metrics.json
REPORT    := artifacts/report.md
NEWCOMERS := artifacts/study/newcomers.json

# The model lists, made from pipeline/config.py (their one source): PRODUCT_MODEL_FILES, STUDY_MODEL_FILES,
# REFERENCE_MODEL_FILES, FIELD_MODEL_FILES, TWO_STAGE_MODEL_FILES, SERVED_MODEL_FILES, DEFAULT_MODEL_FILES,
# PRECOMPUTED (the default models' Top-100 tables), MODEL_SETTINGS_FILES.
LISTS := $(MODELS)/models.mk
include $(LISTS)
$(LISTS): pipeline/config.py pipeline/config_serving.py pipeline/settings_files.py
	@mkdir -p $(dir $@)
	@$(PYTHON) -m pipeline.settings_files makefile > $@.tmp && mv $@.tmp $@

# Every model and stage has a settings file that changes only when its own settings in config.py do
# (pipeline/settings_files.py), so editing a comment or another model's settings retrains nothing.
# Training options on the command line go to MODEL's settings and stay until `make train MODEL=<name>`.
# TRAIN_OPTIONS (from models.mk) pairs each training option with its variable, e.g. learning_rate=LR: the
# TrainConfig fields config.py declares with config.option, as `python -m pipeline train --help` lists them.
SETS := $(foreach option,$(TRAIN_OPTIONS),$(if $($(lastword $(subst =, ,$(option)))),--set "$(firstword $(subst =, ,$(option)))=$($(lastword $(subst =, ,$(option))))"))
SPLIT ?= random
SETTINGS_ARGS := $(if $(filter train,$(MAKECMDGOALS)),$(if $(MODEL),--model "$(MODEL)" --split "$(SPLIT)")) $(SETS)
STAGE_SETTINGS := $(PROCESSED)/preprocess.settings.json $(MODELS)/retrieval.settings.json \
	$(MODELS)/temporal/retrieval.settings.json $(MODELS)/candidate_lists.settings.json \
	$(MODELS)/temporal/candidate_lists.settings.json artifacts/evaluate.settings.json \
	artifacts/study/newcomers.settings.json
$(MODEL_SETTINGS_FILES) $(STAGE_SETTINGS) &: FORCE
	@$(PYTHON) -m pipeline.settings_files write $(SETTINGS_ARGS)
FORCE:
# A typo in MODEL= (or MODEL=both, or a bad option) stops make here, in one line, before anything runs.
ifneq ($(strip $(SETTINGS_ARGS)),)
SETTINGS_PROBLEM := $(shell $(PYTHON) -m pipeline.settings_files check $(SETTINGS_ARGS) 2>&1)
ifneq ($(SETTINGS_PROBLEM),)
$(error $(SETTINGS_PROBLEM))
endif
endif

# Optional settings. USER is also the login name in the environment, so only a USER given on the make
# command line counts as a user ID; otherwise user 3.
SOURCE ?=
MODEL  ?=
# A model is an architecture trained in a mode (a file: MODEL= of make train); make recommend picks an
# ARCHITECTURE (and a MODE). MODEL= is still taken there as ARCHITECTURE's old name.
ARCHITECTURE ?= $(if $(filter train,$(MAKECMDGOALS)),,$(MODEL))
RECOMMEND_USER := $(if $(filter command line,$(origin USER)),$(USER),3)
RECOMMEND_ARGS := $(if $(LIKED),--liked "$(LIKED)",--user "$(RECOMMEND_USER)") \
	$(if $(ARCHITECTURE),--architecture $(ARCHITECTURE)) \
	$(if $(MODE),--mode $(MODE)) $(if $(YEAR),--year $(YEAR)) $(if $(MONTH),--month $(MONTH)) $(if $(N),--n $(N)) \
	$(if $(GENDER),--gender $(GENDER)) $(if $(AGE),--age $(AGE)) $(if $(OCCUPATION),--occupation $(OCCUPATION))
HOST ?= 127.0.0.1
PORT ?= 8000

# The code each file is made by (a model is retrained when the code that trains it changes, not other code).
PREPROCESS_CODE := pipeline/data/raw_files.py pipeline/data/fields.py pipeline/data/splits.py pipeline/data/processed.py \
	pipeline/data/preprocess.py
DATA_CODE := $(PREPROCESS_CODE) pipeline/data/history.py
RETRIEVAL_CODE := $(wildcard pipeline/retrieval/*.py)
FIELD_TRAIN_CODE := pipeline/training/train.py pipeline/training/sampling.py pipeline/training/callbacks.py \
	pipeline/ranking/architecture.py $(DATA_CODE)
LIST_CODE := pipeline/ranking/candidates.py pipeline/ranking/list_shards.py pipeline/ranking/ranker_inputs.py \
	$(RETRIEVAL_CODE)
TWO_STAGE_TRAIN_CODE := pipeline/training/train.py pipeline/training/ranker.py pipeline/training/callbacks.py \
	pipeline/training/list_streaming.py pipeline/training/distributed.py pipeline/ranking/architecture.py \
	$(LIST_CODE) $(DATA_CODE)
SCORING_CODE := pipeline/ranking/scorers.py pipeline/ranking/model_files.py pipeline/ranking/runtimes.py $(LIST_CODE)
EXPORT_CODE := pipeline/ranking/export.py pipeline/ranking/model_files.py
EVALUATE_CODE := pipeline/evaluation/evaluate.py pipeline/evaluation/metrics.py pipeline/evaluation/baselines.py \
	pipeline/evaluation/tables.py $(SCORING_CODE) $(DATA_CODE)
RECOMMENDER_CODE := pipeline/serving/errors.py pipeline/serving/served_data.py pipeline/serving/served_models.py \
	pipeline/serving/recommender.py

.PHONY: all study newcomers install download preprocess retrieval candidates train evaluate report export export-quantized precompute \
	recommend recommend-all check-repro \
	repro tune test test-slow lint bench bench-litert app serve bench-serve clean clean-tuning synth bench-train bench-scale synthetic
.DEFAULT_GOAL := all

# DATA=synthetic-1M|synthetic-5M|synthetic-25M runs the product path on SYNTHETIC data instead (rules at the end).
# Only a DATA given on the make command line counts (an environment variable of that name does not).
DATA := $(if $(filter command line,$(origin DATA)),$(DATA))
ifeq ($(DATA),)
all: $(REPORT) recommend
else
all: synthetic
endif

study: $(STUDY_METRICS) $(NEWCOMERS) artifacts/litert_bench.json
	$(PY) -m pipeline report

install: $(DEPS)
$(DEPS): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $@

download: $(RAW_FILES)
$(RAW_FILES) &: | $(DEPS)
	$(PY) -m pipeline download $(if $(SOURCE),--source "$(SOURCE)")

preprocess: $(ENCODERS)
$(ENCODERS): $(RAW_FILES) $(PROCESSED)/preprocess.settings.json $(PREPROCESS_CODE) | $(DEPS)
	$(PY) -m pipeline preprocess

retrieval: $(RETRIEVAL)
$(RETRIEVAL): $(ENCODERS) $(MODELS)/retrieval.settings.json $(RETRIEVAL_CODE) | $(DEPS)
	$(PY) -m pipeline retrieval --split random
$(TEMPORAL_RETRIEVAL): $(ENCODERS) $(MODELS)/temporal/retrieval.settings.json $(RETRIEVAL_CODE) | $(DEPS)
	$(PY) -m pipeline retrieval --split temporal

# `make train` trains the product's models; MODEL=<name> (and SPLIT=temporal) one model.
TRAIN_TARGET := $(if $(MODEL),$(MODELS)/$(if $(filter temporal,$(SPLIT)),temporal/)$(MODEL).keras,$(PRODUCT_MODEL_FILES))
train: $(TRAIN_TARGET)
split_of = $(if $(filter temporal/%,$(1)),temporal,random)
$(FIELD_MODEL_FILES): $(MODELS)/%.keras: $(MODELS)/%.settings.json $(ENCODERS) $(FIELD_TRAIN_CODE) | $(DEPS)
	$(PY) -m pipeline train --model $(notdir $*) --split $(call split_of,$*) --settings $< $(if $(WORKERS),--workers $(WORKERS))
# The two-stage rankers of a split share one set of out-of-fold candidate lists, built once (`make candidates`).
# The lists are a folder of parquet shards (one per fold) whose lists.json is written last: make's target.
# WORKERS=N trains on N workers streamed from those shards; STREAMING=1 streamed on one process.
lists_of = $(MODELS)/$(if $(filter temporal/%,$(1)),temporal/)candidate_lists
.SECONDEXPANSION:
$(TWO_STAGE_MODEL_FILES): $(MODELS)/%.keras: $(MODELS)/%.settings.json $$(call lists_of,$$*)/lists.json $(ENCODERS) \
		$(TWO_STAGE_TRAIN_CODE) | $(DEPS)
	$(PY) -m pipeline train --model $(notdir $*) --split $(call split_of,$*) --settings $< \
		--candidate-lists $(call lists_of,$*) $(if $(WORKERS),--workers $(WORKERS)) $(if $(STREAMING),--streaming)
candidates: $(MODELS)/candidate_lists/lists.json
$(MODELS)/candidate_lists/lists.json $(MODELS)/temporal/candidate_lists/lists.json: $(MODELS)/%candidate_lists/lists.json: \
		$(MODELS)/%candidate_lists.settings.json $(ENCODERS) $(LIST_CODE) pipeline/training/ranker.py | $(DEPS)
	$(PY) -m pipeline candidates --split $(if $*,temporal,random)

evaluate: $(METRICS)
$(METRICS): $(PRODUCT_MODEL_FILES) $(RETRIEVAL) $(ENCODERS) artifacts/evaluate.settings.json $(EVALUATE_CODE) | $(DEPS)
	$(PY) -m pipeline evaluate --path product

$(STUDY_METRICS): $(STUDY_MODEL_FILES) $(RETRIEVAL) $(TEMPORAL_RETRIEVAL) $(ENCODERS) artifacts/evaluate.settings.json \
		$(EVALUATE_CODE) | $(DEPS)
	$(PY) -m pipeline evaluate --path study

# The newcomer curve (part of make study): held-out users given their first 1, 3, 5, 10 liked movies. Its
# retrieval model and ranker, trained without those users, stay in artifacts/models/newcomers/ between runs.
newcomers: $(NEWCOMERS)
$(NEWCOMERS): $(ENCODERS) artifacts/study/newcomers.settings.json $(EVALUATE_CODE) $(TWO_STAGE_TRAIN_CODE) \
		pipeline/evaluation/newcomers.py | $(DEPS)
	$(PY) -m pipeline newcomers

# The report reads whatever the runs left: make all's metrics, the study's and make tune's when present.
report: $(REPORT)
$(REPORT): $(METRICS) $(wildcard $(STUDY_METRICS) $(NEWCOMERS) artifacts/tuning.json) pipeline/evaluation/report.py \
		pipeline/evaluation/report_sections.py pipeline/evaluation/plots.py pipeline/labels.py \
		pipeline/config_evaluation.py | $(DEPS)
	$(PY) -m pipeline report

# The served models as LiteRT files beside their .keras files, which every serving path (recommend, precompute,
# the page, the service) runs without TensorFlow; export-quantized adds their int8 and float16 variants, which
# make bench-litert measures against float32 (pipeline/ranking/export.py).
# One model at a time, so that a retrained model re-exports only itself (and only its own table is redone).
export: $(SERVED_LITERT_FILES)
$(SERVED_LITERT_FILES): $(MODELS)/%.tflite: $(MODELS)/%.keras $(EXPORT_CODE) | $(DEPS)
	$(PY) -m pipeline export --model $*
export-quantized: $(QUANTIZED_LITERT_FILES)
$(MODELS)/%.int8.tflite $(MODELS)/%.float16.tflite: $(MODELS)/%.keras $(EXPORT_CODE) | $(DEPS)
	$(PY) -m pipeline export --model $* --variant int8 --variant float16

# Every user's default Top-100 of the two-stage models, which recommend, the page and the service answer
# default requests from (anything else is scored when asked).
precompute: $(PRECOMPUTED)
$(PRECOMPUTED) &: $(DEFAULT_LITERT_FILES) $(RETRIEVAL) $(ENCODERS) $(RECOMMENDER_CODE) pipeline/serving/terminal.py \
		$(SCORING_CODE) | $(DEPS)
	$(PY) -m pipeline precompute

recommend: $(SERVED_LITERT_FILES) $(RETRIEVAL) $(ENCODERS) $(PRECOMPUTED)
	$(PY) -m pipeline recommend $(RECOMMEND_ARGS)

recommend-all: $(SERVED_LITERT_FILES) $(RETRIEVAL) $(ENCODERS)
	$(PY) -m pipeline recommend-all $(if $(ARCHITECTURE),--architecture $(ARCHITECTURE)) $(if $(MODE),--mode $(MODE)) \
		$(if $(N),--n $(N))

# The reproduction check: the reference-protocol numbers of both reference models within tolerance of the
# original project's published table, on make all's metrics.
check-repro: $(METRICS)
	$(PY) -m pipeline check-repro --metrics $(METRICS)

# What CI runs after the tests: real ML-1M through download and preprocess, the two reference models, their
# evaluation beside the baselines (artifacts/repro/), and the tolerance check.
repro: $(REPRO_METRICS)
	$(PY) -m pipeline check-repro --metrics $(REPRO_METRICS)
$(REPRO_METRICS): $(REFERENCE_MODEL_FILES) $(RETRIEVAL) $(ENCODERS) artifacts/evaluate.settings.json $(EVALUATE_CODE) | $(DEPS)
	$(PY) -m pipeline evaluate --path reference

# The hyper-parameter search behind the settings in pipeline/config.py (hours on 2 cores; not part of
# `make all` or `make study`; the report shows its table). ONLY="4 5" reruns those candidates
# (indices into tune.search_space) and merges them into artifacts/tuning.json.
tune: $(ENCODERS)
	$(PY) -m pipeline tune $(foreach i,$(ONLY),--only $(i))

# Two pytest workers (pytest-xdist), one test file each at a time, so module fixtures are built once. The tests
# marked slow (two-worker training and make bench's cold starts, each starting TensorFlow in several new processes,
# and the study's eleven other rankers) are make test-slow's; CI runs both (docs/tests.md).
test: $(DEPS)
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not slow"
test-slow: $(DEPS)
	$(PY) -m pytest -q -n 2 --dist loadfile -m slow

# ruff (settings in pyproject.toml) and the architecture's layers (import-linter contracts in pyproject.toml).
lint: $(DEPS)
	$(VENV)/bin/ruff check pipeline tests
	$(VENV)/bin/ruff format --check pipeline tests
	$(VENV)/bin/lint-imports

bench: $(SERVED_MODEL_FILES) $(SERVED_LITERT_FILES) $(RETRIEVAL) $(ENCODERS)
	$(PY) -m pipeline bench

# The LiteRT files against the Keras models: the same Top-10 for every user, and the quantized variants' size,
# speed and Recall@10 / NDCG@10 (artifacts/litert_bench.json; part of make study).
bench-litert: artifacts/litert_bench.json
artifacts/litert_bench.json: $(SERVED_LITERT_FILES) $(QUANTIZED_LITERT_FILES) $(RETRIEVAL) $(ENCODERS) \
		pipeline/bench/litert_bench.py $(SCORING_CODE) | $(DEPS)
	$(PY) -m pipeline bench-litert

# The HTTP service (pipeline/serving/http_api.py under pipeline/serving/service.py) on http://$(HOST):$(PORT); HOST=0.0.0.0 makes it reachable from other
# machines. bench-serve starts it on a free loopback port, loads it, stops it: artifacts/serve_bench.json.
serve: $(SERVED_LITERT_FILES) $(RETRIEVAL) $(ENCODERS) $(PRECOMPUTED)
	$(PY) -m pipeline serve --host $(HOST) --port $(PORT)

bench-serve: $(SERVED_MODEL_FILES) $(SERVED_LITERT_FILES) $(RETRIEVAL) $(ENCODERS) $(PRECOMPUTED)
	$(PY) -m pipeline bench-serve

# --- Scale: SYNTHETIC data and the training bench (pipeline/data/synth.py, pipeline/bench/train_bench.py) ---
# make synth [SYNTH_RATINGS=25M]: a SYNTHETIC MovieLens-format dataset in data/synthetic-<size>/ (scale tests only),
# preprocessed. make bench-train: one streamed epoch at 1 M, 5 M, 25 M synthetic ratings on 1 and 2 workers, and
# ML-1M in memory vs streamed vs 2 workers → artifacts/train_bench.json and .png (about an hour on 2 cores).
SYNTH_RATINGS ?= 25M
synth: | $(DEPS)
	$(PY) -m pipeline synth --ratings $(SYNTH_RATINGS)

bench-train: $(ENCODERS) | $(DEPS)
	$(PY) -m pipeline bench-train

# --- The product path on SYNTHETIC data: make all DATA=synthetic-<size> (1M, 5M, 25M; pipeline/data/synth.py) ---
# Its own folders: data/synthetic-<size>/ (raw files, processed/) and artifacts/synthetic-<size>/ (models/, metrics.json, report.md,
# precomputed/). Only the default model (the reproduction and the study are ML-1M's), trained streamed from its
# list shards on WORKERS=N workers (default 1), each epoch cut to SCALE["epoch_lists"] lists (pipeline/config_scale.py).
# make bench-scale runs these stages into the same folders, timing each and measuring its peak RSS:
# artifacts/scale_bench.json and .png (1M, 5M, 25M; about 1.5 hours on 2 cores; SIZES=25M for one size).
ifneq ($(DATA),)
ifeq ($(filter synthetic-%,$(DATA)),)
$(error DATA=$(DATA): expected synthetic-<size>, e.g. DATA=synthetic-25M (ML-1M is the default: no DATA))
endif
SYN_SIZE      := $(patsubst synthetic-%,%,$(DATA))
SYN_NAME      := $(subst M,m,$(subst K,k,$(DATA)))
SYN_PROCESSED := data/$(SYN_NAME)/processed
SYN_OUT       := artifacts/$(SYN_NAME)
SYN_MODELS    := $(SYN_OUT)/models
SYN_DIRS      := --processed-dir $(SYN_PROCESSED) --models-dir $(SYN_MODELS)
SYN_ENCODERS  := $(SYN_PROCESSED)/encoders.json
SYN_LISTS     := $(SYN_MODELS)/candidate_lists
SYN_MODEL     := $(SYN_MODELS)/$(DEFAULT_MODEL).keras
SYN_EPOCH_LISTS := $(shell $(PYTHON) -c "from pipeline import config_scale; print(config_scale.SCALE['epoch_lists'])" 2>/dev/null)

synthetic: $(SYN_OUT)/report.md $(SYN_OUT)/precomputed/$(DEFAULT_MODEL).parquet
	$(PY) -m pipeline recommend --user 3 --architecture $(patsubst %_two_stage,%,$(DEFAULT_MODEL)) $(SYN_DIRS)
$(SYN_ENCODERS): | $(DEPS)
	$(PY) -m pipeline synth --ratings $(SYN_SIZE)
$(SYN_MODELS)/retrieval.npz: $(SYN_ENCODERS) $(RETRIEVAL_CODE) | $(DEPS)
	$(PY) -m pipeline retrieval $(SYN_DIRS)
$(SYN_LISTS)/lists.json: $(SYN_ENCODERS) $(LIST_CODE) pipeline/training/ranker.py pipeline/config.py pipeline/config_scale.py | $(DEPS)
	$(PY) -m pipeline candidates $(SYN_DIRS)
$(SYN_MODEL): $(SYN_LISTS)/lists.json $(TWO_STAGE_TRAIN_CODE) pipeline/config.py pipeline/config_scale.py | $(DEPS)
	$(PY) -m pipeline train --model $(DEFAULT_MODEL) --streaming --epochs 1 --epoch-lists $(SYN_EPOCH_LISTS) \
		--candidate-lists $(SYN_LISTS) $(SYN_DIRS) $(if $(WORKERS),--workers $(WORKERS))
$(SYN_OUT)/metrics.json: $(SYN_MODEL) $(SYN_MODELS)/retrieval.npz $(EVALUATE_CODE) | $(DEPS)
	$(PY) -m pipeline evaluate --model $(DEFAULT_MODEL) $(SYN_DIRS) --out-dir $(SYN_OUT)
$(SYN_OUT)/report.md: $(SYN_OUT)/metrics.json pipeline/evaluation/report.py | $(DEPS)
	$(PY) -m pipeline report --out-dir $(SYN_OUT) $(SYN_DIRS)
$(SYN_MODELS)/$(DEFAULT_MODEL).tflite: $(SYN_MODEL) $(EXPORT_CODE) | $(DEPS)
	$(PY) -m pipeline export --model $(DEFAULT_MODEL) --models-dir $(SYN_MODELS)
$(SYN_OUT)/precomputed/$(DEFAULT_MODEL).parquet: $(SYN_MODELS)/$(DEFAULT_MODEL).tflite $(SYN_MODELS)/retrieval.npz \
		$(SCORING_CODE) | $(DEPS)
	$(PY) -m pipeline precompute --model $(DEFAULT_MODEL) $(SYN_DIRS)
endif
SIZES ?=
bench-scale: | $(DEPS)
	$(PY) -m pipeline bench-scale $(if $(SIZES),--sizes $(SIZES))

# The web page on http://127.0.0.1:8501, with whatever exists (the page says what is missing).
# APP_HOST=0.0.0.0 makes it reachable from other machines.
APP_HOST ?= 127.0.0.1
app: | $(DEPS)
	$(VENV)/bin/streamlit run pipeline/serving/app.py --server.headless true --server.address $(APP_HOST) \
		--browser.gatherUsageStats false

clean:
	rm -rf $(PROCESSED) $(MODELS) artifacts/study artifacts/repro artifacts/predictions artifacts/top10 \
		artifacts/precomputed artifacts/timings artifacts/*.md artifacts/*.png artifacts/*.parquet \
		artifacts/metrics.json artifacts/bench.json artifacts/serve_bench.* artifacts/evaluate.settings.json
	@echo "kept artifacts/tuning.json (make tune's search, hours to remake); make clean-tuning deletes it"

clean-tuning:
	rm -f artifacts/tuning.json
