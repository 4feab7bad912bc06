"""Rules and settings: the YAML rules file, its line-aware validation, Skaffold import and paths."""

from trayapp.config.check import check_report
from trayapp.config.paths import config_dir, default_rules_path, state_dir
from trayapp.config.problems import Problem
from trayapp.config.rules import RuleSet, load_rules, load_rules_text

__all__ = [
    "Problem",
    "RuleSet",
    "check_report",
    "config_dir",
    "default_rules_path",
    "load_rules",
    "load_rules_text",
    "state_dir",
]
