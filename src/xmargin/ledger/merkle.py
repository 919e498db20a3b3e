"""Merkle tree over the entry hashes (RFC 9162 / RFC 6962, Certificate Transparency), for member proofs.

A signed checkpoint (:mod:`xmargin.ledger.signing`) carries the root of the tree over the hashes
of entries ``1..seq``.  A member given one of its entries, the entry's previous hash and an
**inclusion proof** (the sibling hashes on the path to the root) can check that the entry is in
the chain the checkpoint's signer saw, without seeing any other member's entry: the proof holds
hashes only.

Definitions (RFC 9162 section 2.1): leaf hash ``SHA-256(0x00 || leaf)``, node hash
``SHA-256(0x01 || left || right)``; the tree of ``n`` leaves splits at ``k``, the largest power
of two below ``n``; the empty tree's root is ``SHA-256("")``.  A leaf is the entry hash as its
64 hexadecimal ASCII characters.  Proof verification follows RFC 9162 section 2.1.3.2.
Building proofs is O(n) hashing in all, however many leaves are proved (the tree is not
stored).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = ["inclusion_proof", "inclusion_proofs", "leaf_hash", "root", "verify_inclusion"]


def leaf_hash(entry_hash: str) -> bytes:
    return hashlib.sha256(b"\x00" + entry_hash.encode("ascii")).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly below ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _root_of(leaves: Sequence[bytes]) -> bytes:
    """Root over leaf hashes, bottom-up (RFC 9162 shape: unpaired right nodes are promoted)."""
    level = list(leaves)
    while len(level) > 1:
        nxt = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def root(entry_hashes: Sequence[str]) -> str:
    """The Merkle tree head (hex) over the entry hashes, in sequence order."""
    if not entry_hashes:
        return hashlib.sha256(b"").hexdigest()
    return _root_of([leaf_hash(h) for h in entry_hashes]).hex()


def inclusion_proof(entry_hashes: Sequence[str], index: int) -> list[str]:
    """Audit path (hex, leaf to root) of leaf ``index`` (0-based) in the tree over ``entry_hashes``."""
    return inclusion_proofs(entry_hashes, [index])[0]


def inclusion_proofs(entry_hashes: Sequence[str], indices: Sequence[int]) -> list[list[str]]:
    """Audit paths of several leaves; every subtree root is computed once (O(n) hashing in all)."""
    n = len(entry_hashes)
    for index in indices:
        if not 0 <= index < n:
            raise IndexError(f"leaf {index} is not in a tree of {n}")
    leaves = [leaf_hash(h) for h in entry_hashes]
    memo: dict[tuple[int, int], bytes] = {}

    def mth(lo: int, hi: int) -> bytes:  # MTH(D[lo:hi]) of RFC 9162 2.1.1, memoised
        key = (lo, hi)
        if key not in memo:
            if hi - lo == 1:
                memo[key] = leaves[lo]
            else:
                k = _split(hi - lo)
                memo[key] = _node(mth(lo, lo + k), mth(lo + k, hi))
        return memo[key]

    def path(lo: int, hi: int, m: int) -> list[str]:  # PATH(m, D[lo:hi]) of RFC 9162 2.1.3.1
        if hi - lo == 1:
            return []
        k = _split(hi - lo)
        if m < k:
            return [*path(lo, lo + k, m), mth(lo + k, hi).hex()]
        return [*path(lo + k, hi, m - k), mth(lo, lo + k).hex()]

    return [path(0, n, index) for index in indices]


def verify_inclusion(entry_hash: str, index: int, tree_size: int, path: Sequence[str], expected_root: str) -> bool:
    """True when ``path`` proves leaf ``index`` of a ``tree_size`` tree is ``entry_hash`` under ``expected_root``."""
    if not 0 <= index < tree_size:
        return False
    fn, sn = index, tree_size - 1
    r = leaf_hash(entry_hash)
    try:
        for p in path:
            sib = bytes.fromhex(p)
            if sn == 0:
                return False
            if fn & 1 or fn == sn:
                r = _node(sib, r)
                if not fn & 1:
                    while fn and not fn & 1:
                        fn >>= 1
                        sn >>= 1
            else:
                r = _node(r, sib)
            fn >>= 1
            sn >>= 1
    except ValueError:
        return False
    return sn == 0 and r.hex() == expected_root
