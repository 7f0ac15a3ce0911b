"""Who is asking the CA: the verified mTLS peer, if any, and the network address."""

from __future__ import annotations

from dataclasses import dataclass

from meshward.spiffe import SpiffeId

__all__ = ["Caller"]


@dataclass(frozen=True)
class Caller:
    """Who is asking: the verified mTLS peer, if any, and the network address."""

    peer_id: SpiffeId | None = None
    address: str = "local"

    def __str__(self) -> str:
        return str(self.peer_id) if self.peer_id else self.address
