"""Built-in dataset sources; importing this package registers them."""

from pfedkit.data.domains import digits_md  # noqa: F401  (registers "digits-md")
from pfedkit.data.sources import cifar, digits, idx, image_folder  # noqa: F401
