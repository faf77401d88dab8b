"""One file per property: the ladder of each normal form (a function named like ``spec.form``:
``elementwise``, ``row``, ``batch``, ``composite``), climbed by ``lossc.check.ladder``."""
