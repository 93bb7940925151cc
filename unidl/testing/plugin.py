"""pytest plugin entry (filled in by the conformance kit)."""
