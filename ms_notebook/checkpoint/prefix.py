"""Name prefixes between a checkpoint and a network: detect one (``backbone.``) and map names through it.

A checkpoint saved from a wrapper cell names its weights ``backbone.conv1.weight`` while the bare network asks
for ``conv1.weight`` (or the other way round: ``network.`` on the network's side). A prefix map
``{checkpoint prefix: network prefix}`` such as ``{"backbone.": ""}`` says how names correspond: a network
name takes the checkpoint prefix of the longest network prefix it starts with. Names under no network prefix
are the same on both sides. ``compare`` and ``TransferPlan`` both call this module, so they agree on every
name.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

MAX_SEGMENTS = 3  # prefixes of up to three dotted segments are considered


class PrefixMap:
    """``{checkpoint prefix: network prefix}``; maps network names to checkpoint names and back."""

    def __init__(self, mapping: Mapping[str, str] | None = None) -> None:
        mapping = dict(mapping or {})
        for ck, net in mapping.items():
            if not isinstance(ck, str) or not isinstance(net, str):
                raise TypeError(f"prefix_map must map strings to strings, got {ck!r}: {net!r}")
        nets = list(mapping.values())
        if len(set(nets)) != len(nets):
            raise ValueError(f"prefix_map maps two checkpoint prefixes to one network prefix: {mapping!r}")
        # an identity entry ("head.": "head.") is kept: it exempts names from a shorter prefix
        self.mapping = mapping if any(ck != net for ck, net in mapping.items()) else {}
        self._by_net = sorted(((net, ck) for ck, net in self.mapping.items()), key=lambda t: -len(t[0]))
        self._by_ck = sorted(self.mapping.items(), key=lambda t: -len(t[0]))

    def __bool__(self) -> bool:
        return bool(self.mapping)

    def __repr__(self) -> str:
        return f"PrefixMap({self.mapping!r})"

    def to_checkpoint(self, name: str) -> str:
        """The checkpoint's name for network parameter ``name``."""
        for net, ck in self._by_net:
            if name.startswith(net):
                return ck + name[len(net) :]
        return name

    def to_network(self, name: str) -> str:
        """The network's name for checkpoint entry ``name``."""
        for ck, net in self._by_ck:
            if name.startswith(ck):
                return net + name[len(ck) :]
        return name


def _prefixes(name: str) -> Iterable[str]:
    """The name's first one to MAX_SEGMENTS dotted segments, each with its dot."""
    start = 0
    for _ in range(MAX_SEGMENTS):
        dot = name.find(".", start)
        if dot < 0:
            return
        yield name[: dot + 1]
        start = dot + 1


def _common_prefixes(names: list[str]) -> list[str]:
    """The empty prefix and every prefix at least half of ``names`` share (a consistent prefix)."""
    counts = Counter(prefix for name in names for prefix in _prefixes(name))
    return ["", *(prefix for prefix, count in counts.items() if 2 * count >= len(names))]


def detect_prefix(checkpoint_names: Iterable[str], network_names: Iterable[str]) -> dict[str, str] | None:
    """The ``{checkpoint prefix: network prefix}`` under which most network names are in the checkpoint.

    Candidates are prefixes that at least half of one side's names share. A map is returned only when it finds
    more names than exact matching does, and at least half of the network's names; ``None`` otherwise. Pass
    weight names only (optimizer state ``moments.backbone.x`` would compete).
    """
    ck_list = list(dict.fromkeys(checkpoint_names))
    net_names = list(dict.fromkeys(network_names))
    if not ck_list or not net_names:
        return None
    ck_names = set(ck_list)
    exact = sum(name in ck_names for name in net_names)
    best: tuple[int, str, str] | None = None
    for ck_prefix in _common_prefixes(ck_list):
        for net_prefix in _common_prefixes(net_names):
            if ck_prefix == net_prefix:
                continue
            score = sum(
                name.startswith(net_prefix) and ck_prefix + name[len(net_prefix) :] in ck_names
                for name in net_names
            )
            # most names first; then the shortest prefixes (the simplest explanation)
            key = (-score, len(ck_prefix) + len(net_prefix), ck_prefix)
            if best is None or key < (-best[0], len(best[1]) + len(best[2]), best[1]):
                best = (score, ck_prefix, net_prefix)
    if best is None or best[0] <= exact or 2 * best[0] < len(net_names):
        return None
    return {best[1]: best[2]}


def count_matches(
    prefix_map: PrefixMap, checkpoint_names: Iterable[str], network_names: Iterable[str]
) -> int:
    """How many network names find their checkpoint name under ``prefix_map``."""
    ck_names = set(checkpoint_names)
    return sum(prefix_map.to_checkpoint(name) in ck_names for name in dict.fromkeys(network_names))


def describe(mapping: Mapping[str, str]) -> str:
    """``'backbone.' in the checkpoint is '' in the network'``-style text for messages."""
    return ", ".join(f"checkpoint {ck!r} = network {net!r}" for ck, net in mapping.items())
