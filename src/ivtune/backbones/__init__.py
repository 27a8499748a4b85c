"""Backbone families (one module each: facts, block recipe, forward loop), the generic ``IVBackbone``, weights.

Nothing here knows about training methods: ``ivtune.methods`` and ``ivtune.builder`` sit above this package.
"""
