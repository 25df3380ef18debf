"""The web dashboard: server-rendered pages over the master's state, each with a JSON twin.

Pages are Jinja2 templates rendered by :mod:`titan.dashboard.pages`; the data each one shows
is built in :mod:`titan.dashboard.queries` (the ``.json`` twin returns exactly that data);
the DAG graph is laid out on the server by :mod:`titan.dashboard.layout`, and the browser
only draws what is in view (``static/graph.js``, which the visualizer and the DAG builder
share). Static assets are hand-written JS and CSS shipped in the package:
no build step, no CDN (masters often run offline).
"""
