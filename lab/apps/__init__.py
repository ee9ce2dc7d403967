"""Programs the lab's images run in place of sample containers (``lab/images.py``)."""
