"""Parallax logic: importable and testable without Streamlit (except lib.ui)."""
