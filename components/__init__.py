"""botyard components: KFP v2 component interfaces (``component.py``) over pure cores (``core.py``)."""
