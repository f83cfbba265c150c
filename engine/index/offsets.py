"""A flow's packet offsets: varints of the distances between records, in groups of flows, decoded
in plain Python for a few bytes, with numpy for a group or the whole column.
"""

from __future__ import annotations

import numpy as np

from .columns import IndexColumns
from .format import OFFSET_GROUP, IndexUnusable, decode_varints

# A flow's offsets are decoded in plain Python when its group of flows holds at most this many bytes.
FEW_OFFSET_BYTES = 256
# more flows than this asked of a file: the groups of offsets holding them are decoded at once
GROUPS_FROM = 4
# bytes.translate table marking the last byte of each varint (below 0x80) as b"e"
_VARINT_LAST_BYTES = bytes(b"e"[0] if byte < 0x80 else b"."[0] for byte in range(256))


class PacketOffsets(IndexColumns):
    """The record offsets of flows (the part of ``engine.index.opening.FlowIndex`` that decodes them)."""

    def packet_offsets(self, flow_ids: np.ndarray) -> np.ndarray:
        """Record offsets of the packets of ``flow_ids``, ascending; IndexUnusable unless inside the capture."""
        ids = self._checked(flow_ids)
        # Decoding the whole column pays when the flows asked hold a good share of the records,
        # not merely of the flows: a small flow beside an elephant is decoded alone.
        if len(ids) * 4 > self.n_flows and int(self.columns["packets"][ids].sum()) * 4 > self.records:
            offsets = self._offsets_of_many(ids)
        elif len(ids) > GROUPS_FROM:
            offsets = self._offsets_of_groups(ids)
        elif len(ids) == 1:
            offsets = self._flow_offsets(int(ids[0]))
        else:
            parts = [self._flow_offsets(int(i)) for i in ids.tolist()]
            offsets = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        if len(ids) > 1:
            offsets = np.sort(offsets)
        # Checked on the offsets asked for, not on open: reading them must stay inside the capture.
        if len(offsets) and (offsets[-1] >= self.capture_size or np.any(offsets[1:] <= offsets[:-1])):
            raise IndexUnusable(f"{self.path}: packet offsets out of order or past the capture")
        return offsets

    def _flow_offsets(self, flow: int) -> np.ndarray:
        c = self.columns
        group = flow // OFFSET_GROUP
        start, stop = int(c["offsetat"][group]), int(c["offsetat"][group + 1])
        if not start <= stop <= len(c["offsets"]):
            raise IndexUnusable(f"{self.path}: offsets of flow {flow} past their column")
        if stop - start <= FEW_OFFSET_BYTES:
            return np.array(
                self._few_offsets(flow, group, c["offsets"][start:stop].tobytes()), dtype=np.int64
            )
        region = c["offsets"][start:stop]
        skip = int(c["packets"][group * OFFSET_GROUP : flow].sum(dtype=np.int64))
        count = int(c["packets"][flow])
        ends = np.flatnonzero(region < 0x80)
        if skip + count > len(ends) or count == 0:
            raise IndexUnusable(f"{self.path}: offsets of flow {flow} cut short")
        begin = int(ends[skip - 1]) + 1 if skip else 0
        return self._decoded(region[begin : int(ends[skip + count - 1]) + 1])

    def _few_offsets(self, flow: int, group: int, region: bytes) -> list[int]:
        """``_flow_offsets`` from a group's few bytes of offsets, decoded in plain Python (same checks).

        The varints of the group's earlier flows are skipped by their last bytes (below 0x80),
        found by ``bytes.find`` over a translation of the region; only the flow's own are decoded.
        """
        packets = self._view("packets")
        skip = sum(packets[k] for k in range(group * OFFSET_GROUP, flow))
        count = packets[flow]
        if count == 0:
            raise IndexUnusable(f"{self.path}: offsets of flow {flow} cut short")
        ends, at = region.translate(_VARINT_LAST_BYTES), 0
        for _ in range(skip):
            at = ends.find(b"e", at) + 1
            if not at:
                raise IndexUnusable(f"{self.path}: offsets of flow {flow} cut short")
        offsets: list[int] = []
        total = value = shift = 0
        for byte in region[at:]:
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                if shift > 63:
                    raise IndexUnusable(f"{self.path}: a varint longer than 9 bytes")
                if value >= 1 << 62:
                    raise IndexUnusable(f"{self.path}: an offset past any capture")
                total += value
                offsets.append(total)
                if len(offsets) == count:
                    return offsets
                value = shift = 0
        raise IndexUnusable(f"{self.path}: offsets of flow {flow} cut short")

    def _decoded(self, data: np.ndarray) -> np.ndarray:
        try:
            distances = decode_varints(data)
        except ValueError as exc:
            raise IndexUnusable(f"{self.path}: {exc}") from None
        if len(distances) and distances.max() >= 1 << 62:
            raise IndexUnusable(f"{self.path}: an offset past any capture")
        return np.cumsum(distances.astype(np.int64))

    def _offsets_of_groups(self, ids: np.ndarray) -> np.ndarray:
        """The offsets of several flows, decoding at once only the groups of OFFSET_GROUP flows that hold them."""
        c = self.columns
        groups = np.unique(ids // OFFSET_GROUP)
        at = c["offsetat"]
        if groups[-1] + 1 >= len(at):
            raise IndexUnusable(f"{self.path}: offsets of flow {int(ids.max())} past their column")
        first, stop = at[groups].astype(np.int64), at[groups + 1].astype(np.int64)
        sizes = stop - first
        if np.any(sizes < 0) or int(stop.max()) > len(c["offsets"]):
            raise IndexUnusable(f"{self.path}: offsets of a flow past their column")
        # the groups' bytes, one after another: each group's varints end where the next group's begin
        where = np.repeat(first - (np.cumsum(sizes) - sizes), sizes) + np.arange(int(sizes.sum()))
        try:
            distances = decode_varints(c["offsets"][where]).astype(np.int64)
        except ValueError as exc:
            raise IndexUnusable(f"{self.path}: {exc}") from None
        flows = (groups[:, None] * OFFSET_GROUP + np.arange(OFFSET_GROUP)).ravel()
        flows = flows[flows < self.n_flows]
        counts = c["packets"][flows].astype(np.int64)
        if int(counts.sum()) != len(distances) or np.any(counts == 0):
            raise IndexUnusable(f"{self.path}: offsets that disagree with the flow table")
        if len(distances) and distances.max() >= 1 << 62:
            raise IndexUnusable(f"{self.path}: an offset past any capture")
        starts = np.cumsum(counts) - counts
        total = np.cumsum(distances)
        offsets = total - np.repeat(total[starts] - distances[starts], counts)
        return offsets[np.repeat(np.isin(flows, ids), counts)]

    def _offsets_of_many(self, ids: np.ndarray) -> np.ndarray:
        """The offsets of many flows at once: the whole column decoded, the flows' runs taken."""
        c = self.columns
        try:
            distances = decode_varints(c["offsets"]).astype(np.int64)
        except ValueError as exc:
            raise IndexUnusable(f"{self.path}: {exc}") from None
        counts = c["packets"].astype(np.int64)
        if int(counts.sum()) != len(distances) or np.any(counts == 0):
            raise IndexUnusable(f"{self.path}: offsets that disagree with the flow table")
        starts = np.cumsum(counts) - counts
        total = np.cumsum(distances)
        offsets = total - np.repeat(total[starts] - distances[starts], counts)
        wanted = np.zeros(self.n_flows, dtype=bool)
        wanted[ids] = True
        return offsets[np.repeat(wanted, counts)]
