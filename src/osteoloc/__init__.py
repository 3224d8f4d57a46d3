"""osteoloc: landmark-prior osteophyte localisation on hip radiographs (library behind the workflow)."""

__version__ = "0.1.0"
