"""Tamper evidence: the hash chain, the Merkle tree, signed checkpoints, receipts, proofs.

``hashing``, ``merkle``, ``checkpoints`` and ``receipts`` are pure (no database): they are
what a member library runs on its own machine to check what the ledger told it.
``tables`` owns the integrity tables' SQL; ``verify`` re-checks a whole store; ``witness``
is the member library's side of checkpoint witnessing.
"""
