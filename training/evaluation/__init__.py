"""Evaluation of stored generators: the protocol (``protocol``), the metrics by name
(``registry``), the table (``table``), the report (``report``), and the frozen feature
network that names the feature space (``features``). The metric functions themselves are
in ``training.metrics``."""

from training.evaluation.protocol import EvaluationError, evaluate_model, reference_set
from training.evaluation.registry import METRICS, PARZEN_SAMPLES, EvalContext, EvalOptions
from training.evaluation.report import Evaluation, write_report
from training.evaluation.table import Row, markdown_table

__all__ = [
    "METRICS",
    "PARZEN_SAMPLES",
    "EvalContext",
    "EvalOptions",
    "Evaluation",
    "EvaluationError",
    "Row",
    "evaluate_model",
    "markdown_table",
    "reference_set",
    "write_report",
]
