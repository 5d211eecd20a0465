"""How close models are: affinities of their maps (exact or sketched), activation baselines, the
similarity tree with its map and clusters, and the rankings read off a matrix."""

from .affinity import MapReader, affinity_matrix, affinity_naive, affinity_row
from .baselines import (
    BASELINES,
    DDS,
    DEPARA,
    RBFCKA,
    RSA,
    SVCCA,
    LinearCKA,
    Prepared,
    Similarity,
    compare_all,
    get_baseline,
    list_baselines,
    register_baseline,
    similarity_matrix,
)
from .ranking import rank_sources
from .sketch import MapSketcher, sketched_affinity
from .tree import classical_mds, clusters, distance, leaf_order, similarity_tree, spread, to_newick

__all__ = ["BASELINES", "DDS", "DEPARA", "LinearCKA", "MapReader", "MapSketcher", "Prepared", "RBFCKA", "RSA", "SVCCA", "Similarity",
           "affinity_matrix", "affinity_naive", "affinity_row", "classical_mds", "clusters", "compare_all",
           "distance", "get_baseline", "leaf_order", "list_baselines", "rank_sources", "register_baseline",
           "similarity_matrix", "similarity_tree", "sketched_affinity", "spread", "to_newick"]
