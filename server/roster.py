"""Which node holds which hospital, kept true through a run, and the grid the strategies see.

Flower addresses nodes by id; a hospital is a name. :class:`HospitalGrid` asks every new node which
hospital it holds (a QUERY message; the node answers from its ``--node-config``), and from then on
shows the strategies one node per training hospital:

* **before round 1** every training hospital must be connected exactly once, within
  ``federated.hospital-wait-s``; a duplicate, unknown or missing hospital is a clear error naming it;
* **a lost hospital** (its reply is an error, e.g. Flower's "Node Unavailable") is left out of the
  round; the run goes on while at least ``federated.min-hospitals`` reply, else it stops with an
  error (the previous round's checkpoint is kept), and waiting for hospitals never exceeds the wait;
* **a hospital that reconnects** under a new node id is taken back by its name, the final test
  round included;
* **a malformed reply** (NaN or infinite weights, other names or shapes, missing metrics, wrong
  histograms, a missing or malformed validation of the previous round's model, an update that does
  not decode under ``federated.update-compression``) is rejected with its reason and counted like a
  lost hospital.

Replies come back in hospital order whatever their arrival order, so aggregation is deterministic.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from common.evaluation.subgroups import SUBGROUPS
from common.federation import compression as C
from common.federation import histograms as H
from common.federation import protocol as P

log = logging.getLogger("flwr.fedami")  # under Flower's logger: shown by `flwr log` and in simulation


class HospitalsError(RuntimeError):
    """The hospitals a run needs are not there (missing, duplicated, unknown, or lost below the minimum)."""


@dataclass
class RoundEvents:
    """What went wrong with one message round: hospitals lost (error replies) and replies rejected."""

    kind: str
    lost: dict[str, str] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)


def _shapes(record: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    return {k: (tuple(a.shape), str(a.dtype)) for k, a in record.items()}


class HospitalGrid:
    """A :class:`flwr.serverapp.Grid` for the strategies: the training hospitals' current nodes only.

    Parameters
    ----------
    grid
        Flower's grid (simulation or deployment).
    hospitals
        The run's training hospitals, in order (their index is the ``site-index`` of their replies).
    min_hospitals
        The fewest hospitals a round may go on with.
    wait_s
        How long to wait for hospitals to connect (before round 1, and whenever fewer than
        ``min_hospitals`` are connected).
    poll_s
        Seconds between pulls while replies are outstanding (Flower's own loop sleeps 3 s).
    compression
        How training replies encode their update (``federated.update-compression``): they are decoded
        against the weights sent to that node before they are checked, and one encoded otherwise is rejected.
    """

    def __init__(
        self,
        grid: Grid,
        hospitals: Sequence[str],
        *,
        min_hospitals: int,
        wait_s: float,
        poll_s: float = 0.2,
        compression: str = "none",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not 1 <= min_hospitals <= len(hospitals):
            raise ValueError(
                f"min-hospitals must be 1 to {len(hospitals)} (the training hospitals), got {min_hospitals}"
            )
        self._grid = grid
        self.hospitals = tuple(hospitals)
        self.min_hospitals = min_hospitals
        self.wait_s = wait_s
        self.poll_s = poll_s
        self.compression = compression
        self._clock, self._sleep = clock, sleep
        self.node_of: dict[str, int] = {}
        self.claims: dict[int, str] = {}
        """Every node asked, and the hospital it named (``""`` when it did not answer)."""
        self.duplicates: dict[str, set[int]] = {}
        self.sent: list[tuple[str, int]] = []
        self.events: list[RoundEvents] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    # ------------------------------------------------------------------------------------------ who is who

    def _ask(self, nodes: Iterable[int]) -> None:
        """Ask new nodes which hospital they hold."""
        nodes = sorted(nodes)
        query = [
            Message(RecordDict({P.CONFIG: ConfigRecord({})}), dst_node_id=n, message_type=MessageType.QUERY)
            for n in nodes
        ]
        answered = set()
        replies, _ = self._exchange(query)  # a node whose message was not taken did not answer: see below
        for node, reply in replies:
            answered.add(node)
            if reply.has_error():
                self.claims[node] = ""
                log.warning("node %d did not say which hospital it holds: %s", node, reply.error.reason or "")
                continue
            config = reply.content.config_records.get(P.CONFIG, ConfigRecord({}))
            self.claims[node] = str(config.get(P.HOSPITAL, ""))
        for node in set(nodes) - answered:
            self.claims[node] = ""

    def _registered(self, nodes: set[int]) -> dict[int, str]:
        """The names nodes were registered under (SuperNode authentication): their hospital, no question asked."""
        try:
            infos = list(self._grid.get_nodes())
        except (AttributeError, NotImplementedError):
            return {}
        names = {int(i.node_id): str(getattr(i, "name", "") or "") for i in infos}
        return {n: name for n, name in names.items() if n in nodes and name}

    def refresh(self) -> set[int]:
        """Identify new nodes and map each training hospital to a live node; returns the live nodes."""
        live = set(self._grid.get_node_ids())
        new = live - set(self.claims)
        if new:
            registered = self._registered(new)
            self.claims.update(registered)
            if new - set(registered):
                self._ask(new - set(registered))
        for node in sorted(new):
            name = self.claims.get(node, "")
            if name not in self.hospitals:
                if name:
                    log.warning("node %d holds %r, which is not a training hospital of this run", node, name)
                continue
            current = self.node_of.get(name)
            if current is None or current not in live:
                if current is not None:
                    log.info("hospital %s is back as node %d (was node %d)", name, node, current)
                self.node_of[name] = node
            elif current != node:
                self.duplicates.setdefault(name, {current}).add(node)
        return live

    def present(self, live: set[int] | None = None) -> list[str]:
        live = self.refresh() if live is None else live
        return [h for h in self.hospitals if self.node_of.get(h) in live]

    def describe(self, live: set[int]) -> str:
        """Who is connected, who is missing, and which nodes claim what."""
        missing = [h for h in self.hospitals if self.node_of.get(h) not in live]
        unknown = sorted({self.claims[n] for n in live if self.claims.get(n) and self.claims[n] not in self.hospitals})
        silent = sorted(n for n in live if not self.claims.get(n))
        parts = [f"connected: {[h for h in self.hospitals if h not in missing]}", f"missing: {missing}"]
        if self.duplicates:
            parts.append(
                "held by more than one node: "
                + ", ".join(f"{h} (nodes {sorted(n)})" for h, n in self.duplicates.items())
            )
        if unknown:
            parts.append(f"nodes naming hospitals that are not in this run: {unknown}")
        if silent:
            parts.append(f"nodes that named no hospital: {silent}")
        return "; ".join(parts)

    def wait_for_all(self) -> None:
        """Before round 1: every training hospital connected exactly once, or a clear error."""
        deadline = self._clock() + self.wait_s
        while True:
            live = self.refresh()
            if self.duplicates:
                raise HospitalsError(f"a hospital is held by more than one node: {self.describe(live)}")
            if len(self.present(live)) == len(self.hospitals):
                return
            if self._clock() > deadline:
                raise HospitalsError(
                    f"not every training hospital connected within {self.wait_s:.0f} s: {self.describe(live)}. "
                    "Start one SuperNode per hospital with --node-config \"site='<hospital>' data-dir='...'\" "
                    f"(in a local simulation: options.num-supernodes = {len(self.hospitals)})"
                )
            self._sleep(self.poll_s)

    # ---------------------------------------------------------------------------------- the strategies' view

    def get_node_ids(self) -> list[int]:
        """The current node of every connected training hospital; waits (bounded) while fewer than the minimum."""
        deadline = self._clock() + self.wait_s
        while True:
            live = self.refresh()
            present = self.present(live)
            if len(present) >= self.min_hospitals:
                return [self.node_of[h] for h in present]
            if self._clock() > deadline:
                raise HospitalsError(
                    f"{len(present)} training hospitals connected for {self.wait_s:.0f} s, fewer than "
                    f"min-hospitals = {self.min_hospitals}: {self.describe(live)}"
                )
            self._sleep(self.poll_s)

    def hospital_of(self, node: int) -> str:
        return self.claims.get(node, "")

    def _exchange(self, messages: list[Message]) -> tuple[list[tuple[int, Message]], list[int]]:
        """Push, then pull every reply (errors included) with a short poll; each with the node it was sent to.

        A reply is matched to its node through the message it answers: the error reply Flower makes for a
        lost node does not come from that node. Also returns the nodes whose message the SuperLink did not take.
        """
        pushed = list(self._grid.push_messages(messages))  # in the messages' order; None: not pushed
        node_of = {mid: m.metadata.dst_node_id for mid, m in zip(pushed, messages, strict=True) if mid is not None}
        unsent = [m.metadata.dst_node_id for mid, m in zip(pushed, messages, strict=True) if mid is None]
        replies: list[tuple[int, Message]] = []
        ids = set(node_of)
        while ids:
            got = list(self._grid.pull_messages(ids))
            replies.extend((node_of[m.metadata.reply_to_message_id], m) for m in got)
            ids.difference_update(m.metadata.reply_to_message_id for m in got)
            if ids:
                self._sleep(self.poll_s)
        return replies, unsent

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        """Replies in hospital order; malformed ones removed; an error when fewer than the minimum are valid."""
        messages = list(messages)
        kind = messages[0].metadata.message_type if messages else ""
        self.sent.extend((m.metadata.message_type, m.metadata.dst_node_id) for m in messages)
        sent = {
            m.metadata.dst_node_id: m.content.array_records[P.ARRAYS]
            for m in messages
            if P.ARRAYS in m.content.array_records
        }
        sent_arrays = {node: _shapes(record) for node, record in sent.items()}
        validates = {
            m.metadata.dst_node_id: bool(m.content.config_records[P.CONFIG].get(P.VALIDATE, False))
            for m in messages
            if P.CONFIG in m.content.config_records
        }
        events = RoundEvents(kind)
        kept: list[tuple[int, Message]] = []
        exchanged, unsent = self._exchange(messages)
        for node in unsent:
            events.lost[self.hospital_of(node) or f"node {node}"] = "the SuperLink did not take its message"
        for node, reply in exchanged:
            name = self.hospital_of(node) or f"node {node}"
            index = self.hospitals.index(name) if name in self.hospitals else -1
            if reply.has_error():
                events.lost[name] = reply.error.reason or f"error {reply.error.code}"
                kept.append((node, reply))  # the strategy counts it as a failure
                continue
            problem = (
                (
                    f"a reply from node {reply.metadata.src_node_id} to the message sent to node {node}"
                    if reply.metadata.src_node_id != node
                    else ""
                )
                or (
                    decode_update(reply.content, sent[node], self.compression)
                    if kind == MessageType.TRAIN and node in sent
                    else ""
                )
                or check_reply(reply.content, kind, sent_arrays.get(node), index)
                or (
                    check_validation(reply.content, validates.get(node, False), index)
                    if kind == MessageType.TRAIN
                    else ""
                )
            )
            if problem:
                events.rejected[name] = problem
                log.warning("rejected the %s reply of %s: %s", kind, name, problem)
                continue
            kept.append((node, reply))
        if events.lost or events.rejected:
            self.events.append(events)
            for name, why in events.lost.items():
                log.warning("hospital %s was lost in a %s round: %s", name, kind, why)
        valid = sum(not r.has_error() for _, r in kept)
        if messages and valid < self.min_hospitals:
            raise HospitalsError(
                f"only {valid} of {len(messages)} hospitals answered the {kind} round with a usable reply, fewer "
                f"than min-hospitals = {self.min_hospitals} (lost: {events.lost or 'none'}; rejected: "
                f"{events.rejected or 'none'}); the last completed round's checkpoint is kept: resume from it"
            )
        order = {h: i for i, h in enumerate(self.hospitals)}
        kept.sort(key=lambda nr: (order.get(self.hospital_of(nr[0]), len(order)), nr[0]))
        return [reply for _, reply in kept]


def decode_update(content: RecordDict, sent: ArrayRecord, method: str) -> str:
    """Replace a training reply's encoded update by the trained weights; why it cannot be (``""`` when it can)."""
    declared = (
        str(content.config_records[P.CONFIG].get(P.UPDATE_COMPRESSION, "none"))
        if P.CONFIG in content.config_records
        else "none"
    )
    if declared != method:
        return f"an update encoded as {declared!r}, but this run's federated.update-compression is {method!r}"
    if method == "none" or P.ARRAYS not in content.array_records:
        return ""  # check_reply names a missing update
    try:
        received = {k: a.numpy() for k, a in content.array_records[P.ARRAYS].items()}
        weights = C.decode(received, {k: a.numpy() for k, a in sent.items()}, method)
    except (ValueError, TypeError) as err:  # CompressionError is a ValueError
        return str(err)
    content.array_records[P.ARRAYS] = ArrayRecord({k: Array(v) for k, v in weights.items()})
    return ""


def evaluation_values(content: RecordDict) -> dict[str, Any]:
    """An evaluation reply's metrics and its replicate arrays (:data:`~common.federation.protocol.REPLICATES`) in
    one mapping, by protocol key."""
    values: dict[str, Any] = dict(content.metric_records.get(P.METRICS, {}))
    replicates = content.array_records.get(P.REPLICATES)
    if replicates is not None:
        values.update({k: a.numpy() for k, a in replicates.items()})
    return values


def check_reply(content: RecordDict, kind: str, sent: dict[str, tuple[tuple[int, ...], str]] | None, index: int) -> str:
    """Why a reply cannot be used (``""`` when it can): what a hospital sends is checked, never trusted."""
    metrics = content.metric_records.get(P.METRICS)
    if metrics is None:
        return "no metrics"
    try:
        n = P.number(metrics, P.NUM_EXAMPLES)
        site = P.number(metrics, P.SITE_INDEX)
    except (TypeError, KeyError) as err:
        return f"bad metrics: {err}"
    if int(site) != index:
        return f"it says it holds hospital #{int(site)}, but its node holds #{index}"
    if n <= 0:
        return f"{P.NUM_EXAMPLES} = {n}"
    if kind == MessageType.TRAIN:
        if sent is None or P.ARRAYS not in content.array_records:
            return "no weights"
        arrays = content.array_records[P.ARRAYS]
        got = _shapes(arrays)
        if set(got) != set(sent):
            return f"weights for other parameters: {sorted(set(got) ^ set(sent))[:5]}"
        wrong = [k for k in sent if got[k][0] != sent[k][0]]
        if wrong:
            return f"weights of other shapes: {wrong[:5]}"
        bad = [k for k, a in arrays.items() if not np.isfinite(a.numpy()).all()]
        if bad:
            return f"NaN or infinite weights in {bad[:5]}"
        try:
            loss = P.number(metrics, P.TRAIN_LOSS)
        except (TypeError, KeyError) as err:
            return f"bad metrics: {err}"
        if not np.isfinite(loss):
            return f"training loss {loss}"
    elif kind == MessageType.EVALUATE:
        pos, neg = metrics.get(P.POS_HIST), metrics.get(P.NEG_HIST)
        if not isinstance(pos, list) or not isinstance(neg, list) or len(pos) != H.N_BINS or len(neg) != H.N_BINS:
            return "score histograms of the wrong length"
        counts = np.asarray([*pos, *neg])
        if (counts < 0).any() or counts.sum() != n:
            return f"score histograms that do not count its {int(n)} ECGs"
        try:
            patients = P.number(metrics, P.NUM_PATIENTS)
        except (TypeError, KeyError) as err:
            return f"bad metrics: {err}"
        if not 1 <= patients <= n:
            return f"{P.NUM_PATIENTS} = {patients:g} for {int(n)} ECGs"
        pos_hist, neg_hist = counts[: H.N_BINS], counts[H.N_BINS :]
        try:
            values = evaluation_values(content)
        except Exception as err:  # an array that does not decode: whatever numpy makes of the bytes it got
            return f"replicate arrays that do not decode: {err}"
        return (
            _check_replicates(values, pos_hist + neg_hist)
            or _check_subgroups(values, pos_hist, neg_hist)
            or _check_calibration(metrics, int(n), int(pos_hist.sum()))
        )
    return ""


def check_validation(content: RecordDict, asked: bool, index: int) -> str:
    """Why a training reply's validation of the weights it received cannot be used (``""`` when it can).

    Asked for (:data:`~common.federation.protocol.VALIDATE`), it must be a valid evaluation reply's metrics; not
    asked for, it must be absent (the strategies take exactly one metric record per reply).
    """
    val = content.metric_records.get(P.VAL_METRICS)
    if val is None:
        return "no validation of the weights it received, which the message asked for" if asked else ""
    if not asked:
        return "a validation the message did not ask for"
    problem = check_reply(RecordDict({P.METRICS: val}), MessageType.EVALUATE, None, index)
    return f"its validation: {problem}" if problem else ""


def _check_subgroups(metrics: Any, pos_hist: np.ndarray, neg_hist: np.ndarray) -> str:
    """Subgroups, where sent: every one, each a part of the hospital's histogram, its replicates in its own bins."""
    if P.subgroup_key(P.SUB_PATIENTS, 0) not in metrics:
        return ""
    for i, (group, label) in enumerate(SUBGROUPS):
        what = f"subgroup {group} {label}"

        def get(key: str, i: int = i) -> Any:
            return metrics.get(P.subgroup_key(key, i))

        patients = get(P.SUB_PATIENTS)
        if isinstance(patients, bool) or not isinstance(patients, int) or patients < 0:
            return f"{what}: a patient count of {patients!r}"
        if patients == 0:
            continue
        bins, pos, neg = get(P.SUB_BINS), get(P.SUB_POS), get(P.SUB_NEG)
        if not all(isinstance(v, list) for v in (bins, pos, neg)) or not len(bins) == len(pos) == len(neg) > 0:
            return f"{what}: histograms of the wrong shape"
        b, sp, sn = np.asarray(bins), np.asarray(pos), np.asarray(neg)
        if not np.issubdtype(b.dtype, np.integer) or b.min() < 0 or b.max() >= H.N_BINS or (np.diff(b) <= 0).any():
            return f"{what}: bins outside the grid"
        if (sp < 0).any() or (sn < 0).any() or (sp + sn == 0).any():
            return f"{what}: negative or empty counts"
        if (sp > pos_hist[b]).any() or (sn > neg_hist[b]).any():
            return f"{what}: more ECGs than the hospital's histogram holds"
        if not 1 <= patients <= int(sp.sum() + sn.sum()):
            return f"{what}: {patients} patients for {int(sp.sum() + sn.sum())} ECGs"
        if get(P.SUB_REP_POS) is not None:
            reps = {P.REP_BINS: bins, P.REP_POS: get(P.SUB_REP_POS), P.REP_NEG: get(P.SUB_REP_NEG)}
            per_bin = np.zeros(H.N_BINS)
            per_bin[b] = sp + sn
            problem = _check_replicates(reps, per_bin)
            if problem:
                return f"{what}: {problem}"
    return ""


def _check_calibration(metrics: Any, n: int, positives: int) -> str:
    """Calibration sums, where sent: counts of its ECGs, sums within what probabilities and labels allow."""
    if P.CAL_COUNT not in metrics:
        return ""
    count, sum_p, sum_y, sq = (metrics.get(k) for k in (P.CAL_COUNT, P.CAL_SUM_P, P.CAL_SUM_Y, P.CAL_SQ_ERR))
    if not all(isinstance(v, list) for v in (count, sum_p, sum_y)) or not len(count) == len(sum_p) == len(sum_y) > 0:
        return "calibration sums of the wrong shape"
    c, p, y = (np.asarray(v, np.float64) for v in (count, sum_p, sum_y))
    if isinstance(sq, bool) or not isinstance(sq, int | float) or not np.isfinite([*p, *y, sq]).all():
        return "calibration sums that are not finite numbers"
    if (c < 0).any() or c.sum() != n or y.sum() != positives or (y < 0).any() or (y > c).any():
        return f"calibration counts that do not count its {n} ECGs and {positives} AMI"
    edges = np.arange(len(c) + 1) / len(c)
    tol = 1e-6 * np.maximum(c, 1)
    if (p < c * edges[:-1] - tol).any() or (p > c * edges[1:] + tol).any() or not 0 <= sq <= n:
        return "calibration sums outside their bins"
    return ""


def _check_replicates(values: Any, per_bin: np.ndarray) -> str:
    """Bootstrap replicates, where sent: integer arrays of one row per replicate over the bins its ECGs fill, no
    negative count."""
    if P.REP_BINS not in values:
        return ""
    bins, pos, neg = (values.get(k) for k in (P.REP_BINS, P.REP_POS, P.REP_NEG))
    if not isinstance(bins, list) or not all(isinstance(v, np.ndarray) for v in (pos, neg)):
        return "bootstrap replicates that are not a bin list and two arrays"
    b = np.asarray(bins)
    if not all(np.issubdtype(a.dtype, np.integer) for a in (b, pos, neg)):
        return "bootstrap replicates that are not integer counts"
    if len(b) == 0 or pos.ndim != 2 or pos.shape != neg.shape or pos.shape[1] != len(b) or not pos.shape[0]:
        return "bootstrap replicates of the wrong shape"
    if set(b.tolist()) != set(np.flatnonzero(per_bin).tolist()) or (np.diff(b) <= 0).any():
        return "bootstrap replicates in other bins than its ECGs"
    if min(pos.min(), neg.min()) < 0:
        return "negative counts in bootstrap replicates"
    return ""
