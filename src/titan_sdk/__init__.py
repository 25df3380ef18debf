"""Compatibility import for code written against the original SDK::

    from titan_sdk import TitanClient, TitanJob
"""

from titan import errors
from titan.client import (
           TitanClient,
           TitanJob,
           get_artifact,
           load_pipeline,
           publish_artifact,
           wait_for_signal,
           wait_for_signals,
)

__all__ = ["TitanClient", "TitanJob", "errors", "get_artifact", "load_pipeline",
           "publish_artifact", "wait_for_signal", "wait_for_signals"]
