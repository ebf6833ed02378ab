"""Studies (baselines + variants + questions, from TOML) and sweeps, and their runners.

A study is data (:mod:`.spec`): runs, questions with claims validated when it loads
(:mod:`.claims`), notes and protocols. :func:`run_study` and :func:`run_sweep` train the runs into
one output directory (:mod:`.output`) and write its results.json; building the report from it is
the caller's step.
"""

from .claims import CLAIM_KINDS, Claim, ClaimError, ClaimParams, parse_claim, parse_metric_path, register_claim_kind
from .output import run_dir_for
from .runner import RESULTS_FORMAT, RESULTS_VERSION, run_study
from .spec import (BASE_PROTOCOL, Protocol, Question, Study, find_study, load_study, protocol_name, shipped_studies,
                   study_from_dict)
from .sweep import parse_values, run_sweep, sweep_configs

__all__ = ["Question", "Study", "Protocol", "find_study", "load_study", "shipped_studies", "study_from_dict",
           "BASE_PROTOCOL", "protocol_name", "RESULTS_FORMAT", "RESULTS_VERSION", "run_dir_for",
           "CLAIM_KINDS", "Claim", "ClaimError", "ClaimParams", "parse_claim", "parse_metric_path",
           "register_claim_kind", "parse_values", "run_study", "run_sweep", "sweep_configs"]
