"""JAX specifications of the catalogue, one module per reference family.

Each module defines, at module level, the ``Layer`` objects of its family (and their
``Mutant``s and ``Variant``s); ``verification.catalogue`` finds them by itself.
"""
