"""Test support code (loopback servers, checkpoint builders); never part of the package."""
