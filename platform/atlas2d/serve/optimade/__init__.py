"""The OPTIMADE v1.2 API over the materials: ``/versions`` and ``/v1/...``."""
