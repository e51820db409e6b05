"""Flags views: ``patient`` (report, My reports, reply) and ``office`` (the privacy office)."""
