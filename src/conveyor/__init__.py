"""Conveyor: continuous integration and delivery for machine learning, written as Prefect flows.

The package reads like a map of the product, each domain importing only those before it (tests/test_layout.py):
``schema`` and ``settings``; ``io``, ``blocks`` and ``events``; ``cache``; ``data``; ``validation`` and ``models``;
``export``; ``registry``; ``flows`` and ``stack``; ``cli``.
"""
