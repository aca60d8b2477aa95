"""Hosted model providers (fal, ``/v1/videos`` gateways, Google) as provider jobs: see ``generators.jobs``.

Nothing here is imported by the demo or by a query: a backend module is loaded only when a config names it.
"""
