"""Hierarchically structured data for deep linear networks (Saxe, McClelland & Ganguli 2019; seed 001).

Items are the leaves of a tree with ``depth`` levels below the root and ``branching`` children per node. Every
feature is generated independently by diffusion down the tree: the root takes a value +1 or -1 with probability 1/2,
and every child copies its parent's value, flipped with probability ``flip``. An item has the feature (+1) or lacks it
(-1) according to the value at its leaf. Inputs are one-hot codes of the items.

Nodes are numbered breadth first: the root is 0, the children of node k are ``branching * k + 1 ...
branching * k + branching``, the items (leaves) are the last ``branching ** depth`` nodes in order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Names of the standard 3-level binary tree, in the spirit of the seed's "does a shark have bones?" example.
NAMED_TREE = {
    (3, 2): ["living thing", "animal", "plant", "fish", "bird", "flower", "tree",
             "shark", "tuna", "robin", "canary", "rose", "daisy", "pine", "oak"],
}


@dataclass(frozen=True)
class HierarchicalData:
    """Items, features and the tree that generated them.

    inputs: (n_items, n_items) one-hot codes (float64); targets: (n_items, n_features) +-1 (float64).
    node_parent, node_level: (n_nodes,) parent index (-1 for the root) and depth of every tree node.
    node_values: (n_nodes, n_features) int8 +-1, the diffused value of every feature at every node.
    feature_node: (n_features,) the smallest subtree whose items include every item having the feature (+1),
        -1 if no item has it; feature_level its level; feature_exceptions: how many items of that subtree lack
        the feature (0: the feature marks exactly that subtree, e.g. "can fly" = "bird"; 1: one exception,
        e.g. "has bones" on every animal but the shark: the pattern of an illusory correlation).
    """

    inputs: np.ndarray
    targets: np.ndarray
    item_names: list
    node_names: list
    node_parent: np.ndarray
    node_level: np.ndarray
    node_values: np.ndarray
    feature_node: np.ndarray
    feature_level: np.ndarray
    feature_exceptions: np.ndarray
    depth: int
    branching: int
    flip: float
    seed: int

    @property
    def n_items(self) -> int:
        return self.targets.shape[0]

    @property
    def n_features(self) -> int:
        return self.targets.shape[1]

    @property
    def first_item_node(self) -> int:
        """Node index of item 0 (items are the last n_items nodes)."""
        return len(self.node_parent) - self.n_items

    def items_under(self, node: int) -> np.ndarray:
        """Item indices of the leaves below (or at) ``node``."""
        level = int(self.node_level[node])
        first, last = node, node
        for _ in range(self.depth - level):
            first, last = self.branching * first + 1, self.branching * last + self.branching
        return np.arange(first, last + 1) - self.first_item_node

    def tree_distance(self) -> np.ndarray:
        """(n_items, n_items) number of levels from two items up to their closest common ancestor."""
        nodes = np.arange(self.n_items) + self.first_item_node
        distance = np.zeros((self.n_items, self.n_items), dtype=np.int64)
        a, b = np.meshgrid(nodes, nodes, indexing="ij")
        while np.any(a != b):
            differ = a != b
            distance[differ] += 1
            a = np.where(differ, self.node_parent[a], a)
            b = np.where(differ, self.node_parent[b], b)
        return distance

    def illusory_feature(self, level: int = 1, item: int | None = None) -> tuple[int, int]:
        """(feature, item): a feature that every item under one node of ``level`` has except one, ``item``.

        The lowest-numbered such feature is returned, preferring exception ``item`` (default: the first item
        under the node, the "shark"). Raises ValueError if the sample has none (too few features).
        """
        candidates = np.flatnonzero((self.feature_level == level) & (self.feature_exceptions == 1))
        found = []
        for feature in candidates:
            under = self.items_under(int(self.feature_node[feature]))
            lacking = under[self.targets[under, feature] < 0]
            found.append((int(feature), int(lacking[0])))
            if lacking[0] == (under[0] if item is None else item):
                return found[-1]
        if not found:
            raise ValueError(f"no feature marks a level-{level} node with one exception among "
                             f"{self.n_features} features; use more features")
        return found[0]


def hierarchical(depth: int = 3, branching: int = 2, n_features: int = 10_000, flip: float = 0.15,
                 seed: int = 0) -> HierarchicalData:
    """Tree-structured items and features (see module docstring); deterministic for a given ``seed``."""
    if not isinstance(depth, (int, np.integer)) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
    if not isinstance(branching, (int, np.integer)) or branching < 2:
        raise ValueError(f"branching must be an integer >= 2, got {branching!r}")
    if not isinstance(n_features, (int, np.integer)) or n_features < 1:
        raise ValueError(f"n_features must be an integer >= 1, got {n_features!r}")
    if not 0.0 <= flip <= 1.0:
        raise ValueError(f"flip must be a probability in [0, 1], got {flip!r}")
    n_items = branching ** depth
    n_nodes = (branching ** (depth + 1) - 1) // (branching - 1)
    if n_nodes * n_features > 10**9:
        raise ValueError(f"tree of {n_nodes} nodes x {n_features} features needs {n_nodes * n_features} bytes; "
                         "reduce depth, branching or n_features")
    node_parent = np.concatenate([[-1], (np.arange(1, n_nodes) - 1) // branching])
    node_level = np.zeros(n_nodes, dtype=np.int64)
    for node in range(1, n_nodes):
        node_level[node] = node_level[node_parent[node]] + 1

    rng = np.random.default_rng(seed)
    values = np.empty((n_nodes, n_features), dtype=np.int8)
    values[0] = np.where(rng.random(n_features) < 0.5, -1, 1)
    flips = rng.random((n_nodes - 1, n_features)) < flip
    for node in range(1, n_nodes):  # parents come before children in breadth-first order
        values[node] = np.where(flips[node - 1], -values[node_parent[node]], values[node_parent[node]])
    targets = values[n_nodes - n_items:].astype(np.float64)

    names = NAMED_TREE.get((depth, branching))
    if names is None:
        names = ["root"] + [f"node{k}" for k in range(1, n_nodes - n_items)] + [f"item{i}" for i in range(n_items)]

    # Feature semantics: smallest subtree containing every item that has the feature. Walk up from the leaves:
    # a node "contains all" if its items include every positive item of that feature.
    has = targets > 0                                            # (n_items, n_features)
    count = has.sum(axis=0)
    feature_node = np.full(n_features, -1, dtype=np.int64)
    per_node = np.zeros((n_nodes, n_features), dtype=np.int64)   # positive items under each node
    per_node[n_nodes - n_items:] = has
    for node in range(n_nodes - 1, 0, -1):
        per_node[node_parent[node]] += per_node[node]
    for node in range(n_nodes):                                  # breadth first: deeper nodes overwrite
        feature_node[(per_node[node] == count) & (count > 0)] = node
    feature_level = np.where(feature_node >= 0, node_level[np.maximum(feature_node, 0)], -1)
    subtree_size = branching ** (depth - feature_level)
    feature_exceptions = np.where(feature_node >= 0, subtree_size - count, 0)

    return HierarchicalData(
        inputs=np.eye(n_items), targets=targets, item_names=names[n_nodes - n_items:], node_names=names,
        node_parent=node_parent, node_level=node_level, node_values=values, feature_node=feature_node,
        feature_level=feature_level, feature_exceptions=feature_exceptions, depth=depth, branching=branching,
        flip=float(flip), seed=seed)


def correlation_svd(inputs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SVD of the input-output correlation Sigma_yx = (1/P) sum_mu y_mu x_mu^T = U diag(s) V^T.

    inputs: (P, n_in), targets: (P, n_out). Returns U (n_out, r), s (r,) descending, V (n_in, r), r = min(n_in,
    n_out). Signs are fixed so that the entry of largest magnitude of every column of V is positive.
    """
    inputs = np.asarray(inputs, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    if inputs.ndim != 2 or targets.ndim != 2 or inputs.shape[0] != targets.shape[0]:
        raise ValueError(f"inputs (P, n_in) and targets (P, n_out) must share P, got {inputs.shape}, {targets.shape}")
    sigma_yx = targets.T @ inputs / inputs.shape[0]
    u, s, vt = np.linalg.svd(sigma_yx, full_matrices=False)     # numpy returns s descending
    v = vt.T
    sign = np.sign(v[np.argmax(np.abs(v), axis=0), np.arange(v.shape[1])])
    sign[sign == 0] = 1.0
    return u * sign, s, v * sign
