"""The checkout-only workshop: what measures, demonstrates or tests hst_mm (not installed)."""
