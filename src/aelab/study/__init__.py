"""Studies (baselines + variants + questions, from TOML) and sweeps, and their runners.

A study is data (:mod:`.spec`): runs, questions with claims validated when it loads
(:mod:`.claims`), notes and protocols. :func:`run_study` and :func:`run_sweep` train the runs into
one output directory (:mod:`.output`) and write its results.json; building the report from it is
the caller's step.
"""

from .claims import (
    CLAIM_KINDS,
    Claim,
    ClaimError,
    ClaimParams,
    parse_claim,
    parse_metric_path,
    register_claim_kind,
)
from .output import run_dir_for
from .result import StudyResult
from .runner import RESULTS_FORMAT, RESULTS_VERSION, run_study
from .spec import (
    BASE_PROTOCOL,
    Protocol,
    Question,
    Study,
    find_study,
    load_study,
    protocol_name,
    shipped_studies,
    study_from_dict,
)
from .sweep import parse_values, run_sweep, sweep_configs

__all__ = [
    "BASE_PROTOCOL", "CLAIM_KINDS", "RESULTS_FORMAT", "RESULTS_VERSION", "Claim", "ClaimError", "ClaimParams",
    "Protocol", "Question", "Study", "StudyResult", "find_study", "load_study", "parse_claim", "parse_metric_path", "parse_values",
    "protocol_name", "register_claim_kind", "run_dir_for", "run_study", "run_sweep", "shipped_studies",
    "study_from_dict", "sweep_configs",
]
