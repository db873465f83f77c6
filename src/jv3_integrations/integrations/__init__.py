"""Internal adapter implementations; import them from the public facades."""
