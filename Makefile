# MovieLens 1M → DeepCTR AutoInt / AutoInt+MLP. Each target names the files it needs and makes,
# so a second `make all` redoes nothing that is up to date.
#   make all                      install, download, preprocess, train both models, evaluate, recommend
#   make test                     the test suite (generated data, no network)
#   make recommend USER=3 [MODEL=autoint|autoint_mlp|both MODE=ranking|seed YEAR=2001 MONTH=5 N=10]

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DEPS   := $(VENV)/.installed

RAW       := data/ml-1m
PROCESSED := data/processed
MODELS    := artifacts/models
RAW_FILES := $(RAW)/ratings.dat $(RAW)/movies.dat $(RAW)/users.dat
ENCODERS  := $(PROCESSED)/encoders.json
# The models trained and evaluated on each split; the same lists as EVALUATED_MODELS in pipeline/config.py
# (a test keeps the two equal).
RANDOM_MODELS   := autoint autoint_mlp autoint_tuned autoint_mlp_tuned autoint_ranking autoint_mlp_ranking
TEMPORAL_MODELS := autoint_ranking autoint_mlp_ranking
MODEL_FILES := $(RANDOM_MODELS:%=$(MODELS)/%.keras) $(TEMPORAL_MODELS:%=$(MODELS)/temporal/%.keras)
# What recommend, recommend-all, bench and the app load: both modes (seed, ranking) of both architectures.
SERVING_FILES := $(addprefix $(MODELS)/,autoint.keras autoint_mlp.keras autoint_ranking.keras autoint_mlp_ranking.keras)
METRICS   := artifacts/metrics.json

# Optional settings. USER is also the login name in the environment, so only a USER given on the
# make command line counts as a user ID; otherwise user 3.
SOURCE ?=
MODEL  ?=
RECOMMEND_USER := $(if $(filter command line,$(origin USER)),$(USER),3)
RECOMMEND_ARGS := $(if $(MODEL),--model $(MODEL)) $(if $(MODE),--mode $(MODE)) $(if $(YEAR),--year $(YEAR)) $(if $(MONTH),--month $(MONTH)) $(if $(N),--n $(N))
TRAIN_ARGS := $(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(LR),--lr $(LR)) $(if $(BATCH_SIZE),--batch-size $(BATCH_SIZE)) \
	$(if $(EMBEDDING_DIM),--embedding-dim $(EMBEDDING_DIM)) $(if $(DNN_HIDDEN_UNITS),--dnn-hidden-units "$(DNN_HIDDEN_UNITS)") \
	$(if $(DNN_DROPOUT),--dnn-dropout $(DNN_DROPOUT)) $(if $(ATT_LAYER_NUM),--att-layer-num $(ATT_LAYER_NUM)) \
	$(if $(ATT_HEAD_NUM),--att-head-num $(ATT_HEAD_NUM)) $(if $(SEED),--seed $(SEED))

.PHONY: all install download preprocess train evaluate recommend recommend-all check-repro repro tune test bench app clean

all: $(METRICS) recommend

install: $(DEPS)
$(DEPS): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $@

download: $(RAW_FILES)
$(RAW_FILES) &: | $(DEPS)
	$(PY) -m pipeline download $(if $(SOURCE),--source "$(SOURCE)")

preprocess: $(ENCODERS)
$(ENCODERS): $(RAW_FILES) pipeline/preprocess.py pipeline/config.py | $(DEPS)
	$(PY) -m pipeline preprocess

# Training options given on the command line are recorded in <model>.args, which changes (and so
# retrains) only when they do.
train: $(if $(MODEL),$(filter $(MODELS)/$(MODEL).keras,$(MODEL_FILES)),$(MODEL_FILES))
$(MODELS)/%.args: FORCE
	@mkdir -p $(dir $@)
	@echo '$(TRAIN_ARGS)' | cmp -s - $@ || echo '$(TRAIN_ARGS)' > $@
$(MODELS)/%.keras: $(ENCODERS) $(MODELS)/%.args pipeline/train.py pipeline/config.py | $(DEPS)
	$(PY) -m pipeline train --model $* $(TRAIN_ARGS)
$(MODELS)/temporal/%.keras: $(ENCODERS) $(MODELS)/temporal/%.args pipeline/train.py pipeline/config.py | $(DEPS)
	$(PY) -m pipeline train --model $* --split temporal $(TRAIN_ARGS)
.PRECIOUS: $(MODELS)/%.args $(MODELS)/temporal/%.args
FORCE:

evaluate: $(METRICS)
$(METRICS): $(MODEL_FILES) $(ENCODERS) pipeline/evaluate.py pipeline/metrics.py pipeline/baselines.py pipeline/scoring.py | $(DEPS)
	$(PY) -m pipeline evaluate

recommend: $(SERVING_FILES) $(ENCODERS)
	$(PY) -m pipeline recommend --user "$(RECOMMEND_USER)" $(RECOMMEND_ARGS)

recommend-all: $(SERVING_FILES) $(ENCODERS)
	$(PY) -m pipeline recommend-all $(if $(MODEL),--model $(MODEL)) $(if $(MODE),--mode $(MODE)) $(if $(N),--n $(N))

# The reproduction check: the seed-protocol numbers of both models within tolerance of the seed's table.
check-repro: $(METRICS)
	$(PY) -m pipeline check-repro --metrics $(METRICS)

# What CI runs after the tests: real ML-1M through download and preprocess, the two seed models, their
# evaluation beside the baselines (artifacts/repro/), and the tolerance check. About 15 minutes on
# 2 cores; `make all` adds the tuned, ranking and temporal-split models (about an hour).
REPRO_METRICS := artifacts/repro/metrics.json
repro: $(REPRO_METRICS)
	$(PY) -m pipeline check-repro --metrics $(REPRO_METRICS)
$(REPRO_METRICS): $(MODELS)/autoint.keras $(MODELS)/autoint_mlp.keras $(ENCODERS) pipeline/evaluate.py pipeline/metrics.py pipeline/baselines.py pipeline/scoring.py | $(DEPS)
	$(PY) -m pipeline evaluate --seed-only --out-dir artifacts/repro

# The hyper-parameter search behind the tuned and ranking settings in pipeline/config.py (about two
# hours on 2 cores; not part of `make all`). evaluate adds its results to the report when present.
# ONLY="4 5" reruns those candidates (indices into tune.search_space) and merges them into tuning.json.
tune: $(ENCODERS)
	$(PY) -m pipeline tune $(foreach i,$(ONLY),--only $(i))

test: $(DEPS)
	$(PY) -m pytest -q

bench: $(SERVING_FILES) $(ENCODERS)
	$(PY) -m pipeline bench

app: $(METRICS)
	$(VENV)/bin/streamlit run pipeline/app.py --server.headless true --browser.gatherUsageStats false

clean:
	rm -rf $(PROCESSED) artifacts/models artifacts/*.json artifacts/*.md artifacts/*.png artifacts/*.parquet
