"""Backbone families, the IVBackbone and its factory."""
