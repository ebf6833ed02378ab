"""Studies (baselines + variants + questions, from TOML) and sweeps, and their runner."""

from .runner import parse_values, run_study, run_sweep, sweep_configs
from .spec import Question, Study, find_study, load_study, shipped_studies, study_from_dict

__all__ = ["Question", "Study", "find_study", "load_study", "shipped_studies", "study_from_dict",
           "parse_values", "run_study", "run_sweep", "sweep_configs"]
