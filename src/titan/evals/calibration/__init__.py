"""The judge's calibration set: labelled runs, and how far a judge agrees with the labels.

- :mod:`~titan.evals.calibration.cases` — loading the cases (``*.yaml`` here; the format and
  the labelling rules are in ``README.md``) into tasks and recorded runs;
- :mod:`~titan.evals.calibration.report` — judging every case offline and reporting
  agreement, the confusion matrix, per-category agreement, the worst disagreements and the
  time per verdict (``titan eval calibrate``).
"""

from titan.evals.calibration.cases import CATEGORIES, DEFAULT_SET, LABELS, Case, load_set
from titan.evals.calibration.report import Outcome, Report, calibrate

__all__ = ["CATEGORIES", "DEFAULT_SET", "LABELS", "Case", "Outcome", "Report", "calibrate",
           "load_set"]
