"""Resolve a batch of documents: read every leaf in bulk, merge, write the winner, then tombstone.

Steps for one batch (docs/architecture.md, invariant 2 — no tombstone before the winner is safe):
1. one bulk read of every leaf of every document (plus, per document where needed, the deletion
   state of revisions the tombstone rule asks about and the common ancestor's body for strategies
   that do three-way merges); a read that failed for one document (an error entry inside a 200,
   nothing read for a document that exists, the ancestor's body gone) -> RETRY of that document;
2. per document: no conflict -> NOOP; a design document the database rule does not open, invalid
   leaf, strategy error, unresolvable, invalid merge or a merge by a different strategy definition
   (provenance) -> DEAD_LETTERED with the reason;
3. one ``_bulk_docs`` with the merged winners (skipped per document when the winner already holds
   the merge); a 409 -> RETRY (re-read later), a refusal (403/401/VDU) -> DEAD_LETTERED;
4. optionally archive the losing leaves of the documents whose winner is safe;
5. one ``_bulk_docs`` with the tombstones of exactly those documents.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Protocol

from couchfarm.attachments import AttachmentChoiceError
from couchfarm.couchapi import EngineCouch
from couchfarm.errors import AncestorMissing, BadRequest, CouchError, NotFound, ResolverError, Unavailable
from couchfarm.failures import Failure
from couchfarm.models import BulkItemResult, ConflictSet, Leaf, Outcome, Rev
from couchfarm.plan import Plan, build_plan, foreign_provenance, provenance
from couchfarm.replies import LeafRead
from couchfarm.resolvers import Router, is_conflict
from couchfarm.resolvers.deletions import history_needed, undecided
from couchfarm.validation import load_validator

log = logging.getLogger("couchfarm.resolution")
READ_CHUNK = 100  #: documents per leaf read in a large batch (the next is read while one is written)
Bases = dict[tuple[str, str], Any]  #: (doc id, ancestor rev) -> its body, None when the server lost it
_UNREAD: Any = object()
BASE_STRATEGIES = {"fields", "custom"}  #: strategies given the common ancestor's body
DESIGN_REASON = (
    "design documents are code (views, validate_doc_update): couchfarm does not merge them unless "
    "the database rule sets resolve_design_docs: true; resolve it by hand with "
    "`couchfarm conflicts show/pick/edit`"
)


@dataclass
class DocResult:
    """The outcome of one document in one attempt."""

    db: str
    doc_id: str
    outcome: Outcome
    strategy: str = ""
    revs: list[str] = field(default_factory=list)
    reason: str | None = None
    error: Failure | None = None  #: why it is dead-lettered or retried
    written: list[str] = field(default_factory=list)
    plan: dict[str, Any] | None = None
    latency_ms: float = 0.0
    leaves_after: list[str] | None = None  #: every leaf rev the document was left with (RESOLVED, NOOP)

    def as_json(self) -> dict[str, Any]:
        return {k: (v.value if isinstance(v, Enum) else v) for k, v in self.__dict__.items() if v is not None}


class Archiver(Protocol):
    """Keeps what a resolution replaces before the losers are tombstoned (couchfarm/archive.py)."""

    def record(self, db: str, plans: list[Plan], winner_revs: dict[str, str | None]) -> None:
        """Raises ``CouchError`` unless every plan is kept."""


class Engine:
    """Resolves conflicts in one database server with injected client, router and archive."""

    def __init__(
        self,
        client: EngineCouch,
        router: Router,
        *,
        archive: Archiver | None = None,
        provenance: bool = False,
        schema_dir: str | None = None,
        deep_conflict_leaves: int = 3,
        on_event: Callable[..., None] | None = None,
        interrupts: tuple[type[BaseException], ...] = (),
        on_conflict: Callable[[ConflictSet], None] | None = None,
    ) -> None:
        self.client = client
        self.router = router
        self.archive = archive
        self.provenance = provenance
        self.schema_dir = schema_dir
        self.deep_conflict_leaves = deep_conflict_leaves
        self.on_event = on_event or (lambda name, **fields: None)
        self.interrupts = interrupts  #: a time limit raised inside a strategy: never a strategy error
        self.on_conflict = on_conflict  #: told of every document that is a conflict (couchfarm/insights.py)

    # -- reading --------------------------------------------------------------------------------

    def read(
        self, db: str, doc_ids: list[str], known: dict[str, list[str]] | None = None
    ) -> dict[str, ConflictSet]:
        """Every leaf of each document; ``read_error`` set where the read cannot be trusted, no
        leaves where the document does not exist (missing, purged, or deleted everywhere).
        ``known``: the leaf revs the feed listed (fewer requests on some servers)."""
        reads = self.client.read_leaf_sets(db, doc_ids, known)
        out = {}
        for doc_id in doc_ids:
            read = reads.get(doc_id) or LeafRead()
            problem = read.problem
            if problem is not None and (problem := self._still_there(db, doc_id, problem)) is None:
                out[doc_id] = ConflictSet(db, doc_id, ())  # gone: nothing to resolve
                continue
            leaves = tuple(Leaf.from_doc(d) for d in read.docs)
            out[doc_id] = ConflictSet(db, doc_id, leaves, read_error=problem)
        return out

    def _still_there(self, db: str, doc_id: str, problem: str) -> str | None:
        """``problem`` when the document exists (its read is to be retried); None when it is gone."""
        try:
            self.client.get(db, doc_id)
        except NotFound:
            return None  # missing, purged, or its winner is a deletion: every leaf is deleted
        except CouchError as exc:
            return f"{problem}; checking the document failed too: {exc}"
        return problem

    def with_history(self, conflict: ConflictSet) -> ConflictSet:
        """The conflict with the deletion state of the revisions the tombstone rule needs
        (``resolvers/deletions.py``); none is read for the common trees. Raises ``CouchError``."""
        needed = history_needed(conflict)
        if not needed:
            return conflict
        known = self.client.revs_deleted(conflict.db, conflict.doc_id, needed)
        return replace(conflict, history={**conflict.history, **known})

    def prefetch_bases(self, db: str, conflicts: dict[str, ConflictSet]) -> Bases:
        """The common ancestors the batch's three-way merges need, read in one ``_bulk_get``."""
        pairs = []
        for conflict in conflicts.values():
            if conflict.read_error is None and len(conflict.live) > 1:
                _, spec = self.router.route(db, conflict)
                rev = common_ancestor(conflict.live) if spec.strategy in BASE_STRATEGIES else None
                if rev is not None:
                    pairs.append((conflict.doc_id, rev))
        try:
            return dict(self.client.read_revisions(db, pairs)) if pairs else {}
        except CouchError as exc:  # each document reads its own ancestor then
            log.debug("ancestors of %s not read in bulk: %s", db, exc)
            return {}

    def with_base(self, conflict: ConflictSet, bases: Bases | None = None) -> ConflictSet:
        """The conflict with ``base`` (and ``base_attachments``) set from the last common ancestor.

        Raises ``AncestorMissing`` when this server cannot give the ancestor's body: a merge without
        it could differ from the one a replica that has it computes, so the document waits for that
        replica (or, after its retries, for a person). ``CouchError`` on a failed read.
        """
        live = conflict.live
        rev = common_ancestor(live)
        if rev is None:
            if any(not leaf.ancestry or Rev.parse(leaf.ancestry[-1]).generation > 1 for leaf in live):
                raise AncestorMissing(
                    "the leaves' histories are cut short (_revs_limit) before they meet: "
                    "their common ancestor is unknown on this server"
                )
            return conflict  # histories reach their first revision apart: created twice, no ancestor
        try:
            doc = (bases or {}).get((conflict.doc_id, rev), _UNREAD)
            if doc is _UNREAD:
                doc = self.client.get(conflict.db, conflict.doc_id, rev=rev)
            if doc is None:
                raise NotFound(f"{rev} has no body")
        except NotFound:
            raise AncestorMissing(
                f"the common ancestor {rev} has no body on this server (compaction or _revs_limit): "
                "not merging without it; a replica that has it will resolve the same leaves",
                rev=rev,
            ) from None
        body = {k: v for k, v in doc.items() if not k.startswith("_")}
        return replace(conflict, base=body, base_attachments=dict(doc.get("_attachments") or {}))

    # -- planning -------------------------------------------------------------------------------

    def prepare(self, conflict: ConflictSet, bases: Bases | None = None) -> Plan | DocResult:
        """The plan for one document, or its final result when there is nothing to write."""
        resolver, spec = self.router.route(conflict.db, conflict)
        result = DocResult(conflict.db, conflict.doc_id, Outcome.NOOP, resolver.name, conflict.revs)
        if conflict.read_error is not None:
            return retry(result, Failure.READ_ERROR, f"leaves not read completely: {conflict.read_error}")
        if not conflict.leaves:
            result.reason = "the document does not exist (missing or purged)"
            return result
        if spec.deletion == "tombstone_wins":
            try:
                conflict = self.with_history(conflict)
            except CouchError as exc:
                return retry(result, Failure.of(exc), f"revision history read failed: {exc}")
            self._report_undecided(conflict)
        if not is_conflict(conflict, spec.deletion):
            result.leaves_after = conflict.revs
            return result
        if conflict.doc_id.startswith("_design/") and not self.router.resolves_design_docs(conflict.db):
            return dead(result, Failure.DESIGN_DOCUMENT, DESIGN_REASON)
        if self.on_conflict is not None:
            self.on_conflict(conflict)
        if len(conflict.live) > self.deep_conflict_leaves:
            self.on_event("deep_conflict", db=conflict.db, doc_id=conflict.doc_id, leaves=len(conflict.live))
        validator = load_validator(spec.schema_path, self.schema_dir) if spec.schema_path else None
        if validator is not None:
            for leaf in conflict.live:
                if problems := validator.errors(leaf.body):
                    reason = f"leaf {leaf.rev} is invalid: " + "; ".join(problems)
                    return dead(result, Failure.INVALID_DOCUMENT, reason)
        if self.provenance and (other := foreign_provenance(conflict, resolver.fingerprint)):
            reason = f"last merged by another strategy definition ({other})"
            return dead(result, Failure.PROVENANCE_MISMATCH, reason)
        if spec.strategy in BASE_STRATEGIES:
            try:
                conflict = self.with_base(conflict, bases)
            except AncestorMissing as exc:
                return retry(result, Failure.ANCESTOR_MISSING, str(exc))
            except CouchError as exc:
                return retry(result, Failure.of(exc), f"common ancestor read failed: {exc}")
        try:
            resolution = resolver.resolve(conflict)
        except Exception as exc:  # a strategy bug must not stall the farm; a time limit is no bug
            self._reraise_interrupt(exc)
            if isinstance(exc, ResolverError):
                return dead(result, Failure.RESOLVER_ERROR, str(exc))
            reason = f"{resolver.name} raised {type(exc).__name__}: {exc}"
            return dead(result, Failure.RESOLVER_ERROR, reason)
        if resolution.unresolvable is not None:
            return dead(result, Failure.UNRESOLVABLE, resolution.unresolvable)
        mark = provenance(conflict, resolver.name, resolver.fingerprint) if self.provenance else None
        try:
            plan = build_plan(conflict, resolution, resolver.name, mark=mark)
        except AttachmentChoiceError as exc:
            return dead(result, Failure.UNRESOLVABLE, str(exc))
        if validator is not None and plan.merged is not None and (problems := validator.errors(plan.merged)):
            return dead(result, Failure.INVALID_DOCUMENT, "merged result is invalid: " + "; ".join(problems))
        return plan

    def _reraise_interrupt(self, exc: BaseException) -> None:
        """Raise the interrupt (a soft time limit) that ``exc`` is or wraps, if any."""
        seen: BaseException | None = exc
        while seen is not None:
            if isinstance(seen, self.interrupts):
                raise seen
            seen = seen.__cause__ or seen.__context__
        return None

    def _report_undecided(self, conflict: ConflictSet) -> None:
        """A deletion the revision tree cannot judge keeps the document alive: say so."""
        pairs = undecided(conflict)
        if pairs:
            self.on_event(
                "deletion_undecided",
                db=conflict.db,
                doc_id=conflict.doc_id,
                deletions=sorted({d for d, _ in pairs}),
                live=sorted({live for _, live in pairs}),
            )

    # -- the batch ------------------------------------------------------------------------------

    def resolve(
        self,
        db: str,
        doc_ids: list[str],
        *,
        dry_run: bool = False,
        known: dict[str, list[str]] | None = None,
    ) -> list[DocResult]:
        """Resolve ``doc_ids`` of ``db``: one result per document, never raising for one document.

        A large batch goes in chunks of ``READ_CHUNK`` documents, the next chunk's leaves read
        while the current one is merged and written (one reader thread)."""
        ids = list(dict.fromkeys(doc_ids))
        chunks = [ids[i : i + READ_CHUNK] for i in range(0, len(ids), READ_CHUNK)] or [[]]
        if len(chunks) == 1:
            return self._resolve_read(db, chunks[0], self._read(db, chunks[0], known), dry_run)
        out: list[DocResult] = []
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead") as reader:
            ahead = reader.submit(self._read, db, chunks[0], known)
            for i, chunk in enumerate(chunks):
                read = ahead.result()
                if i + 1 < len(chunks):
                    ahead = reader.submit(self._read, db, chunks[i + 1], known)
                out += self._resolve_read(db, chunk, read, dry_run)
        return out

    def _read(
        self, db: str, doc_ids: list[str], known: dict[str, list[str]] | None
    ) -> tuple[dict[str, ConflictSet], str | None, float]:
        """The chunk's conflicts (or why they could not be read) and when reading began."""
        started = time.monotonic()
        try:
            return self.read(db, doc_ids, known), None, started
        except Unavailable as exc:
            return {}, f"read failed: {exc}", started

    def _resolve_read(
        self,
        db: str,
        doc_ids: list[str],
        read: tuple[dict[str, ConflictSet], str | None, float],
        dry_run: bool,
    ) -> list[DocResult]:
        conflicts, failure, started = read
        if failure is not None:
            return [
                DocResult(db, d, Outcome.RETRY, reason=failure, error=Failure.UNAVAILABLE) for d in doc_ids
            ]
        bases = self.prefetch_bases(db, conflicts)
        plans: list[Plan] = []
        results: dict[str, DocResult] = {}
        for doc_id, conflict in conflicts.items():
            prepared = self.prepare(conflict, bases)
            if isinstance(prepared, Plan):
                plans.append(prepared)
            else:
                results[doc_id] = prepared
        if dry_run:
            for plan in plans:
                results[plan.doc_id] = self._result(plan, Outcome.NOOP, reason="dry run: nothing written")
                results[plan.doc_id].plan = plan.describe()
        else:
            results.update(self.write(db, plans))
        elapsed = (time.monotonic() - started) * 1000
        ordered = [results[d] for d in doc_ids]
        for r in ordered:
            r.latency_ms = round(elapsed, 1)
        return ordered

    def write(self, db: str, plans: list[Plan]) -> dict[str, DocResult]:
        """Winner writes, then (archive and) tombstones for the documents whose winner is safe."""
        results: dict[str, DocResult] = {}
        safe: list[Plan] = []
        for p in plans:  # a loser's attachment that cannot be read holds back its own document only
            try:
                if p.winner_write is not None:
                    self._inline_attachments(db, p)
            except CouchError as exc:
                results[p.doc_id] = self._result(
                    p, Outcome.RETRY, f"attachment read failed: {exc}", Failure.of(exc)
                )
        plans = [p for p in plans if p.doc_id not in results]
        winners = [p for p in plans if p.winner_write is not None]
        try:
            outcome = self._bulk(db, [p.winner_write for p in winners if p.winner_write is not None])
        except CouchError as exc:
            reason = f"winner write failed: {exc}"
            return results | {
                p.doc_id: self._result(p, Outcome.RETRY, reason, Failure.of(exc)) for p in plans
            }
        by_doc = {p.doc_id: item for p, item in zip(winners, outcome, strict=True)}
        for plan in plans:
            item = by_doc.get(plan.doc_id)
            if item is None or item.ok:
                safe.append(plan)
            else:
                results[plan.doc_id] = self._failed(plan, item, "winner")
        return results | self._tombstone(db, safe, by_doc)

    def _tombstone(
        self, db: str, safe: list[Plan], winners: dict[str, BulkItemResult]
    ) -> dict[str, DocResult]:
        results: dict[str, DocResult] = {}
        if self.archive is not None and safe:
            try:
                self.archive.record(db, safe, {d: r.rev for d, r in winners.items()})
            except CouchError as exc:
                reason = f"archive write failed, losers kept: {exc}"
                return {p.doc_id: self._result(p, Outcome.RETRY, reason, Failure.of(exc)) for p in safe}
        docs = [t for p in safe for t in p.tombstones]
        try:
            items = self._bulk(db, docs)
        except CouchError as exc:
            reason = f"tombstones failed (winner is safe): {exc}"
            return {p.doc_id: self._result(p, Outcome.RETRY, reason, Failure.of(exc)) for p in safe}
        per_doc: dict[str, list[BulkItemResult]] = {}
        for item in items:
            per_doc.setdefault(item.id, []).append(item)
        for plan in safe:
            failed = [i for i in per_doc.get(plan.doc_id, []) if not i.ok]
            written = [winners[plan.doc_id].rev or ""] if plan.doc_id in winners else []
            written += [i.rev or "" for i in per_doc.get(plan.doc_id, []) if i.ok]
            if failed:
                results[plan.doc_id] = self._failed(plan, failed[0], "tombstone")
            else:
                results[plan.doc_id] = self._result(plan, Outcome.RESOLVED)
                results[plan.doc_id].leaves_after = leaves_after(plan, written)
            results[plan.doc_id].written = written
        return results

    def _bulk(self, db: str, docs: list[dict[str, Any]]) -> list[BulkItemResult]:
        """``_bulk_docs``; a request the server rejects whole (illegal id, missing_stub) is split to
        find the document at fault instead of losing the batch."""
        if not docs:
            return []
        try:
            return list(self.client.bulk_docs(db, docs))
        except BadRequest as exc:
            if len(docs) == 1:
                return [
                    BulkItemResult(id=docs[0]["_id"], error=exc.error or "bad_request", reason=exc.reason)
                ]
            mid = len(docs) // 2
            return self._bulk(db, docs[:mid]) + self._bulk(db, docs[mid:])

    def _inline_attachments(self, db: str, plan: Plan) -> None:
        """Fetch the copies the write sends inline; the content type is the chosen leaf's (the
        response's only when its stub has none), so every replica writes the same bytes."""
        assert plan.winner_write is not None
        for name, rev in plan.inline:
            data, content_type = self.client.get_attachment(db, plan.doc_id, name, rev)
            entry = plan.winner_write["_attachments"][name]
            plan.winner_write["_attachments"][name] = {
                "content_type": entry.get("content_type") or content_type,
                "data": base64.b64encode(data).decode(),
            }

    @staticmethod
    def _result(
        plan: Plan, outcome: Outcome, reason: str | None = None, error: Failure | None = None
    ) -> DocResult:
        return DocResult(
            plan.conflict.db, plan.doc_id, outcome, plan.strategy, plan.conflict.revs, reason, error
        )

    def _failed(self, plan: Plan, item: BulkItemResult, step: str) -> DocResult:
        reason = f"{step} write {item.error}: {item.reason}"
        if item.kind == "conflict" or item.error == "missing_result":
            return self._result(plan, Outcome.RETRY, reason, Failure.CONFLICT)
        return self._result(plan, Outcome.DEAD_LETTERED, reason, Failure.REJECTED)


