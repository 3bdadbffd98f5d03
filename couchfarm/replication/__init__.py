"""The replication control plane: a declared topology becomes ``_replicator`` documents, and the
scheduler is watched.

::

    topology.py  the YAML file: nodes, databases, profiles, links, security (every problem with file:line)
    expand.py    links -> one Replication per direction and database (deterministic ids, placement)
    profiles.py  datacenter / cellular / satellite / lora tuning presets
    models.py    a _replicator document as CouchDB 3 accepts it, checked before it is written
    render.py    credentials from the environment; bodies per server flavour (auth object or userinfo)
    changes.py   what a plan says about one object: action, field-level differences
    plan.py      declared vs. each node's _replicator: create / update / delete / unchanged
    security.py  _security objects as declared; what counts as widening
    security_plan.py  declared vs. each node's _security, and writing it
    apply.py     carry a plan out, one outcome per change (widening refused without allow_widen)
    api.py       the replicator's HTTP endpoints (_replicator, _scheduler/*, _local_docs, _security)
    endpoints.py clients for nodes and for a replication's two ends; checkpoint ids
    status.py    per replication state from the scheduler, or the documents and probes
    watch.py     events and alerts between polls; log, metric and webhook sinks
    relay.py     relay fallback: a failing link carried through a relay node, and back
    rescan.py    delete both checkpoints and recreate the document
    sync.py      manual one-shot sync: ends, checks before writing, the document
    sync_follow.py  follow a sync job: progress, final state, cancel on CouchDB
"""
