"""The Titan SDK: :class:`TitanClient`, :class:`TitanJob` and YAML pipelines."""

from titan.client.client import TitanClient
from titan.client.config import Endpoint, resolve
from titan.client.job import TitanJob
from titan.client.pipeline import load_pipeline

__all__ = ["Endpoint", "TitanClient", "TitanJob", "load_pipeline", "resolve"]
