"""The dispatch core: discovery, leases shared fairly, one ``_changes`` follower per held lease.

None of it needs Celery: the hand-off to the workers is an injected ``Broker`` (workers/farm.py).
"""