def leaves_after(plan: Plan, written: list[str]) -> list[str]:
    """The document's leaves once the plan is written: the superseded revs replaced by the new ones."""
    superseded = {t["_rev"] for t in plan.tombstones}
    if plan.winner_write is not None:
        superseded.add(plan.winner_write["_rev"])
    return sorted((set(plan.conflict.revs) - superseded) | set(written))


def dead(result: DocResult, error: Failure, reason: str) -> DocResult:
    result.outcome, result.error, result.reason = Outcome.DEAD_LETTERED, error, reason
    return result


def retry(result: DocResult, error: Failure, reason: str) -> DocResult:
    """Leave the document for a later attempt; after ``max_retries`` the retry loop dead-letters
    it with this reason."""
    result.outcome, result.error, result.reason = Outcome.RETRY, error, reason
    return result


def common_ancestor(live: tuple[Leaf, ...]) -> str | None:
    """The newest revision that every live leaf descends from, when all ancestries are known."""
    if len(live) < 2 or any(not leaf.ancestry for leaf in live):
        return None
    shared = set(live[0].ancestry[1:]).intersection(*(set(leaf.ancestry[1:]) for leaf in live[1:]))
    if not shared:
        return None
    return max(shared, key=lambda rev: int(rev.split("-", 1)[0]))
