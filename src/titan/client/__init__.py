"""The Titan SDK: :class:`TitanClient`, :class:`TitanJob` and YAML pipelines."""

from titan.client.artifacts import get_artifact, publish_artifact
from titan.client.client import TitanClient
from titan.client.config import Endpoint, resolve
from titan.client.job import TitanJob
from titan.client.pipeline import load_pipeline
from titan.client.signals import wait_for_signal, wait_for_signals

__all__ = ["Endpoint", "TitanClient", "TitanJob", "get_artifact", "load_pipeline",
           "publish_artifact", "resolve", "wait_for_signal", "wait_for_signals"]
