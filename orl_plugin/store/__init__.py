"""ORL's mined data: the native store format, its writers, the official JSON files, image lists.

Layers inside the package (each module imports only those above it)::

    format                the native layout: validation, one store directory on disk, errors
    image_list            image lists from COCO files or folders; the one store-vs-image-list check
    official_json         the official ORL JSON files: parse
    official_json_writer  the official ORL JSON files: streamed write
    mining_store          MiningStore: open a store directory or an official JSON file, read per image
    writers               write_selective_search_store, write_knn_store, write_correspondence_store
    handle                StoreHandle: a store opened once per process (data-loader workers)

Atomic writes live in ``orl_plugin.utils.atomic``; ``atomic_open`` and ``atomic_write_json`` are re-exported
here, where tools and projects import them.
"""
from orl_plugin.utils.atomic import atomic_open, atomic_write_json  # noqa: F401

from .format import is_store_dir  # noqa: F401
from .format import KINDS, STORE_FORMAT, STORE_VERSION, OfficialFormatError, StoreFormatError  # noqa: F401
from .handle import StoreHandle  # noqa: F401
from .image_list import IMG_EXTENSIONS, check_image_list, load_image_list  # noqa: F401
from .mining_store import MiningStore  # noqa: F401
from .official_json_writer import write_official_json  # noqa: F401
from .writers import write_correspondence_store, write_knn_store, write_selective_search_store  # noqa: F401
