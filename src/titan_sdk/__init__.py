"""Compatibility import for code written against the original SDK::

    from titan_sdk import TitanClient, TitanJob
"""

from titan import errors
from titan.client import TitanClient, TitanJob, load_pipeline, wait_for_signal, wait_for_signals

__all__ = ["TitanClient", "TitanJob", "errors", "load_pipeline", "wait_for_signal",
           "wait_for_signals"]
