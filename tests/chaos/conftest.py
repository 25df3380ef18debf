from tests.integration.conftest import make_cluster  # noqa: F401  (real masters and workers)
