"""Operability: health and readiness probes and Prometheus metrics, on the server's own port.

`endpoints` decides which requests are ours (``GET``/``HEAD`` of ``/healthz``, ``/readyz`` and
``/metrics`` that S3 does not claim) and who may read them; `probes` runs the readiness checks;
`metrics` keeps a Prometheus registry per app and counts what the server does.
"""
