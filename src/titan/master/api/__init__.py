"""REST routers, one per resource, mounted under /api/v1 by :mod:`titan.master.app`."""
