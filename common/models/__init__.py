"""Models: the VAE, its posterior families (FFG, flows, AF) and their densities.

families.py defines the family contract and FFG, Flow and CFlow; family_af.py adds the auxiliary
flow, registering itself in FAMILIES. Both are loaded here, so any import of a module of this
package sees every family (and families.py need not import family_af: no cycle)."""
from . import families, family_af

__all__ = ["families", "family_af"]
