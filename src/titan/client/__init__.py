"""The Titan SDK: :class:`TitanClient`, :class:`TitanJob` and YAML pipelines."""

from titan.client.client import TitanClient
from titan.client.config import Endpoint, resolve
from titan.client.job import TitanJob
from titan.client.pipeline import load_pipeline
from titan.client.store import wait_for_signal, wait_for_signals

__all__ = ["Endpoint", "TitanClient", "TitanJob", "load_pipeline", "resolve", "wait_for_signal",
           "wait_for_signals"]
