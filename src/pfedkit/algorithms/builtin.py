"""Importing this module registers every built-in algorithm (order = default table order).

One import per line, so adding a method is a one-line change.
"""

# isort: skip_file
from pfedkit.algorithms import local  # noqa: F401
from pfedkit.algorithms import fedavg  # noqa: F401
from pfedkit.algorithms import fedavg_ft  # noqa: F401
from pfedkit.algorithms import fedprox  # noqa: F401
from pfedkit.algorithms import fedper  # noqa: F401
from pfedkit.algorithms import fedrep  # noqa: F401
from pfedkit.algorithms import fedbabu  # noqa: F401
from pfedkit.algorithms import lg_fedavg  # noqa: F401
from pfedkit.algorithms import fedrod  # noqa: F401
from pfedkit.algorithms import ditto  # noqa: F401
from pfedkit.algorithms import apfl  # noqa: F401
from pfedkit.algorithms import fedbn  # noqa: F401
from pfedkit.algorithms import fedproto  # noqa: F401
from pfedkit.algorithms import fedpac  # noqa: F401
from pfedkit.algorithms import gpfl  # noqa: F401
from pfedkit.algorithms import fedala  # noqa: F401
from pfedkit.algorithms import pfedfda  # noqa: F401
from pfedkit.algorithms import pfedgm  # noqa: F401
