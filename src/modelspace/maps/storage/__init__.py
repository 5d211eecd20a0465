"""Where attribution maps are kept: the store, its manifest, the shard files and the claims on units.

A store is a folder of shard files indexed by an SQLite manifest. Each file is bound to the identity
of the unit it holds (`keys`), written atomically (`files`), and claimed by one process at a time
(`claims`), so that crashed or concurrent runs share one store without losing or mixing maps.
"""

from .claims import CLAIM_STALE_S
from .files import atomic_write, file_sha256
from .keys import EntryKey, WorkUnit, method_key, plan_units
from .store import EncodedShard, MapStore, ShardInfo, encode_shard, half_key, shard_relpath

__all__ = ["CLAIM_STALE_S", "EncodedShard", "EntryKey", "MapStore", "ShardInfo", "WorkUnit", "atomic_write",
           "encode_shard", "file_sha256", "half_key", "method_key", "plan_units", "shard_relpath"]
