"""The bottom layer: what every Lightbox app uses and none owns.

Crypto, signing and keys, strict environment parsing, append-only triggers, reauthentication,
API token auth, and the Actor with its ``for_actor`` rule. It imports no other Lightbox package
(the import contracts in ``pyproject.toml`` check this).
"""
