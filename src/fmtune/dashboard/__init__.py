"""The live dashboard: the run state (``fmtune.run_state``) as a web page, read-only.

``view`` turns a state into what the page shows, ``charts`` into plotly figures, ``importance``
estimates which hyperparameters matter, ``server`` serves it all over HTTP (within the limits
``guard`` sets on each client), and ``placement`` says where to bind. ``fmtune report`` draws the
same view, so the two never disagree.
"""
