"""MedShield: an edge gateway that protects medical images before they leave the hospital.

The package imports without accelerators, torch or a broker; heavy or optional dependencies are imported
where they are used.
"""

__version__ = "0.1.0"
