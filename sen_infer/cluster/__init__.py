"""Camera archives ingested on a Ray cluster into a sharded gallery (`python -m sen_infer.cluster`).

Needs the `cluster` extra (`pip install 'sen-person-search[cluster]'`: Ray); the base SDK never imports
this package. See docs/scale.md.
"""

from sen_infer.cluster.ingest import ClusterJob, IngestConfig, ProbedInputs, connect, probe_inputs, start_ingest

__all__ = ["ClusterJob", "IngestConfig", "ProbedInputs", "connect", "probe_inputs", "start_ingest"]
