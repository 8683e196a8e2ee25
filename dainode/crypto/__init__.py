"""Envelopes, key files and CKKS homomorphic encryption."""
