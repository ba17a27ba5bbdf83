"""Every setting of the search algorithms, named once, with the file it comes from.

The reference is what produced the paper's comparison: the experiment scripts that the benchmark's
authors published with it (automl/nas_benchmarks ``experiment_scripts/``; its README says they
"were also used to conducted the experiments in the papers"), the library versions those scripts
call with their defaults (HpBandSter's BOHB; SMAC3 0.10.0, January 2019, whose ``smac.solver``
attributes the SMAC script sets; statsmodels 0.9's kernel density), and, for random search and the
default regularized evolution, the official notebook (google-research/nasbench ``NASBench.ipynb``).

The algorithms take their defaults from here; ``docs/search.md`` has the same table with the
reasons for the few differences that remain, and ``tests/test_search_settings.py`` checks that the
two agree.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Reference(NamedTuple):
    value: Any
    source: str  # repository file (and the argument or line) the value is read from


NB = "automl/nas_benchmarks"
HPB = "automl/HpBandSter"
SMAC3 = "automl/SMAC3@v0.10.0"

# -- the encoding the model-based methods and REINFORCE search (NASCifar10A) -----------------------
MAX_RAW_EDGES = Reference(9, f"{NB} tabular_benchmarks/nas_cifar10.py: MAX_EDGES = 9, "
                          "checked on the raw matrix")
INVALID_ERROR = Reference(1.0, f"{NB} tabular_benchmarks/nas_cifar10.py: record_invalid(config, 1, 1, 0); "
                          "return 1, 0")
INVALID_COST = Reference(0.0, f"{NB} tabular_benchmarks/nas_cifar10.py: an invalid cell costs 0 seconds")

# -- regularized evolution ------------------------------------------------------------------------
RE_NOTEBOOK_POPULATION = Reference(50, "google-research/nasbench NASBench.ipynb: "
                                   "run_evolution_search(population_size=50)")
RE_NOTEBOOK_TOURNAMENT = Reference(10, "google-research/nasbench NASBench.ipynb: tournament_size=10, "
                                   "random_combination (without replacement)")
RE_NOTEBOOK_MUTATION_RATE = Reference(1.0, "google-research/nasbench NASBench.ipynb: mutation_rate=1.0")
RE_SCRIPT_POPULATION = Reference(100, f"{NB} experiment_scripts/run_regularized_evolution.py: --pop_size 100")
RE_SCRIPT_SAMPLE = Reference(10, f"{NB} experiment_scripts/run_regularized_evolution.py: --sample_size 10, "
                             "random.choice (with replacement)")

# -- REINFORCE ------------------------------------------------------------------------------------
REINFORCE_LEARNING_RATE = Reference(0.1, f"{NB} experiment_scripts/run_rl.py: --lr 1e-1")
REINFORCE_MOMENTUM = Reference(0.9, f"{NB} experiment_scripts/run_rl.py: --momentum 0.9 "
                               "(ExponentialMovingAverage with a bias-corrected denominator)")
REINFORCE_MIN_REWARD = Reference(0.001, f"{NB} experiment_scripts/run_rl.py: resample while reward <= 0.001")

# -- BOHB -----------------------------------------------------------------------------------------
BOHB_ETA = Reference(3, f"{NB} experiment_scripts/run_bohb.py: BOHB(eta=3, min_budget=4, max_budget=108)")
BOHB_MIN_BANDWIDTH = Reference(0.3, f"{NB} experiment_scripts/run_bohb.py: --min_bandwidth .3")
BOHB_NUM_SAMPLES = Reference(64, f"{NB} experiment_scripts/run_bohb.py: --num_samples 64")
BOHB_RANDOM_FRACTION = Reference(0.33, f"{NB} experiment_scripts/run_bohb.py: --random_fraction .33")
BOHB_BANDWIDTH_FACTOR = Reference(3, f"{NB} experiment_scripts/run_bohb.py: --bandwidth_factor 3 "
                                  f"({HPB} config_generators/bohb.py widens continuous parameters only)")
BOHB_TOP_N_PERCENT = Reference(15, f"{HPB} hpbandster/optimizers/bohb.py: top_n_percent=15")
BOHB_MIN_POINTS_IN_MODEL = Reference(None, f"{HPB} hpbandster/optimizers/config_generators/bohb.py: "
                                     "None -> number of parameters + 1 = 27")

# -- SMAC -----------------------------------------------------------------------------------------
SMAC_INITIAL_DESIGN = Reference(1, f"{NB} experiment_scripts/run_smac.py: initial_incumbent RANDOM "
                                f"({SMAC3} smac/initial_design/random_configuration_design.py: "
                                "one configuration)")
SMAC_RANDOM_PROBABILITY = Reference(0.33, f"{NB} experiment_scripts/run_smac.py: --random_fraction .33 "
                                    "-> random_configuration_chooser.prob")
SMAC_TREES = Reference(10, f"{NB} experiment_scripts/run_smac.py: --n_trees 10")
SMAC_MAX_RUNS_PER_CONFIG = Reference(4, f"{NB} experiment_scripts/run_smac.py: --max_feval 4 "
                                     "-> intensifier.maxR")
SMAC_DETERMINISTIC = Reference(False, f"{NB} experiment_scripts/run_smac.py: deterministic 'false' "
                               "(re-runs of a configuration are new, paid queries)")
SMAC_CHALLENGERS_PER_ITERATION = Reference(1, f"{NB} experiment_scripts/run_smac.py: "
                                           "intensification_percentage 1e-10, min_chall 1")
SMAC_RATIO_FEATURES = Reference(5 / 6, f"{SMAC3} smac/utils/io/cmd_reader.py: rf_ratio_features 5/6")
SMAC_MIN_SAMPLES_SPLIT = Reference(3, f"{SMAC3} smac/utils/io/cmd_reader.py: rf_min_samples_split 3")
SMAC_MIN_SAMPLES_LEAF = Reference(3, f"{SMAC3} smac/utils/io/cmd_reader.py: rf_min_samples_leaf 3")
SMAC_MAX_DEPTH = Reference(20, f"{SMAC3} smac/utils/io/cmd_reader.py: rf_max_depth 20")
SMAC_ACQ_CHALLENGERS = Reference(5000, f"{SMAC3} smac/utils/io/cmd_reader.py: acq_opt_challengers 5000 "
                                 "(10 local searches + 4990 random configurations)")
SMAC_LOCAL_SEARCHES = Reference(10, f"{SMAC3} smac/optimizer/ei_optimization.py: n_sls_iterations=10")
SMAC_PLATEAU_WALK = Reference(10, f"{SMAC3} smac/optimizer/ei_optimization.py: n_steps_plateau_walk=10")


def all_settings() -> dict[str, Reference]:
    """Every named setting in this module, by name."""
    return {name: value for name, value in globals().items() if isinstance(value, Reference)}
