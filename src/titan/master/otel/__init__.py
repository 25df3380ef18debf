"""OpenTelemetry both ways: Titan's runs out as OTLP spans, OTLP traces in as runs.

* :mod:`.settings` — ``TITAN_OTLP_*``: where spans go, which runs, how long a span waits
* :mod:`.ids` — trace and span ids derived from run and action ids (re-exports line up)
* :mod:`.wire` — OTLP/HTTP bodies: protobuf or JSON, gzip, attribute values
* :mod:`.wire_json` — OTLP/JSON read: hex ids, each field's shape checked, spans counted
* :mod:`.outgoing` — a run, its actors and actions as GenAI spans (the mapping out)
* :mod:`.exporter` — the background exporter: a bounded queue, batches, drops counted
* :mod:`.incoming` — a span as an action (the mapping in: GenAI conventions, OpenInference)
* :mod:`.actors` — the actor path a span is recorded under: the sub-agent that made it
* :mod:`.attributes` — a span's attributes read as sent: the first spelling present, typed
* :mod:`.receiver` — traces become runs through the run service, each span once its
  actor is known
* :mod:`.holding` — the spans the receiver holds: counted, bounded, which are due
* :mod:`.known` — what the database holds already, as the receiver asks it

docs/opentelemetry.md is the long form, with both mappings and what each loses.
"""
