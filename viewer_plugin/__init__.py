"""OHIF v3 extension + mode (JavaScript lives beside this file in later work)."""
