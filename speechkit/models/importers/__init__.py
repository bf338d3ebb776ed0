"""Importers: read a foreign checkpoint format and write a transformers directory."""
