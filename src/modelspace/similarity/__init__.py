"""How close models are.

Affinities of their maps (exact or sketched), activation baselines, the similarity tree with its map
and clusters, and the rankings read off a matrix.
"""

from .affinity import MapReader, affinity_halves, affinity_halves_row, affinity_matrix, affinity_naive, affinity_row
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
    compare_halves,
    get_baseline,
    list_baselines,
    register_baseline,
    similarity_matrix,
)
from .confidence import SEED as CONFIDENCE_SEED
from .confidence import (
    BANDS,
    HALVES,
    MIN_IMAGES,
    Confidence,
    Estimate,
    agreement,
    confidence_k,
    half_masks,
    judge,
    too_few_images,
    top_k,
    top_k_stability,
)
from .fusion import Fusion, pair_percentiles
from .ranking import HUB_SHARE, hubs, rank_sources, top_sources
from .sketch import MapSketcher, sketched_affinity
from .tree import (
    classical_mds,
    clusters,
    cophenetic,
    distance,
    leaf_order,
    mds_explained,
    similarity_tree,
    spread,
    to_newick,
    tree_agreement,
)

__all__ = ["BANDS", "BASELINES", "CONFIDENCE_SEED", "DDS", "DEPARA", "Fusion", "HALVES", "HUB_SHARE", "LinearCKA", "MIN_IMAGES",
           "MapReader", "MapSketcher", "Confidence", "Estimate", "Prepared", "RBFCKA", "RSA", "SVCCA", "Similarity",
           "affinity_halves", "affinity_halves_row", "affinity_matrix", "affinity_naive", "affinity_row", "agreement", "classical_mds",
           "clusters", "compare_all", "compare_halves", "confidence_k", "cophenetic", "distance", "get_baseline",
           "half_masks", "hubs", "judge", "leaf_order", "list_baselines", "mds_explained", "pair_percentiles",
           "rank_sources", "register_baseline", "similarity_matrix",
           "similarity_tree", "sketched_affinity", "spread", "to_newick", "too_few_images", "top_k", "top_k_stability",
           "top_sources", "tree_agreement"]
