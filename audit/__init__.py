"""Audit trail: append-only, tamper-evident exchange records with Merkle proofs."""
