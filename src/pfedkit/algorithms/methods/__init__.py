"""Importing this module registers every built-in algorithm (order = default table order).

One import per line, so adding a method is a one-line change.
"""

# isort: skip_file
from pfedkit.algorithms.methods import local  # noqa: F401
from pfedkit.algorithms.methods import fedavg  # noqa: F401
from pfedkit.algorithms.methods import fedavg_ft  # noqa: F401
from pfedkit.algorithms.methods import fedprox  # noqa: F401
from pfedkit.algorithms.methods import fedper  # noqa: F401
from pfedkit.algorithms.methods import fedrep  # noqa: F401
from pfedkit.algorithms.methods import fedbabu  # noqa: F401
from pfedkit.algorithms.methods import lg_fedavg  # noqa: F401
from pfedkit.algorithms.methods import fedrod  # noqa: F401
from pfedkit.algorithms.methods import ditto  # noqa: F401
from pfedkit.algorithms.methods import apfl  # noqa: F401
from pfedkit.algorithms.methods import fedbn  # noqa: F401
from pfedkit.algorithms.methods import fedproto  # noqa: F401
from pfedkit.algorithms.methods import fedpac  # noqa: F401
from pfedkit.algorithms.methods import gpfl  # noqa: F401
from pfedkit.algorithms.methods import fedala  # noqa: F401
from pfedkit.algorithms.methods import pfedfda  # noqa: F401
from pfedkit.algorithms.methods import pfedgm  # noqa: F401
from pfedkit.algorithms.methods import fedvpt  # noqa: F401
from pfedkit.algorithms.methods import fedvpt_lh  # noqa: F401
from pfedkit.algorithms.methods import local_vpt  # noqa: F401
from pfedkit.algorithms.methods import linear_probe  # noqa: F401
from pfedkit.algorithms.methods import pfedpg  # noqa: F401
from pfedkit.algorithms.methods import pfedbayespt  # noqa: F401
